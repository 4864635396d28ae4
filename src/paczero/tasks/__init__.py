"""Tasks: where examples come from, how they are prompted, and the per-example objective."""

from __future__ import annotations

from dataclasses import dataclass, field

from paczero.tasks.classification import Classifier, PreparedSet
from paczero.tasks.data import Example, Splits, load_sst2, mezo_splits, synthetic_sentiment

TASKS = ("sst2", "synthetic-sentiment")


@dataclass
class TaskConfig:
    """Which data, how much of it (MeZO protocol), and how it is prompted."""

    name: str = "sst2"
    data_dir: str | None = None  # local folder (train.tsv, dev.tsv); unset = Hugging Face hub
    pool_size: int = 1000  # N: the training pool shared by all candidate subsets
    dev_size: int = 500
    test_size: int = 1000
    data_seed: int = 0
    prompt: str = "{sentence} It was"
    label_words: list[str] = field(default_factory=lambda: [" terrible", " great"])
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f"unknown task {self.name!r}; known tasks: {', '.join(TASKS)}")
        if self.pool_size < 1 or self.dev_size < 0 or self.test_size < 0:
            raise ValueError("task.pool_size must be >= 1 and dev/test sizes >= 0")
        if self.max_length < 4:
            raise ValueError("task.max_length must be at least 4 tokens")


def load_splits(cfg: TaskConfig) -> Splits:
    """Pool, dev and test examples for the task, by the MeZO protocol and the data seed."""
    if cfg.name == "sst2":
        train, validation = load_sst2(cfg.data_dir)
    else:
        total = cfg.pool_size + cfg.dev_size
        train = synthetic_sentiment(total, cfg.data_seed)
        validation = synthetic_sentiment(cfg.test_size, cfg.data_seed + 1)
    return mezo_splits(train, validation, cfg.pool_size, cfg.dev_size, cfg.test_size, cfg.data_seed)


def build_objective(cfg: TaskConfig, tokenizer, micro_batch_size: int) -> Classifier:
    return Classifier(tokenizer, cfg.prompt, cfg.label_words, micro_batch_size, cfg.max_length)


__all__ = ["Classifier", "Example", "PreparedSet", "Splits", "TaskConfig", "build_objective", "load_splits"]
