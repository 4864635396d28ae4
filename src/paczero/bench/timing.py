"""Timing on a shared, noisy machine: medians, taken round-robin so that a change in load hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from paczero.trainer import Trainer


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds over ``repeats`` calls in a row."""
    return statistics.median(timed(fn) for _ in range(repeats))


def interleaved(fns: dict[Any, Callable[[], Any]], repeats: int) -> dict[Any, float]:
    """Median time of each function, timed round-robin so that a change in machine load hits all alike."""
    times: dict[Any, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            times[key].append(timed(fn))
    return {key: statistics.median(ts) for key, ts in times.items()}


def stepper(trainer: Trainer, first: int = 0) -> Callable[[], Any]:
    """Calls ``trainer.step(t)`` with t = first, first + 1, ... (the learning-rate schedule advances)."""
    counter = iter(range(first, 10**9))
    return lambda: trainer.step(next(counter))
