"""Crash-safe checkpoints, and the guards around a run directory (resume, overwrite, changed configs).

The checkpointer stores what the trainer hands it (:class:`Snapshot`: public state, private state, weights)
and hands it back; it knows nothing of the trainer. A checkpoint is a directory ``checkpoints/step-NNNNNN``
written under a temporary name, every file fsynced, then renamed into place (rename is atomic), so a run
killed at any instant leaves either the previous checkpoint or the new one, never a torn one. The private
state (the privacy generators, which predict every secret-dependent draw) goes in a separate file created
with mode 0600 (``privacy.json``); exports leave it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from paczero.rundir import (
    LOCK,
    PRIVATE,
    STATE,
    RunDirError,
    RunWriteError,
    fsync_dir,
    public_run_config,
    read_private_lines,
    read_secret,
    write_all,
    write_private,
    writing,
)
from paczero.transcript import TRANSCRIPT, bound_config

if TYPE_CHECKING:
    from paczero.config import RunConfig

FORMAT = 2
CHECKPOINTS = "checkpoints"
PRIVATE_MODE = 0o600
RESUMABLE_KEYS = ("train.progress", "train.checkpoint_every", "train.report_to")
_STEP_DIR = re.compile(r"step-(\d{6,})")
# Files that mark a directory as holding a run.
RUN_MARKERS = ("config.yaml", TRANSCRIPT, "summary.json", PRIVATE, CHECKPOINTS)


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


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: the run saved a checkpoint after the current step and stopped."""

    def __init__(self, signum: int, step: int, path: Path):
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} after step {step}; checkpoint saved in {path}")


def check_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to start a run in a directory that holds another run, unless resuming or overwriting it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output directory {path} is a file")
    found = [name for name in RUN_MARKERS if (path / name).exists()]
    if resume:
        if not (path / "config.yaml").is_file():
            raise RunDirError(f"nothing to resume: {path} holds no run (no config.yaml)")
    elif found and not overwrite:
        raise RunDirError(
            f"{path} already holds a run ({', '.join(found)}); continue it with --resume {path} "
            "or replace it with --overwrite"
        )


def clear_run_dir(path: str | Path) -> None:
    """Empty a directory that holds a run (``--overwrite``, called once the new run's setup has passed)."""
    path = Path(path)
    if not path.is_dir() or not any((path / name).exists() for name in RUN_MARKERS):
        return
    for entry in path.iterdir():
        if entry.name == LOCK:  # the lock this command holds: removing it would let a second writer in
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def resume_config(run_dir: str | Path, config: str | Path | None, overrides: list[str]) -> RunConfig:
    """The config to resume a run with: its ``config.yaml`` plus J and the privacy seed from ``secret.json``.

    Overrides may only change keys that alter neither the transcript nor the accounting (RESUMABLE_KEYS); a
    ``config`` file, when given, must describe the same run.
    """
    from paczero.config import apply_override, build_config, load_yaml_tree

    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume=True)
    tree = load_yaml_tree(run_dir / "config.yaml")
    saved = bound_config(public_run_config(run_dir).to_dict())
    if config is not None:
        tree = load_yaml_tree(config)
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        secret = read_secret(run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(f"cannot resume: {err}") from None
    privacy = tree.setdefault("privacy", {})
    privacy.update(secret_index=secret["secret_index"], seed=None if secret["secure"] else secret["entropy"])
    cfg = build_config(tree)
    refuse_changes(saved, bound_config(cfg.to_dict()))
    return cfg


def refuse_changes(saved: dict[str, Any], new: dict[str, Any]) -> None:
    """CheckpointError unless the bound config ``new`` equals the ``saved`` one a run was accounted under."""
    changed = [
        f"{section}.{key} ({value!r} -> {new.get(section, {}).get(key)!r})"
        for section, values in saved.items()
        for key, value in values.items()
        if new.get(section, {}).get(key) != value
    ]
    if changed:
        raise CheckpointError(
            "resume refused: the config differs from the run being resumed at "
            + ", ".join(changed)
            + "; the steps already released were accounted under the original config "
            f"(only {', '.join(RESUMABLE_KEYS)} may change on resume)"
        )


class Checkpointer:
    """Saves and loads :class:`Snapshot` objects in ``run_dir/checkpoints``, keeping only the newest."""

    def __init__(self, run_dir: str | Path, every: int, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / CHECKPOINTS
        self.every = every
        self.resume = resume
        self.stop_signal: int | None = None  # set by a SIGINT/SIGTERM handler (see ``graceful_stop``)

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
                save_file(_contiguous(snapshot.weights), str(tmp / "weights.safetensors"))
                if snapshot.best is not None:
                    save_file(_contiguous(snapshot.best), str(tmp / "best.safetensors"))
                _write_new(tmp / "privacy.json", json.dumps(snapshot.private).encode(), PRIVATE_MODE)
                state = {"format": FORMAT, "step": snapshot.step, **snapshot.state}
                _write_new(tmp / "state.json", json.dumps(state).encode(), 0o644)
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
            state = json.loads((path / "state.json").read_text())
            private = json.loads((path / "privacy.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
        if not isinstance(state, dict) or state.pop("format", None) != FORMAT:
            raise CheckpointError(f"checkpoint {path} is not a format-{FORMAT} paczero checkpoint")
        best = path / "best.safetensors"
        return Snapshot(
            step=state.pop("step"),
            state=state,
            private=private,
            weights=_load_weights(path / "weights.safetensors"),
            best=_load_weights(best) if best.is_file() else None,
        )


def released_lines(run_dir: Path, checkpointed: list[str]) -> list[str]:
    """Every complete line of ``steps.jsonl``; those a checkpoint holds must be its first lines.

    On resume, the lines after the checkpoint's are re-applied from their released values, never computed
    again; a torn last line was never released.
    """
    path = run_dir / TRANSCRIPT
    raw = path.read_text() if path.is_file() else ""
    lines = raw[: raw.rfind("\n") + 1].splitlines()
    if lines[: len(checkpointed)] != checkpointed:
        raise CheckpointError(
            f"cannot resume {run_dir}: {TRANSCRIPT} does not begin with the "
            f"{len(checkpointed)} lines of the newest checkpoint"
        )
    return lines


def private_state_at(run_dir: Path, step: int) -> dict[str, Any]:
    """The private state saved with released step ``step``; later lines (never released) are dropped."""
    path = run_dir / STATE
    lines = [line for line in read_private_lines(path) if line["step"] <= step]
    if not lines or lines[-1]["step"] != step:
        raise CheckpointError(f"cannot resume {run_dir}: {STATE} has no state for released step {step}")
    write_private(path, "".join(json.dumps(line) + "\n" for line in lines))
    return lines[-1]


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


@contextmanager
def graceful_stop(checkpointer: Checkpointer | None) -> Iterator[None]:
    """While training, SIGINT/SIGTERM ask for a checkpoint after the current step instead of killing the run.

    A second signal restores the previous handler, so it then acts at once. Outside the main thread (where
    handlers cannot be set) this does nothing.
    """
    if checkpointer is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if checkpointer.stop_signal is not None:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        checkpointer.stop_signal = signum
        print(f"paczero: {signal.Signals(signum).name} received; stopping after this step", flush=True)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "CheckpointError",
    "Checkpointer",
    "Interrupted",
    "RunDirError",
    "Snapshot",
    "check_run_dir",
    "clear_run_dir",
    "graceful_stop",
    "private_state_at",
    "refuse_changes",
    "released_lines",
    "resume_config",
]
