"""From a TaskConfig to data and an objective: each task's reader, the MeZO split, the Objective protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from paczero.tasks.classification import Classifier
from paczero.tasks.config import TaskConfig
from paczero.tasks.custom import load_custom
from paczero.tasks.data import Example, Splits, load_sst2, mezo_splits, synthetic_sentiment
from paczero.tasks.squad import GenerativeQA, load_squad, synthetic_qa

__all__ = ["READERS", "Objective", "Prepared", "build_objective", "load_splits"]


class Prepared(Protocol):
    """A task's tokenized example set (``PreparedSet``, ``QASet``): only its objective reads inside it."""

    size: int


class Objective(Protocol):
    """What the trainer needs from a task: tokenize once, per-example losses, metrics.

    ``metrics`` are higher-is-better scores that ``evaluate`` returns besides ``loss``; ``primary_metric``
    is the one printed and the default way to read a run (``train.select_by: dev_<metric>``).
    ``reads_last_positions``: the loss reads the last ``logits_to_keep`` positions of one cache-free forward
    (what frozen-trunk caching needs); ``head_rows``: the only vocabulary rows it reads, or None.
    """

    primary_metric: str
    metrics: tuple[str, ...]
    reads_last_positions: bool
    head_rows: list[int] | None

    def prepare(self, examples: list[Example], device: torch.device) -> Prepared: ...
    def losses(self, model, prepared: Prepared) -> torch.Tensor: ...
    def evaluate(self, model, prepared: Prepared) -> dict[str, float]: ...
    def per_example(self, model, prepared: Prepared) -> dict[str, torch.Tensor]: ...
    def shard(self, prepared: Prepared, rank: int, world: int) -> tuple[Prepared, torch.Tensor]: ...


Reader = Callable[[TaskConfig], tuple[list[Example], list[Example]]]  # raw (train, validation)


def _synthetic(make: Callable[[int, int], list[Example]]) -> Reader:
    def load(cfg: TaskConfig) -> tuple[list[Example], list[Example]]:
        return make(cfg.pool_size + cfg.dev_size, cfg.data_seed), make(cfg.test_size, cfg.data_seed + 1)

    return load


# How each task of :data:`~paczero.tasks.config.TASKS` reads its raw splits (one entry per task).
READERS: dict[str, Reader] = {
    "sst2": lambda cfg: load_sst2(cfg.data_dir),
    "squad": lambda cfg: load_squad(cfg.data_dir),
    "custom": lambda cfg: load_custom(cfg.custom, cfg.prompt, cfg.label_words),
    "synthetic-sentiment": _synthetic(synthetic_sentiment),
    "synthetic-qa": _synthetic(synthetic_qa),
}


def load_splits(cfg: TaskConfig) -> Splits:
    """Pool, dev and test examples for the task, by the MeZO protocol and the data seed."""
    train, validation = READERS[cfg.name](cfg)
    try:
        return mezo_splits(train, validation, cfg.pool_size, cfg.dev_size, cfg.test_size, cfg.data_seed)
    except ValueError as err:
        if cfg.data_dir is None and cfg.name in ("sst2", "squad"):
            raise ValueError(
                f"{err} of the {cfg.name} data shipped with paczero; set task.data_dir to 'hub' or to a "
                "folder with the full data set"
            ) from None
        raise


def build_objective(cfg: TaskConfig, tokenizer, micro_batch_size: int) -> Objective:
    """The task's per-example objective: label-word classification or generative QA."""
    if cfg.kind == "classification":
        return Classifier(tokenizer, cfg.prompt, cfg.label_words, micro_batch_size, cfg.max_length)
    return GenerativeQA(
        tokenizer, cfg.prompt, micro_batch_size, cfg.max_length, cfg.max_new_tokens, cfg.objective
    )
