"""Batched greedy decoding with a KV cache, left padding and per-sequence early stop.

Prompts are sorted by length and left-padded per micro-batch, so every row's last prompt token sits in the
last column and one new column per step is all the cache needs. A row stops at the first stop token
(newline-bearing tokens and EOS) or after ``max_new_tokens``; finished rows are dropped from the batch and
from the cache, so long answers do not keep short ones computing. Position ids start at 0 on each row's
first real token, so a prompt is decoded the same whatever its padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from paczero.tasks.padding import left_pad_position_ids


@dataclass
class PaddedBatch:
    """Left-padded token sequences of one micro-batch and which row of the example set each one is."""

    rows: torch.Tensor  # index of each sequence in the example set (CPU)
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def left_pad(seqs: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int, device) -> PaddedBatch:
    """One left-padded batch of token sequences, on ``device``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for j, seq in enumerate(seqs):
        ids[j, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
        mask[j, width - len(seq) :] = 1
    return PaddedBatch(
        rows=torch.tensor(list(rows), dtype=torch.long),
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=left_pad_position_ids(mask).to(device),
    )


def length_sorted_batches(
    seqs: Sequence[Sequence[int]], micro_batch_size: int, pad_id: int, device
) -> list[PaddedBatch]:
    """Sequences sorted by length (longest first), cut into micro-batches, each left-padded to its width."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    return [
        left_pad([seqs[i] for i in chunk], chunk, pad_id, device)
        for chunk in (order[j : j + micro_batch_size] for j in range(0, len(order), micro_batch_size))
    ]


def newline_stop_ids(tokenizer) -> list[int]:
    """EOS and every vocabulary token whose text contains a newline: where an answer ends.

    Byte-level BPE vocabularies hold many such tokens ("\\n", ".\\n", "\\n\\n", ...); word-level vocabularies
    that split on whitespace hold none, and then only EOS and the length limit stop a sequence.
    """
    vocab = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)], skip_special_tokens=False)
    stops = {i for i, text in enumerate(texts) if "\n" in text}
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    return sorted(stops)


def _cache_argument(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` in recent transformers, else the old name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.inference_mode()
def greedy_decode(model, batch: PaddedBatch, max_new_tokens: int, stop_ids: torch.Tensor) -> list[list[int]]:
    """Greedy continuation of each prompt in ``batch``: new token ids, ending with the stop token if one came.

    ``stop_ids`` lives on the model's device. Ties in the argmax go to the lowest token id, as in
    ``torch.argmax``, so the result is deterministic.
    """
    cache_arg = _cache_argument(model)
    n = batch.input_ids.shape[0]
    generated: list[list[int]] = [[] for _ in range(n)]
    active = torch.arange(n)
    mask = batch.attention_mask
    position = batch.position_ids[:, -1:] + 1
    out = model(
        input_ids=batch.input_ids,
        attention_mask=mask,
        position_ids=batch.position_ids,
        use_cache=True,
        logits_to_keep=1,
    )
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
        stopped = torch.isin(token, stop_ids)
        for row, tok in zip(active.tolist(), token.tolist(), strict=True):
            generated[row].append(tok)
        keep = ~stopped
        if step == max_new_tokens - 1 or not bool(keep.any()):
            break
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        if not bool(keep.all()):
            idx = keep.nonzero().squeeze(1)
            cache.batch_select_indices(idx)
            active, token, mask, position = active[idx.cpu()], token[idx], mask[idx], position[idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(
            input_ids=token.unsqueeze(1),
            attention_mask=mask,
            position_ids=position,
            use_cache=True,
            **{cache_arg: cache},
        )
        position = position + 1
    return generated
