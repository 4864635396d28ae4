"""Experiment trackers a run reports to (``train.report_to``): TensorBoard, Weights & Biases, MLflow.

Trackers see public values only: the released step records (loss and clip fraction only where the batch is
public, the learning rate, unanimity, σ, MI and ε spent), the dev metrics at each evaluation and the public
config. No tracker gets a per-step wall-clock: TensorBoard and MLflow entries carry a fixed time, and
Weights & Biases, which stamps every row with its arrival time, gets the rows when the run ends. Their local
files go to the run's private area, and nothing leaves the machine by default (W&B runs offline unless
``WANDB_MODE`` says otherwise; MLflow writes to ``private/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

NONE = "none"
PUBLIC_TIME = 0.0  # the time every TensorBoard and MLflow entry carries (seconds since the epoch)


class Tracker(Protocol):
    """Where public scalars go."""

    def log(self, values: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def step_scalars(record: Any) -> dict[str, float]:
    """The public scalars of a released step record (what ``steps.jsonl`` publishes anyway)."""
    values = {"train/lr": record.lr}
    if record.unanimous:  # empty for DP releases: no candidate subsets take part
        values["privacy/unanimous"] = float(np.mean(record.unanimous))
    optional = {
        "train/loss": record.loss,  # None for DP runs: the loss over a secret batch is not released
        "train/clip_fraction": record.clip_fraction,
        "privacy/mi_spent": record.mi_spent,
        "privacy/epsilon_spent": getattr(record, "epsilon_spent", None),
    }
    values.update({k: float(v) for k, v in optional.items() if v is not None})
    sigma = [s for s in record.sigma if s is not None]
    if sigma:
        values["privacy/sigma"] = float(np.mean(sigma))
    return values


def dev_scalars(metrics: dict[str, float]) -> dict[str, float]:
    """A dev evaluation's metrics as ``dev/<metric>`` scalars."""
    return {f"dev/{k}": float(v) for k, v in metrics.items() if k != "step"}


class TensorBoardTracker:
    """Scalars through a ``SummaryWriter``-like object."""

    def __init__(self, writer: Any):
        self.writer = writer

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step, walltime=PUBLIC_TIME)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """Weights & Biases, offline unless ``WANDB_MODE`` is set; rows are sent when the run ends."""

    def __init__(self, wandb: Any, directory: Path, config: dict[str, Any]):
        self.wandb, self.rows = wandb, []
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "paczero"),
            dir=str(directory),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=config,
            settings={"x_disable_stats": True, "x_disable_meta": True},  # no host or timing samples
        )

    def log(self, values: dict[str, float], step: int) -> None:
        self.rows.append((step, values))

    def close(self) -> None:
        for step, values in self.rows:
            self.run.log(values, step=step)
        self.run.finish()


class MlflowTracker:
    """MLflow, to ``private/mlruns`` unless ``MLFLOW_TRACKING_URI`` names a server."""

    def __init__(self, mlflow: Any, directory: Path, config: dict[str, Any]):
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(directory.resolve().as_uri())
        mlflow.start_run()
        mlflow.log_params(_flatten(config))

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step, timestamp=int(PUBLIC_TIME * 1000))

    def close(self) -> None:
        self.mlflow.end_run()


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _tensorboard(directory: Path, _config: dict[str, Any]) -> Tracker | None:
    if importlib.util.find_spec("tensorboard") is None:
        logger.info("train.report_to: tensorboard is not installed (pip install 'paczero[tensorboard]')")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return TensorBoardTracker(SummaryWriter(str(directory)))


def _package(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeError(
            f"train.report_to: {name} needs its package (pip install 'paczero[{name}]')"
        ) from None


TRACKERS: dict[str, Callable[[Path, dict[str, Any]], Tracker | None]] = {
    "tensorboard": _tensorboard,
    "wandb": lambda directory, config: WandbTracker(_package("wandb"), directory, config),
    "mlflow": lambda directory, config: MlflowTracker(_package("mlflow"), directory, config),
}
REPORT_TO = (*TRACKERS, NONE)


def tracker_names(report_to: str | list[str]) -> list[str]:
    """``train.report_to`` as a list of tracker names (``none`` → none)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in names if name != NONE]


class Trackers:
    """Every tracker of a run; each gets the same public scalars."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log_step(self, record: Any) -> None:
        """A released step's public scalars."""
        self._log(step_scalars(record), record.step)

    def log_dev(self, metrics: dict[str, float]) -> None:
        """A dev evaluation (``metrics["step"]``: the step it followed)."""
        self._log(dev_scalars(metrics), int(metrics["step"]))

    def _log(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(values, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(
    report_to: str | list[str], private: Callable[[str], Path], config: dict[str, Any]
) -> Trackers:
    """The trackers ``report_to`` names, each writing below ``private(name)``, a private folder."""
    opened = [TRACKERS[name](private(name), config) for name in tracker_names(report_to)]
    return Trackers([t for t in opened if t is not None])
