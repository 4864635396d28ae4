"""``paczero bench`` on a cached-trunk config: the step with and without the frozen-trunk cache, in one run.

Reported when the measured config runs cached (``model.cache_trunk``, see :mod:`paczero.models.trunk`): the
same mechanism's step and bare forward over the pool through the top k blocks and through the whole model,
timed round-robin (wall clock and process CPU time), plus the cache's size against its bound
``Σ sequences × width × hidden × bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median
from typing import Any

from paczero.config import load_config
from paczero.models.loaders import LoadedModel
from paczero.models.trunk import TrunkCachedModel
from paczero.trainer import Trainer

MIB = 2**20
TARGETS = {"uncached step / cached step": (">=", 150.0), "cached step / 2 cached forwards": ("<=", 1.10)}


def _round_robin(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Wall and process CPU seconds of each function, timed round-robin: median and min of each."""
    wall: dict[str, list[float]] = {key: [] for key in fns}
    cpu: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - w)
            cpu[key].append(time.process_time() - c)
    return {
        key: {"wall_s": median(wall[key]), "wall_min_s": min(wall[key]), "cpu_s": median(cpu[key])}
        for key in fns
    }


def trunk_comparison(
    config: str | None,
    overrides: list[str],
    loaded: LoadedModel,
    cached: Trainer,
    repeats: int,
    stepper: Callable[[Trainer], Callable[[], Any]],
) -> dict[str, Any]:
    """Cached vs uncached step and forward of ``cached``'s mechanism, timed round-robin on one model.

    Ratios are given on wall-clock medians and on process CPU time: on a shared, oversubscribed machine the
    CPU time (with one torch thread) measures the work done, the wall clock also the other processes' load.
    """
    model = cached.forward_model
    if not isinstance(model, TrunkCachedModel):
        raise ValueError("trunk_comparison needs a config that runs cached (model.cache_trunk)")
    plain = Trainer(load_config(config, [*overrides, "model.cache_trunk=false"]), loaded=loaded)
    objective, pool = cached.objective, cached.pool
    objective.losses(model, pool)  # fills the cache (a step's first forward does the same)
    t = _round_robin(
        {
            "cached_forward": lambda: objective.losses(model, pool),
            "uncached_forward": lambda: objective.losses(loaded.model, pool),
            "cached_step": stepper(cached),
            "uncached_step": stepper(plain),
        },
        repeats,
    )
    row = next(iter(model.cache.rows.values()))  # (tokens, hidden) in the dtype the blocks see
    bound = sum(mb.input_ids.numel() for mb in pool.batches) * row.shape[-1] * row.element_size()
    ratios = {
        f"{clock}_{name}": fn(t, clock)
        for clock in ("wall_s", "cpu_s")
        for name, fn in (
            ("uncached_over_cached_step", lambda t, c: t["uncached_step"][c] / t["cached_step"][c]),
            ("uncached_over_cached_forward", lambda t, c: t["uncached_forward"][c] / t["cached_forward"][c]),
            ("step_over_two_forwards", lambda t, c: t["cached_step"][c] / (2 * t["cached_forward"][c])),
        )
    }
    return {
        "k": model.k,
        "blocks": len(model.blocks),
        "repeats": repeats,
        "timings": t,
        **ratios,
        "cache_bytes": model.cache.nbytes(),
        "cache_bound_bytes": bound,
    }


def trunk_target_values(t: dict[str, Any]) -> dict[str, float]:
    """The values of :data:`TARGETS` in a :func:`trunk_comparison` result."""
    return {
        "uncached step / cached step": t["cpu_s_uncached_over_cached_step"],
        "cached step / 2 cached forwards": t["cpu_s_step_over_two_forwards"],
    }


def trunk_markdown(t: dict[str, Any]) -> list[str]:
    """Markdown rows of the cached/uncached comparison."""
    clocks = {"wall_s": "wall clock", "cpu_s": "process CPU"}
    rows = [
        f"| {what}, {clocks[c]} | {t['timings'][f'cached_{key}'][c]:.3f} | "
        f"{t['timings'][f'uncached_{key}'][c]:.3f} | {t[f'{c}_uncached_over_cached_{key}']:.2f} |"
        for key, what in (("forward", "forward over the pool"), ("step", "step"))
        for c in clocks
    ]
    return [
        "",
        f"frozen-trunk cache: top {t['k']} of {t['blocks']} blocks run; cache "
        f"{t['cache_bytes'] / MIB:,.1f} MiB (bound for the pool {t['cache_bound_bytes'] / MIB:,.1f} MiB); "
        f"median of {t['repeats']}, round-robin",
        "",
        "| measurement | cached (s) | uncached (s) | uncached / cached |",
        "|---|---|---|---|",
        *rows,
        "",
        f"cached step / 2 cached forwards = {t['wall_s_step_over_two_forwards']:.3f} (wall clock), "
        f"{t['cpu_s_step_over_two_forwards']:.3f} (process CPU)",
    ]
