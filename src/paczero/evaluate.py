"""Evaluate a finished run's saved model on the dev and test sets it was trained with, or a base model
(zero-shot) on the dev and test sets a config names."""

from __future__ import annotations

from pathlib import Path

from paczero.autobatch import resolve_micro_batch_size
from paczero.config import ConfigError, RunConfig
from paczero.models.loaders import LoadedModel, load_finetuned, load_model
from paczero.models.trunk import forward_model as trunk_forward_model
from paczero.rundir import public_run_config
from paczero.tasks.registry import build_objective, load_splits

# What may change when evaluating a finished run: the sample sizes (for tasks read from files, a larger
# sample contains the smaller: both are prefixes of one seeded permutation) and the micro-batch. Anything
# else would evaluate a setting the model was not trained in.
EVALUATION_OVERRIDES = ("task.dev_size", "task.test_size", "train.micro_batch_size")


def evaluation_config(run_dir: str | Path, overrides: list[str]) -> RunConfig:
    """A finished run's public config with only :data:`EVALUATION_OVERRIDES` changed (no secret needed)."""
    for assignment in overrides:
        key = assignment.split("=", 1)[0].strip()
        if key not in EVALUATION_OVERRIDES:
            raise ConfigError(
                f"eval --set {key}: only {', '.join(EVALUATION_OVERRIDES)} may change when evaluating a "
                "finished run (anything else evaluates a different setting than the one trained)"
            )
    return public_run_config(run_dir, overrides)


def evaluate_run(cfg: RunConfig, model_dir: str | Path, split: str = "both") -> dict[str, dict[str, float]]:
    """Dev and/or test loss and task metrics of the model saved in ``model_dir`` (same data, same prompt)."""
    return evaluate_loaded(cfg, load_finetuned(cfg.model, model_dir), split)


def evaluate_base(cfg: RunConfig, split: str = "both") -> dict[str, dict[str, float]]:
    """Dev and/or test metrics of the model ``cfg.model`` names, untrained: the zero-shot starting point.

    A LoRA adapter starts at zero, so the scores are those of the base model itself.
    """
    return evaluate_loaded(cfg, load_model(cfg.model), split)


def evaluate_loaded(cfg: RunConfig, loaded: LoadedModel, split: str = "both") -> dict[str, dict[str, float]]:
    """Dev and/or test loss and task metrics of an already-loaded model on the data ``cfg.task`` names."""
    splits = load_splits(cfg.task)
    micro_batch = resolve_micro_batch_size(cfg.train.micro_batch_size, loaded.model, cfg.task.max_length)
    objective = build_objective(cfg.task, loaded.tokenizer, micro_batch)
    model = trunk_forward_model(loaded, objective)  # model.cache_trunk: only the trained top blocks run
    wanted = ("dev", "test") if split == "both" else (split,)
    results = {}
    for name in wanted:
        examples = getattr(splits, name)
        if examples:
            results[name] = objective.evaluate(model, objective.prepare(examples, loaded.device))
    return results
