"""Crash-safe checkpoints of the full run state, resume, and the guards around a run directory.

A checkpoint is a directory ``checkpoints/step-NNNNNN`` written under a temporary name, every file
fsynced, then renamed into place (rename is atomic), so a run killed at any instant leaves either the previous
checkpoint or the new one, never a torn one. It holds the step, the trainable weights, the best-dev state,
the public generators (directions, data), the ledger (posterior, spent, counts), the dev history and the
transcript lines so far. The privacy generators (coins, noise, DP sampling) predict every secret-dependent
draw, so they go in a separate file created with mode 0600 (``privacy.json``), like ``secret.json``;
exports leave both out.

Resuming restores all of it and never computes a released step again: the steps that ``steps.jsonl`` holds
after the checkpoint are re-applied from their released update values (no forward pass), and the generators
and ledger are set to the private state saved with the last of them (``private/state.jsonl``). A step that
was computed but whose line was never written was never released, so it is simply computed afresh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from paczero.models.loaders import load_trainable_state
from paczero.rundir import (
    PRIVATE,
    STATE,
    RunDirError,
    fsync_dir,
    public_run_config,
    read_private_lines,
    read_secret,
    write_private,
)
from paczero.transcript import HEAD, TRANSCRIPT, bound_config

if TYPE_CHECKING:
    from paczero.config import RunConfig
    from paczero.trainer import Trainer

FORMAT = 1
CHECKPOINTS = "checkpoints"
PRIVATE_MODE = 0o600
PUBLIC_GENERATORS = ("public_rng", "data_rng")  # Trainer attributes; every other generator is private
RESUMABLE_KEYS = ("train.progress", "train.checkpoint_every")
_STEP_DIR = re.compile(r"step-(\d{6,})")
# Files that mark a directory as holding a run.
RUN_MARKERS = ("config.yaml", TRANSCRIPT, "summary.json", PRIVATE, CHECKPOINTS)

Best = tuple[float, int, dict[str, torch.Tensor]]  # (selection key, step, trainable weights)
# (dev history, best, transcript records released after the checkpoint, private state after the last of them)
Restored = tuple[list[dict], Best, list[dict[str, Any]], dict[str, Any] | None]


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
    _refuse_changes(saved, bound_config(cfg.to_dict()))
    return cfg


def _refuse_changes(saved: dict[str, Any], new: dict[str, Any]) -> None:
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


def _generator_states(owner: Any, names: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> dict:
    return {
        name: value.bit_generator.state
        for name, value in vars(owner).items()
        if isinstance(value, np.random.Generator) and (names is None or name in names) and name not in exclude
    }


def _set_generator_states(owner: Any, states: dict[str, Any], where: str) -> None:
    for name, state in states.items():
        gen = getattr(owner, name, None)
        if not isinstance(gen, np.random.Generator) or gen.bit_generator.state["bit_generator"] != state.get(
            "bit_generator"
        ):
            raise CheckpointError(f"checkpoint {where} has a generator {name!r} this run does not have")
        gen.bit_generator.state = state


class Checkpointer:
    """Saves and restores a :class:`~paczero.trainer.Trainer`'s state in ``run_dir/checkpoints``."""

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

    def after_step(self, trainer: Trainer, history: list[dict], best: Best) -> None:
        """Checkpoint on the cadence; on a pending SIGINT/SIGTERM, checkpoint and raise Interrupted."""
        step = len(trainer.records)
        if self.stop_signal is not None:
            raise Interrupted(self.stop_signal, step, self.save(trainer, history, best))
        if self.every and step % self.every == 0:
            self.save(trainer, history, best)

    def save(self, trainer: Trainer, history: list[dict], best: Best) -> Path:
        """Write the full run state atomically; returns the checkpoint directory.

        A step that already has a checkpoint (the save at exit right after a cadence save, or a resumed run
        that had nothing left to do) keeps it: deleting it to write the same state again would leave, for an
        instant, released steps and no checkpoint at all.
        """
        from safetensors.torch import save_file

        from paczero.models.loaders import trainable_state

        step = len(trainer.records)
        self.root.mkdir(exist_ok=True)
        final = self.root / f"step-{step:06d}"
        if final.is_dir():
            if trainer.transcript is not None:
                trainer.transcript.write_head()
            return final
        tmp = self.root / f".tmp-{final.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_file(_contiguous(trainable_state(trainer.loaded)), str(tmp / "weights.safetensors"))
        if best[1] != step:
            save_file(_contiguous(best[2]), str(tmp / "best.safetensors"))
        private = {
            "trainer": _generator_states(trainer, None, exclude=PUBLIC_GENERATORS),
            "mechanism": _generator_states(trainer.mechanism, None),
        }
        _write_new(tmp / "privacy.json", json.dumps(private).encode(), PRIVATE_MODE)
        state = {
            "format": FORMAT,
            "step": step,
            "config": bound_config(trainer.cfg.to_dict()),
            "generators": _generator_states(trainer, PUBLIC_GENERATORS),
            "ledger": trainer.ledger.state_dict(),
            "history": history,
            "best": {"key": best[0], "step": best[1]},
            "transcript": trainer.transcript.lines if trainer.transcript is not None else [],
        }
        _write_new(tmp / "state.json", json.dumps(state).encode(), 0o644)
        fsync_dir(tmp)
        os.replace(tmp, final)
        fsync_dir(self.root)
        for old in list(self.root.iterdir()):
            m = _STEP_DIR.fullmatch(old.name)
            if m and int(m.group(1)) != step:
                trash = self.root / f".old-{old.name}"
                if trash.exists():
                    shutil.rmtree(trash)
                os.replace(old, trash)
                shutil.rmtree(trash)
            elif old.name.startswith(".old-"):  # left half-deleted by a crash in an earlier rotation
                shutil.rmtree(old)
        if trainer.transcript is not None:
            trainer.transcript.write_head()
        return final

    def restore(self, trainer: Trainer) -> Restored | None:
        """Load the newest checkpoint into ``trainer``; None when there is none (the run starts afresh).

        Returns the dev history and best state at the checkpoint, the transcript lines released after it
        (to be re-applied, never recomputed) and the private state saved with the last of them.
        """
        from paczero.trainer import StepRecord
        from paczero.transcript import TranscriptWriter, genesis_hash

        path = self.latest()
        if path is None:
            if (self.run_dir / TRANSCRIPT).is_file() and (self.run_dir / TRANSCRIPT).stat().st_size:
                raise CheckpointError(
                    f"cannot resume {self.run_dir}: steps were released but no checkpoint was found"
                )
            return None
        state, private = self._read(path)
        step = state["step"]
        try:
            _refuse_changes(state["config"], bound_config(trainer.cfg.to_dict()))
            weights = _load_weights(path / "weights.safetensors")
            best_weights = _load_weights(path / "best.safetensors") if state["best"]["step"] != step else None
            load_trainable_state(trainer.loaded, weights)
            _set_generator_states(trainer, state["generators"], str(path))
            _set_generator_states(trainer, private["trainer"], str(path))
            _set_generator_states(trainer.mechanism, private["mechanism"], str(path))
            trainer.ledger.load_state_dict(state["ledger"])
            lines = state["transcript"]
            trainer.records = [
                StepRecord(**{k: v for k, v in json.loads(line).items() if k != "prev_hash"})
                for line in lines
            ]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this run: {err}") from None
        if len(trainer.records) != step:
            raise CheckpointError(f"checkpoint {path} is inconsistent: {len(lines)} records at step {step}")
        released = self._released_lines(lines)
        pending = [json.loads(line) for line in released[step:]]
        last_state = self._private_state_at(len(released)) if pending else None
        trainer.transcript = TranscriptWriter(self.run_dir, genesis_hash(trainer.cfg.to_dict()), released)
        from paczero.models.loaders import trainable_state

        best_state = trainable_state(trainer.loaded) if best_weights is None else best_weights
        history = state["history"]
        return history, (state["best"]["key"], state["best"]["step"], best_state), pending, last_state

    def _released_lines(self, checkpointed: list[str]) -> list[str]:
        """Every complete line of ``steps.jsonl``; those the checkpoint holds must be its first lines."""
        path = self.run_dir / TRANSCRIPT
        raw = path.read_text() if path.is_file() else ""
        lines = raw[: raw.rfind("\n") + 1].splitlines()  # a torn last line was never released
        if lines[: len(checkpointed)] != checkpointed:
            raise CheckpointError(
                f"cannot resume {self.run_dir}: {TRANSCRIPT} does not begin with the "
                f"{len(checkpointed)} lines of the newest checkpoint"
            )
        return lines

    def _private_state_at(self, step: int) -> dict[str, Any]:
        """The private state saved with released step ``step``; later lines (never released) are dropped."""
        path = self.run_dir / STATE
        lines = [line for line in read_private_lines(path) if line["step"] <= step]
        if not lines or lines[-1]["step"] != step:
            raise CheckpointError(
                f"cannot resume {self.run_dir}: {STATE} has no state for released step {step}"
            )
        write_private(path, "".join(json.dumps(line) + "\n" for line in lines))
        return lines[-1]

    def rewind(self, trainer: Trainer) -> None:
        """Set the weights exactly to θ after the last recorded step, after a refused (dropped) step.

        A refused step's perturbation round trip θ + εz − 2εz + εz is not bitwise θ, so the weights are
        rebuilt: the newest checkpoint's, then the records after it replayed (bitwise equal to training).
        """
        from dataclasses import asdict

        from paczero.transcript import replay_step

        path = self.latest()
        if path is None:
            raise CheckpointError(f"no checkpoint in {self.root} to rewind to")
        state, _ = self._read(path)
        load_trainable_state(trainer.loaded, _load_weights(path / "weights.safetensors"))
        for record in trainer.records[state["step"] :]:
            replay_step(trainer.directions, trainer.cfg.train.zo_eps, asdict(record), trainer.mechanism_class)

    def _read(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            state = json.loads((path / "state.json").read_text())
            private = json.loads((path / "privacy.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint {path} is not a format-{FORMAT} paczero checkpoint")
        return state, private


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
        os.write(fd, data)
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
    "HEAD",
    "CheckpointError",
    "Checkpointer",
    "Interrupted",
    "RunDirError",
    "check_run_dir",
    "clear_run_dir",
    "graceful_stop",
    "public_run_config",
    "resume_config",
]
