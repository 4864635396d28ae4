"""Evaluate a finished run's saved model on the dev and test sets it was trained with."""

from __future__ import annotations

from pathlib import Path

from paczero.autobatch import resolve_micro_batch_size
from paczero.config import RunConfig
from paczero.models import load_finetuned
from paczero.tasks import build_objective, load_splits


def evaluate_run(cfg: RunConfig, model_dir: str | Path, split: str = "both") -> dict[str, dict[str, float]]:
    """Dev and/or test loss and task metrics of the model saved in ``model_dir`` (same data, same prompt)."""
    loaded = load_finetuned(cfg.model, model_dir)
    splits = load_splits(cfg.task)
    micro_batch = resolve_micro_batch_size(cfg.train.micro_batch_size, loaded.model, cfg.task.max_length)
    objective = build_objective(cfg.task, loaded.tokenizer, micro_batch)
    wanted = ("dev", "test") if split == "both" else (split,)
    results = {}
    for name in wanted:
        examples = getattr(splits, name)
        if examples:
            results[name] = objective.evaluate(loaded.model, objective.prepare(examples, loaded.device))
    return results
