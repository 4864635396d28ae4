"""Checkpoint selection on public dev metrics: the dev history and the best state seen so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Best:
    """The best dev state so far: its selection key (lower is better), its step and its trainable weights."""

    key: float
    step: int
    weights: dict[str, torch.Tensor]


@dataclass
class DevSelection:
    """The dev evaluations of a run and its best state; it reads released weights and public dev data only."""

    select_by: str  # train.select_by: dev_loss or dev_<metric of the task>
    history: list[dict[str, Any]]
    best: Best

    @classmethod
    def start(cls, select_by: str, metrics: dict[str, Any], weights: dict[str, torch.Tensor]) -> DevSelection:
        """The selection at step 0: ``metrics`` (the step-0 dev evaluation, or only its step) is the best."""
        return cls(select_by, [metrics], Best(selection_key(select_by, metrics), 0, weights))

    @classmethod
    def from_state(
        cls, select_by: str, state: dict[str, Any], weights: dict[str, torch.Tensor]
    ) -> DevSelection:
        """The selection a checkpoint saved (``to_state``), with the best state's ``weights``."""
        best = state["best"]
        return cls(select_by, state["history"], Best(best["key"], best["step"], weights))

    def to_state(self) -> dict[str, Any]:
        """The public part, for a checkpoint: the history and the best step and key (weights go apart)."""
        return {"history": self.history, "best": {"key": self.best.key, "step": self.best.step}}

    def key(self, metrics: dict[str, Any]) -> float:
        """The selection key of a dev evaluation (lower is better)."""
        return selection_key(self.select_by, metrics)

    def observe(self, metrics: dict[str, Any], weights: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Add a dev evaluation at ``metrics["step"]``; keep its state (``weights()``) if it is the best."""
        self.history.append(metrics)
        key = self.key(metrics)
        if key < self.best.key:
            self.best = Best(key, metrics["step"], weights())

    def selected_step(self, final: int) -> int:
        """The step to publish: the best one, unless the last evaluation (of step ``final``) is as good."""
        return self.best.step if self.best.key < self.key(self.history[-1]) else final


def selection_key(select_by: str, metrics: dict[str, Any]) -> float:
    """``metrics``' key under ``train.select_by`` (lower is better; 0 for an evaluation without dev data)."""
    if "loss" not in metrics:
        return 0.0
    metric = select_by.removeprefix("dev_")
    return metrics["loss"] if metric == "loss" else -metrics[metric]  # metrics: higher is better
