"""Step time swept over the pool size N (with a linear fit) and over the number of candidate subsets M."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from paczero.bench.timing import interleaved, stepper
from paczero.config import load_config
from paczero.models.loaders import LoadedModel
from paczero.privacy.ledger import Guarantee
from paczero.privacy.pac import PacLedger
from paczero.subsets import Secret, build_subsets
from paczero.trainer import Trainer


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares line y = slope·x + intercept, with R² and the largest relative residual."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {
        "slope_s_per_example": float(slope),
        "intercept_s": float(intercept),
        "r2": r2,
        "max_relative_residual": float(np.max(np.abs(y - pred) / y)),
    }


def sweep(config, overrides, loaded: LoadedModel, key: str, values, repeats: int) -> dict[str, list]:
    """Step time at each value of the config key ``key`` on the same loaded model, timed round-robin."""
    trainers = [Trainer(load_config(config, [*overrides, f"{key}={v}"]), loaded=loaded) for v in values]
    for trainer in trainers:
        trainer.step(0)  # warm-up
    times = interleaved({i: stepper(tr, first=1) for i, tr in enumerate(trainers)}, repeats)
    return {"key": key, "values": list(values), "step_s": [times[i] for i in range(len(values))]}


def sweep_subsets(trainer: Trainer, values, repeats: int) -> dict[str, list]:
    """Step time over M on ONE trainer (same model, pool tensors and caches): only the candidate subsets,
    the mechanism and the ledger are swapped, so the timing isolates what M changes."""
    cfg = trainer.cfg
    parts = {}
    for m in values:
        subsets = build_subsets(trainer.subsets.n, m, np.random.default_rng(m))
        mechanism = type(trainer.mechanism)(Secret(0, m), np.random.default_rng(0))
        releases = cfg.train.steps * cfg.train.directions
        budget = cfg.privacy.budget if mechanism.guarantee is Guarantee.MI_BUDGET else None
        parts[m] = (subsets, mechanism, PacLedger(m, releases, budget, cfg.privacy.budget_schedule))
    counter = iter(range(1, 10**9))

    def step_with(m: int) -> Callable[[], Any]:
        def run() -> Any:
            trainer.subsets, trainer.mechanism, trainer.ledger = parts[m]
            return trainer.step(next(counter))

        return run

    saved = (trainer.subsets, trainer.mechanism, trainer.ledger)
    for m in values:
        step_with(m)()  # warm-up
    times = interleaved({m: step_with(m) for m in values}, repeats)
    trainer.subsets, trainer.mechanism, trainer.ledger = saved
    return {"key": "privacy.subsets", "values": list(values), "step_s": [times[m] for m in values]}
