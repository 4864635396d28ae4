"""The published code's scoring as ``paczero bench`` times it (comparison only; losses equal ours).

Per step and direction the published code makes three sweeps (+ε, −ε, and a third at θ that only logs the
loss); each sweep is one model call per label word over all N examples, each sequence prompt + label word,
left-padded to the longest in the call rounded up to a multiple of 8, the logits of every position kept and
a full-vocabulary log-softmax taken over them. For SST-2 (two label words) that is 6 model calls of N
sequences per step.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from paczero.tasks.classification import Classifier, MicroBatch, PreparedSet

PAD_MULTIPLE = 8


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class PublishedClassifier(Classifier):
    """One call per label word over the set (``calls_of`` sequences at most), padded to a multiple of 8."""

    def __init__(self, tokenizer, prompt: str, label_words: list[str], calls_of: int, max_length: int):
        super().__init__(tokenizer, prompt, label_words, 10**9, max_length)  # one chunk: split per word below
        self.single_token = False  # every (example, label word) pair is its own sequence
        self.calls_of = calls_of

    def prepare(self, examples, device: torch.device) -> PreparedSet:
        data = super().prepare(examples, device)
        batches = [
            self._trim(mb, mb.options == option)
            for mb in data.batches
            for option in range(len(self.label_words))
        ]
        split = [
            self._trim(mb, torch.arange(len(mb.rows)) // self.calls_of == part)
            for mb in batches
            for part in range(-(-len(mb.rows) // self.calls_of))
        ]
        return dataclasses.replace(data, batches=split, keep=0)  # keep 0: the logits of every position

    def _trim(self, mb: MicroBatch, select: torch.Tensor) -> MicroBatch:
        """The selected rows, left-padded to their longest rounded up to a multiple of 8."""
        idx = select.nonzero().squeeze(-1)
        mask = mb.attention_mask[idx.to(mb.attention_mask.device)]
        width = _round_up(int(mask.sum(-1).max()), PAD_MULTIPLE)
        extra = width - mask.shape[1]

        def fit(t: torch.Tensor, value: int) -> torch.Tensor:
            t = t[idx.to(t.device)]
            return F.pad(t, (extra, 0), value=value) if extra > 0 else t[:, -width:]

        return MicroBatch(
            rows=mb.rows[idx],
            options=mb.options[idx],
            input_ids=fit(mb.input_ids, self.pad_id),
            attention_mask=fit(mb.attention_mask, 0),
            position_ids=fit(mb.position_ids, 0),
            option_len=mb.option_len[idx],
        )
