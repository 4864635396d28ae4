"""Fine-tune from Python: from a config, or from your own transformers model and examples.

>>> from paczero import api
>>> result = api.train("demo", "runs/demo")                    # a config file or a shipped config name
>>> result = api.train_model(model, tokenizer, records, prompt="Review: {text}\\nSentiment:",
...                          label_words=[" negative", " positive"], overrides=["task.pool_size=64"])
>>> result.summary["test"], result.model                       # metrics; the fine-tuned model

``overrides`` are the ``--set key=value`` assignments of the command line. Records are dicts (or the rows
of a ``datasets.Dataset``) holding the fields the prompt names and ``label`` (classification; an index
into ``label_words``, or one of ``labels``) or ``answer`` (generation). They are checked as the files of a
custom task are (docs/tasks.md), and the MeZO protocol draws pool and dev from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paczero.config import RunConfig, apply_override, build_config, load_config
from paczero.configs import resolve_config
from paczero.evaluate import evaluate_base, evaluate_loaded
from paczero.models.loaders import LoadedModel, prepare_loaded
from paczero.tasks.custom import record_schema
from paczero.tasks.data import Example, Splits, mezo_splits
from paczero.trainer import Trainer

# What config.yaml records as the data source of a run trained on records passed from Python: not a
# file, so `paczero eval --run` says it is missing; evaluate such a run with :func:`evaluate` instead.
IN_MEMORY = "<records passed to paczero.api.train_model>.jsonl"

__all__ = ["IN_MEMORY", "Result", "config", "evaluate", "train", "train_model"]


@dataclass
class Result:
    """A finished run: its summary (the content of summary.json), the model, where its outputs went."""

    summary: dict[str, Any]
    loaded: LoadedModel
    output_dir: Path | None

    @property
    def model(self):
        """The fine-tuned model (a peft model on the LoRA track), in the state selected by best dev."""
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer


def config(source: RunConfig | str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A validated run config from a YAML file, a shipped config name (``demo``), or defaults, plus
    ``key=value`` overrides."""
    if isinstance(source, RunConfig):
        if overrides:
            raise ValueError("overrides apply to a config file or name; change a RunConfig's fields directly")
        return source
    return load_config(resolve_config(source) if source is not None else None, list(overrides))


def train(
    source: RunConfig | str | Path, output_dir: str | Path | None = None, overrides: Sequence[str] = ()
) -> Result:
    """Run the fine-tuning a config describes; with ``output_dir`` write every output `paczero train` does."""
    trainer = Trainer(config(source, overrides), output_dir)
    summary = trainer.run()
    return Result(summary, trainer.loaded, Path(output_dir) if output_dir is not None else None)


def _task_config(model, task: dict[str, Any], custom: dict[str, Any], overrides: Sequence[str]) -> RunConfig:
    tree: dict[str, Any] = {
        "task": {"name": "custom", **task, "custom": {"train": IN_MEMORY, **custom}},
        "model": {"name": str(getattr(model, "name_or_path", "") or "in-memory-model")},
    }
    for assignment in overrides:
        apply_override(tree, assignment)
    return build_config(tree)


def _examples(records: Iterable[Mapping[str, Any]], cfg: RunConfig, what: str) -> list[Example]:
    schema = record_schema(cfg.task.custom, cfg.task.prompt, cfg.task.label_words)
    return schema.examples((f"{what} record {i}", dict(r)) for i, r in enumerate(records))


def train_model(
    model,
    tokenizer,
    records: Iterable[Mapping[str, Any]],
    *,
    prompt: str,
    label_words: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    label_field: str = "label",
    answer_field: str = "answer",
    kind: str = "classification",
    test_records: Iterable[Mapping[str, Any]] | None = None,
    output_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Result:
    """Fine-tune an already-loaded transformers causal LM on records in memory (a list or a Dataset).

    ``model.name_or_path`` is recorded as ``model.name`` (so a later ``paczero eval`` of a full-track run,
    or of a LoRA run on a hub/local model, finds the base). Pool and dev come from ``records``, the test
    set from ``test_records``. ``labels``, ``label_field`` and ``answer_field`` are those of a custom task's
    ``task.custom``. Everything else is set by ``overrides`` (``train.steps=50``,
    ``privacy.mechanism=paczero-mi``, ``task.pool_size=...``, ``model.track=full``, ...).
    """
    task: dict[str, Any] = {"prompt": prompt}
    if label_words is not None:
        task["label_words"] = list(label_words)
    custom = {"kind": kind, "label_field": label_field, "answer_field": answer_field}
    if labels is not None:
        custom["labels"] = list(labels)
    cfg = _task_config(model, task, custom, overrides)
    train_set = _examples(records, cfg, "train")
    test_set = _examples(test_records, cfg, "test") if test_records is not None else []
    t = cfg.task
    splits: Splits = mezo_splits(train_set, test_set, t.pool_size, t.dev_size, t.test_size, t.data_seed)
    trainer = Trainer(cfg, output_dir, loaded=prepare_loaded(model, tokenizer, cfg.model), splits=splits)
    summary = trainer.run()
    return Result(summary, trainer.loaded, Path(output_dir) if output_dir is not None else None)


def evaluate(
    source: RunConfig | str | Path,
    overrides: Sequence[str] = (),
    loaded: LoadedModel | Result | None = None,
    split: str = "both",
) -> dict[str, dict[str, float]]:
    """Dev/test metrics on the data a config names: of ``loaded`` (e.g. a :class:`Result`) if given,
    else of the config's base model, untrained (zero-shot)."""
    cfg = config(source, overrides)
    if loaded is None:
        return evaluate_base(cfg, split)
    return evaluate_loaded(cfg, loaded.loaded if isinstance(loaded, Result) else loaded, split)
