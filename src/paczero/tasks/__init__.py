"""Tasks: where examples come from, how they are prompted, and the per-example objective."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from paczero.tasks.classification import Classifier, PreparedSet
from paczero.tasks.custom import CustomTaskConfig, load_custom
from paczero.tasks.data import Example, Splits, load_sst2, mezo_splits, synthetic_sentiment
from paczero.tasks.squad import SQUAD_PROMPT, GenerativeQA, QASet, load_squad, synthetic_qa


class Objective(Protocol):
    """What the trainer needs from a task: tokenize once, per-example losses, metrics.

    ``metrics`` are higher-is-better scores that ``evaluate`` returns besides ``loss``; ``primary_metric``
    is the one printed and the default way to read a run (``train.select_by: dev_<metric>``).
    """

    primary_metric: str
    metrics: tuple[str, ...]

    def prepare(self, examples: list[Example], device: torch.device) -> Any: ...
    def losses(self, model, prepared: Any) -> torch.Tensor: ...
    def evaluate(self, model, prepared: Any) -> dict[str, float]: ...
    def per_example(self, model, prepared: Any) -> dict[str, torch.Tensor]: ...
    def shard(self, prepared: Any, rank: int, world: int) -> tuple[Any, torch.Tensor]: ...


@dataclass(frozen=True)
class TaskDef:
    """A named task: its kind, its default prompt and context length, and how to read its raw splits."""

    kind: str | None  # "classification" or "generation"; None: set by task.custom.kind
    prompt: str | None  # None: the config must give one
    max_length: int
    load: Callable[[TaskConfig], tuple[list[Example], list[Example]]]  # (train, validation)


def _synthetic(make: Callable[[int, int], list[Example]]) -> Callable[[TaskConfig], Any]:
    def load(cfg: TaskConfig) -> tuple[list[Example], list[Example]]:
        return make(cfg.pool_size + cfg.dev_size, cfg.data_seed), make(cfg.test_size, cfg.data_seed + 1)

    return load


TASKS: dict[str, TaskDef] = {
    "sst2": TaskDef("classification", "{sentence} It was", 128, lambda cfg: load_sst2(cfg.data_dir)),
    "squad": TaskDef("generation", SQUAD_PROMPT, 2048, lambda cfg: load_squad(cfg.data_dir)),
    "custom": TaskDef(None, None, 512, lambda cfg: load_custom(cfg.custom, cfg.prompt, cfg.label_words)),
    # tests and demos on the tiny models' vocabulary
    "synthetic-sentiment": TaskDef(
        "classification", "{sentence} It was", 128, _synthetic(synthetic_sentiment)
    ),
    "synthetic-qa": TaskDef("generation", SQUAD_PROMPT, 128, _synthetic(synthetic_qa)),
}
OBJECTIVES = {"classification": ("ce",), "generation": ("f1", "ce")}


@dataclass
class TaskConfig:
    """Which data, how much of it (MeZO protocol), how it is prompted, and the per-example objective."""

    name: str = "sst2"
    # unset: the data shipped with paczero (sst2: all of GLUE SST-2; squad: a 500/300-question sample);
    # a local folder (sst2: train.tsv, dev.tsv; squad: train.jsonl, dev.jsonl); or "hub" (needs `datasets`)
    data_dir: str | None = None  # unset: the shipped data; a local folder; or "hub" (needs `datasets`)
    pool_size: int = 1000  # N: the training pool shared by all candidate subsets
    dev_size: int = 500
    test_size: int = 1000
    data_seed: int = 0
    prompt: str | None = None  # {field} template; unset: the task's own (custom tasks must set it)
    label_words: list[str] = field(default_factory=lambda: [" terrible", " great"])  # classification
    objective: str | None = None  # generation: f1 (loss −F1 of the greedy answer; default) or ce
    max_new_tokens: int = 50  # generation: answer length limit
    max_length: int | None = None  # tokens of prompt (+ answer); unset: the task's default
    custom: CustomTaskConfig | None = None  # name: custom only

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f"unknown task {self.name!r}; known tasks: {', '.join(TASKS)}")
        if self.pool_size < 1 or self.dev_size < 0 or self.test_size < 0:
            raise ValueError("task.pool_size must be >= 1 and dev/test sizes >= 0")
        if (self.name == "custom") != (self.custom is not None):
            raise ValueError("task.custom (the data source) is required for, and only for, task.name: custom")
        task = TASKS[self.name]
        self.prompt = self.prompt if self.prompt is not None else task.prompt
        if self.prompt is None:
            raise ValueError(f"task {self.name!r} needs task.prompt (a template with {{field}} placeholders)")
        self.max_length = self.max_length if self.max_length is not None else task.max_length
        if self.max_length < 4:
            raise ValueError("task.max_length must be at least 4 tokens")
        allowed = OBJECTIVES[self.kind]
        self.objective = self.objective if self.objective is not None else allowed[0]
        if self.objective not in allowed:
            raise ValueError(f"task.objective of a {self.kind} task must be one of {allowed}")
        if self.kind == "generation" and not 1 <= self.max_new_tokens < self.max_length:
            raise ValueError("task.max_new_tokens must be >= 1 and below task.max_length")

    @property
    def kind(self) -> str:
        return TASKS[self.name].kind or self.custom.kind


def load_splits(cfg: TaskConfig) -> Splits:
    """Pool, dev and test examples for the task, by the MeZO protocol and the data seed."""
    train, validation = TASKS[cfg.name].load(cfg)
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


__all__ = [
    "TASKS",
    "Classifier",
    "CustomTaskConfig",
    "Example",
    "GenerativeQA",
    "Objective",
    "PreparedSet",
    "QASet",
    "Splits",
    "TaskConfig",
    "build_objective",
    "load_splits",
]
