"""Micro-batch size chosen from free memory (``train.micro_batch_size: auto`` or 0).

A scoring forward in inference mode holds one layer's activations at a time, so the memory of a micro-batch
is about (sequences × tokens × bytes per token) plus the logits it keeps. On CUDA the budget is half of the
free device memory. On CPU memory is rarely the limit: throughput stops improving once a micro-batch holds a
few thousand tokens (the matrix kernels are saturated; ``docs/benchmarks.md`` has the measurement) while peak
memory keeps growing, so the CPU rule is ``CPU_TOKENS`` tokens at the longest length, within a quarter of the
available RAM.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

AUTO = "auto"
CPU_TOKENS = 4096  # tokens per CPU micro-batch at the longest sequence length
CPU_RAM_FRACTION = 0.25
GPU_FREE_FRACTION = 0.5
LOGIT_POSITIONS = 17  # logits kept per sequence: label words and short answers (``logits_to_keep``)
MAX_MICRO_BATCH = 1024


def is_auto(setting: int | str) -> bool:
    """``auto`` and 0 both mean: choose the micro-batch size from free memory."""
    return setting == AUTO or setting == 0


def bytes_per_sequence(config, length: int, dtype: torch.dtype) -> int:
    """Peak activation bytes of one sequence of ``length`` tokens in one decoder layer, plus its logits.

    Per token: ~8 hidden-size buffers (residual, norms, q/k/v, attention output), 3 MLP-width buffers and one
    row of attention scores per head; the kept logits are float32 with a float32 log-softmax copy.
    """
    hidden = config.hidden_size
    mlp = getattr(config, "intermediate_size", None) or getattr(config, "ffn_dim", None) or 4 * hidden
    heads = config.num_attention_heads
    per_token = (8 * hidden + 3 * mlp + heads * length) * torch.finfo(dtype).bits // 8
    return length * per_token + min(length, LOGIT_POSITIONS) * config.vocab_size * 8


def available_bytes(device: torch.device) -> int:
    """Memory a micro-batch may use on ``device``: half the free CUDA memory, else a quarter of free RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(GPU_FREE_FRACTION * free)
    return int(CPU_RAM_FRACTION * _available_ram())


def _available_ram() -> int:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_micro_batch_size(model: torch.nn.Module, max_length: int) -> int:
    """The largest micro-batch whose longest sequences (``max_length`` tokens) fit the memory budget."""
    param = next(model.parameters())
    need = bytes_per_sequence(model.config, max_length, param.dtype)
    fit = available_bytes(param.device) // need
    if param.device.type != "cuda":
        fit = min(fit, CPU_TOKENS // max_length)
    return max(1, min(MAX_MICRO_BATCH, fit))


def resolve_micro_batch_size(setting: int | str, model: torch.nn.Module, max_length: int) -> int:
    """The configured micro-batch size, or the automatic one when the setting is ``auto`` or 0."""
    return auto_micro_batch_size(model, max_length) if is_auto(setting) else int(setting)
