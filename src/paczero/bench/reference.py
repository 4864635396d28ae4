"""The published code's scoring and step as ``paczero bench`` times them (comparison only; losses equal ours).

Per step and direction the published code makes three sweeps (+ε, −ε, and a third at θ that only logs the
loss); each sweep is one model call per label word over all N examples, each sequence prompt + label word,
left-padded to the longest in the call rounded up to a multiple of 8, the logits of every position kept and
a full-vocabulary log-softmax taken over them. For SST-2 (two label words) that is 6 model calls of N
sequences per step.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from paczero.config import RunConfig
from paczero.mechanisms.base import StepInput
from paczero.mechanisms.clipping import clip
from paczero.tasks.classification import Classifier, MicroBatch, PreparedSet
from paczero.trainer import Trainer
from paczero.zo import two_point_estimate

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


class ReferenceClassifier(Classifier):
    """The published code's scoring, for comparison only; the per-example losses equal ``Classifier``'s.

    Each flag undoes one of our optimisations (all on = the reference protocol): ``per_candidate`` makes every
    (example, label word) pair its own sequence, ``full_logits`` computes the logits of every position (with
    ``per_candidate``: and a full-vocabulary log-softmax over them), ``fixed_padding`` left-pads every
    sequence to ``max_length``.
    """

    def __init__(
        self,
        tokenizer,
        prompt: str,
        label_words: list[str],
        micro_batch_size: int,
        max_length: int,
        per_candidate: bool = True,
        full_logits: bool = True,
        fixed_padding: bool = True,
    ):
        super().__init__(tokenizer, prompt, label_words, micro_batch_size, max_length)
        self.single_token = self.single_token and not per_candidate
        self.full_logits = full_logits
        self.fixed_padding = fixed_padding

    def prepare(self, examples, device: torch.device) -> PreparedSet:
        data = super().prepare(examples, device)
        return dataclasses.replace(data, keep=0) if self.full_logits else data  # 0 keeps every position

    def _collate(self, chunk, device: torch.device) -> MicroBatch:
        mb = super()._collate(chunk, device)
        extra = self.max_length - mb.input_ids.shape[1] if self.fixed_padding else 0
        return dataclasses.replace(
            mb,
            input_ids=F.pad(mb.input_ids, (extra, 0), value=self.pad_id),
            attention_mask=F.pad(mb.attention_mask, (extra, 0)),
            position_ids=F.pad(mb.position_ids, (extra, 0)),
        )


def reference_objective(cfg: RunConfig, tokenizer, micro_batch_size: int) -> PublishedClassifier:
    """The published code's scoring: one call of N sequences per label word (``micro_batch_size`` unused)."""
    task = cfg.task
    return PublishedClassifier(tokenizer, task.prompt, task.label_words, task.pool_size, task.max_length)


@dataclass
class ReferenceRecord:
    seeds: list[int]
    update: list[float]
    loss: float  # from the third forward sweep, at θ
    seconds: float


def reference_step(trainer: Trainer, objective: Classifier, data: PreparedSet, t: int) -> ReferenceRecord:
    """One step by the published protocol on the trainer's model, directions, mechanism and ledger.

    Draws the same public seeds as ``Trainer.step`` and releases through the same mechanism, so from the same
    state it makes the same update; it only spends three forward sweeps and four regenerations per direction.
    """
    tc = trainer.cfg.train
    start = time.perf_counter()
    lr, k_dirs = trainer.lr_at(t), tc.directions
    seeds = [int(trainer.public_rng.integers(0, 2**63 - 1)) for _ in range(k_dirs)]
    model, apply = trainer.loaded.model, trainer.directions.apply
    values, losses = [], []
    for seed in seeds:
        apply([(seed, tc.zo_eps)])
        plus = objective.losses(model, data)
        apply([(seed, -2.0 * tc.zo_eps)])
        minus = objective.losses(model, data)
        apply([(seed, tc.zo_eps)])
        losses.append(float(objective.losses(model, data).mean()))  # the third sweep: logging only
        g, _ = clip(two_point_estimate(plus, minus, tc.zo_eps).g, tc.clip)
        release = trainer.mechanism.release(StepInput.from_estimates(g, trainer.subsets), trainer.ledger)
        trainer.ledger.charge(release)
        values.append(release.value)
    for seed, value in zip(seeds, values, strict=True):
        apply([(seed, -lr / k_dirs * value)])  # the fourth regeneration
    return ReferenceRecord(seeds, values, float(np.mean(losses)), time.perf_counter() - start)
