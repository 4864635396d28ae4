"""Task settings without torch: the built-in tasks' defaults, the objectives per kind, and TaskConfig.

Reading a config imports this module only; the tasks' readers and objectives live in
:mod:`paczero.tasks.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paczero.tasks.custom import CustomTaskConfig

__all__ = ["OBJECTIVES", "SQUAD_PROMPT", "TASKS", "TaskConfig", "TaskDef"]

SQUAD_PROMPT = "Title: {title}\nContext: {context}\nQuestion: {question}\nAnswer:"


@dataclass(frozen=True)
class TaskDef:
    """A named task: its kind, its default prompt and its default context length."""

    kind: str | None  # "classification" or "generation"; None: set by task.custom.kind
    prompt: str | None  # None: the config must give one
    max_length: int


TASKS: dict[str, TaskDef] = {
    "sst2": TaskDef("classification", "{sentence} It was", 128),
    "squad": TaskDef("generation", SQUAD_PROMPT, 2048),
    "custom": TaskDef(None, None, 512),
    # tests and demos on the tiny models' vocabulary
    "synthetic-sentiment": TaskDef("classification", "{sentence} It was", 128),
    "synthetic-qa": TaskDef("generation", SQUAD_PROMPT, 128),
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
