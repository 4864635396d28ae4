"""Position ids for left-padded batches, shared by the classification and generation objectives."""

from __future__ import annotations

import torch


def left_pad_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token of a left-padded batch.

    Pass them as ``model(..., position_ids=...)``: GPT-2 (absolute positions) otherwise counts the pads and
    gives different logits for a prompt depending on its padding. OPT derives them itself; RoPE models
    (Llama/SmolLM2) are shift-invariant; passing them is harmless for all three.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
