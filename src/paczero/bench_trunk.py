"""``paczero bench`` on a cached-trunk config: the step with and without the frozen-trunk cache, in one run.

Reported when the measured config runs cached (``model.cache_trunk``, see :mod:`paczero.trunk`): the same
mechanism's step and bare forward over the pool through the top k blocks and through the whole model, timed
round-robin, plus the cache's size against its bound ``Σ sequences × width × hidden × bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paczero.config import load_config
from paczero.models import LoadedModel
from paczero.trainer import Trainer
from paczero.trunk import TrunkCachedModel

MIB = 2**20
TARGETS = {"uncached step / cached step": (">=", 5.0), "cached step / 2 cached forwards": ("<=", 1.10)}


def trunk_comparison(
    config: str | None,
    overrides: list[str],
    loaded: LoadedModel,
    cached: Trainer,
    repeats: int,
    interleaved: Callable[[dict[str, Callable[[], Any]], int], dict[str, float]],
    stepper: Callable[[Trainer], Callable[[], Any]],
) -> dict[str, Any]:
    """Cached vs uncached step and forward of ``cached``'s mechanism, timed round-robin on one model."""
    model = cached.forward_model
    if not isinstance(model, TrunkCachedModel):
        raise ValueError("trunk_comparison needs a config that runs cached (model.cache_trunk)")
    plain = Trainer(load_config(config, [*overrides, "model.cache_trunk=false"]), loaded=loaded)
    objective, pool = cached.objective, cached.pool
    objective.losses(model, pool)  # fills the cache (a step's first forward does the same)
    timings = interleaved(
        {
            "cached_forward": lambda: objective.losses(model, pool),
            "uncached_forward": lambda: objective.losses(loaded.model, pool),
            "cached_step": stepper(cached),
            "uncached_step": stepper(plain),
        },
        repeats,
    )
    hidden = model.config.hidden_size
    bound = (
        sum(mb.input_ids.numel() for mb in pool.batches) * hidden * next(model.parameters()).element_size()
    )
    return {
        "k": model.k,
        "blocks": len(model.blocks),
        **{f"{name}_s": value for name, value in timings.items()},
        "uncached_over_cached_step": timings["uncached_step"] / timings["cached_step"],
        "cached_step_over_two_cached_forwards": timings["cached_step"] / (2 * timings["cached_forward"]),
        "cache_bytes": model.cache.nbytes(),
        "cache_bound_bytes": bound,
    }


def trunk_target_values(t: dict[str, Any]) -> dict[str, float]:
    """The values of :data:`TARGETS` in a :func:`trunk_comparison` result."""
    return {
        "uncached step / cached step": t["uncached_over_cached_step"],
        "cached step / 2 cached forwards": t["cached_step_over_two_cached_forwards"],
    }


def trunk_markdown(t: dict[str, Any]) -> list[str]:
    """Markdown rows of the cached/uncached comparison."""
    return [
        "",
        f"frozen-trunk cache: top {t['k']} of {t['blocks']} blocks run; cache "
        f"{t['cache_bytes'] / MIB:,.1f} MiB (bound for the pool {t['cache_bound_bytes'] / MIB:,.1f} MiB)",
        "",
        "| measurement | cached (s) | uncached (s) | uncached / cached |",
        "|---|---|---|---|",
        f"| forward over the pool | {t['cached_forward_s']:.3f} | {t['uncached_forward_s']:.3f} | "
        f"{t['uncached_forward_s'] / t['cached_forward_s']:.2f} |",
        f"| step | {t['cached_step_s']:.3f} | {t['uncached_step_s']:.3f} | "
        f"{t['uncached_over_cached_step']:.2f} |",
        "",
        f"cached step / 2 cached forwards = {t['cached_step_over_two_cached_forwards']:.3f}",
    ]
