"""LoRA for zeroth-order training: target modules per architecture, top-k-block placement, seeded init."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from paczero.models.config import ModelConfig
from paczero.models.rng import preserve_global_rng
from paczero.models.trunk import find_blocks

__all__ = ["lora_target_modules", "wrap_lora"]

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


def _leaf_names(module_names: Iterable[str]) -> set[str]:
    """Last dotted component of each module name (what peft matches short target names against)."""
    return {n.rsplit(".", 1)[-1] for n in module_names if n}


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
def wrap_lora(model: PreTrainedModel, cfg: ModelConfig) -> torch.nn.Module:
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
    with preserve_global_rng(next(model.parameters()).device), warnings.catch_warnings():
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
