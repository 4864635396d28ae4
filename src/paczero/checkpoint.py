"""Crash-safe checkpoints: the checkpointer stores what the trainer hands it and hands it back.

It knows nothing of the trainer: a :class:`Snapshot` holds public state, private state and weights. A
checkpoint is a directory ``checkpoints/step-NNNNNN`` written under a temporary name, every file fsynced, then
renamed into place (rename is atomic), so a run killed at any instant leaves either the previous checkpoint or
the new one, never a torn one. The private state (the privacy generators, which predict every
secret-dependent draw) goes in a separate file created with mode 0600; exports leave it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paczero.interrupt import Interrupted
from paczero.rundir import (
    CHECKPOINT_BEST,
    CHECKPOINT_PRIVATE,
    CHECKPOINT_STATE,
    CHECKPOINT_WEIGHTS,
    CHECKPOINTS,
    PRIVATE_FILE_MODE,
    TRANSCRIPT,
    RunWriteError,
    fsync_dir,
    write_all,
    writing,
)

FORMAT = 2
_STEP_DIR = re.compile(r"step-(\d{6,})")


@dataclass
class Snapshot:
    """A checkpoint's contents: JSON state (public), JSON private state (0600) and tensors, at ``step``."""

    step: int
    state: dict[str, Any]
    private: dict[str, Any]
    weights: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None = None  # best-dev weights, when they are not ``weights``


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not belong to this run."""


class Checkpointer:
    """Saves and loads :class:`Snapshot` objects in ``run_dir/checkpoints``, keeping only the newest."""

    def __init__(self, run_dir: str | Path, every: int, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / CHECKPOINTS
        self.every = every
        self.resume = resume
        self.stop_signal: int | None = None  # set on SIGINT/SIGTERM (``paczero.interrupt.graceful_stop``)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (names under a temporary prefix are incomplete and ignored)."""
        if not self.root.is_dir():
            return None
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.fullmatch(p.name))]
        return max(found)[1] if found else None

    def after_step(self, step: int, save: Callable[[], Path]) -> None:
        """Call ``save`` on the cadence; on a pending SIGINT/SIGTERM, call it and raise Interrupted."""
        if self.stop_signal is not None:
            raise Interrupted(self.stop_signal, step, save())
        if self.every and step % self.every == 0:
            save()

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` atomically and drop older checkpoints; returns the checkpoint directory.

        A step that already has a checkpoint (the save at exit right after a cadence save, or a resumed run
        that had nothing left to do) keeps it: deleting it to write the same state again would leave, for an
        instant, released steps and no checkpoint at all.
        """
        from safetensors.torch import save_file

        self.root.mkdir(exist_ok=True)
        final = self.root / f"step-{snapshot.step:06d}"
        if final.is_dir():
            return final
        tmp = self.root / f".tmp-{final.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            with writing(final):  # a failed write names the checkpoint (a temporary one is never loaded)
                save_file(_contiguous(snapshot.weights), str(tmp / CHECKPOINT_WEIGHTS))
                if snapshot.best is not None:
                    save_file(_contiguous(snapshot.best), str(tmp / CHECKPOINT_BEST))
                _write_new(tmp / CHECKPOINT_PRIVATE, json.dumps(snapshot.private).encode(), PRIVATE_FILE_MODE)
                state = {"format": FORMAT, "step": snapshot.step, **snapshot.state}
                _write_new(tmp / CHECKPOINT_STATE, json.dumps(state).encode(), 0o644)
                fsync_dir(tmp)
        except RunWriteError:
            shutil.rmtree(tmp, ignore_errors=True)  # a part written to a full disk only takes space
            raise
        os.replace(tmp, final)
        fsync_dir(self.root)
        for old in list(self.root.iterdir()):
            m = _STEP_DIR.fullmatch(old.name)
            if m and int(m.group(1)) != snapshot.step:
                trash = self.root / f".old-{old.name}"
                if trash.exists():
                    shutil.rmtree(trash)
                os.replace(old, trash)
                shutil.rmtree(trash)
            elif old.name.startswith(".old-"):  # left half-deleted by a crash in an earlier rotation
                shutil.rmtree(old)
        return final

    def load(self) -> Snapshot | None:
        """The newest checkpoint; None when there is none and nothing was released (a fresh start)."""
        path = self.latest()
        if path is None:
            if (self.run_dir / TRANSCRIPT).is_file() and (self.run_dir / TRANSCRIPT).stat().st_size:
                raise CheckpointError(
                    f"cannot resume {self.run_dir}: steps were released but no checkpoint was found"
                )
            return None
        try:
            state = json.loads((path / CHECKPOINT_STATE).read_text())
            private = json.loads((path / CHECKPOINT_PRIVATE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
        if not isinstance(state, dict) or state.pop("format", None) != FORMAT:
            raise CheckpointError(f"checkpoint {path} is not a format-{FORMAT} paczero checkpoint")
        best = path / CHECKPOINT_BEST
        return Snapshot(
            step=state.pop("step"),
            state=state,
            private=private,
            weights=_load_weights(path / CHECKPOINT_WEIGHTS),
            best=_load_weights(best) if best.is_file() else None,
        )


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"checkpoint weights {path} are unreadable: {err}") from None


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.contiguous() for name, t in state.items()}


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["CheckpointError", "Checkpointer", "Snapshot"]
