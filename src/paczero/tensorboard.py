"""TensorBoard scalars the trainer writes to private/tensorboard: a training output, not the public report."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np


class TensorBoardLog:
    """Scalars of each public step record, written with a ``SummaryWriter``-like object."""

    def __init__(self, writer: Any):
        self.writer = writer

    def log(self, record: Any) -> None:
        w, step = self.writer, record.step
        if record.loss is not None:  # None for DP runs: the loss over a secret batch is not released
            w.add_scalar("train/loss", record.loss, step)
        w.add_scalar("train/lr", record.lr, step)
        w.add_scalar("privacy/unanimous", float(np.mean(record.unanimous)), step)
        if record.mi_spent is not None:
            w.add_scalar("privacy/mi_spent", record.mi_spent, step)
        sigma = [s for s in record.sigma if s is not None]
        if sigma:
            w.add_scalar("privacy/sigma", float(np.mean(sigma)), step)

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(directory: Path) -> TensorBoardLog | None:
    """A TensorBoard log in ``directory`` when the tensorboard package is installed, else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return TensorBoardLog(SummaryWriter(str(directory)))
