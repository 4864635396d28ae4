"""A run directory's two sides: the public outputs a user may publish, and the private area that never leaves.

Every name in a run directory is spelled here, once; other modules import these constants. The tree::

    RUN_DIR/
      config.yaml        public: the run's config, secret fields redacted
      steps.jsonl        public: the released transcript, one hash-chained line per step (paczero.transcript)
      transcript.json    public: the transcript's head (hash of the last line)
      summary.json       public: results and the privacy accounting
      privacy.md         public: the privacy statement
      model/             public: the selected weights and the model card (README.md)
      report/            public: the report (paczero report)
      private/           mode 0700, files 0600; never exported
        secret.json      the secret index J and the privacy entropy
        state.jsonl      per released step: every generator's and the ledger's state (resume), the wall-clock
        run.json         timings and host facts
        audit/mia.json   membership attacks scored against the ground truth (and mia.md, in words)
        tensorboard/     the TensorBoard log
        report/          a report that includes private results
      checkpoints/       the full state for resume; never exported
        step-NNNNNN/     state.json (public state), privacy.json (0600: the privacy generators, which
                         predict the coins and noise), weights.safetensors, best.safetensors

Public (``paczero export`` ships these and nothing else) is a function of public inputs and released values
only.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paczero.config import RunConfig

CONFIG = "config.yaml"
TRANSCRIPT = "steps.jsonl"
HEAD = "transcript.json"
SUMMARY = "summary.json"
STATEMENT = "privacy.md"
MODEL = "model"
MODEL_CARD = f"{MODEL}/README.md"
REPORT = "report"
PRIVATE = "private"
SECRET = f"{PRIVATE}/secret.json"
STATE = f"{PRIVATE}/state.jsonl"
TIMING = f"{PRIVATE}/run.json"
AUDIT = "audit"  # below private/
MIA = f"{PRIVATE}/{AUDIT}/mia.json"
MIA_NOTES = f"{PRIVATE}/{AUDIT}/mia.md"
TENSORBOARD = "tensorboard"  # below private/
CHECKPOINTS = "checkpoints"
CHECKPOINT_STATE, CHECKPOINT_PRIVATE = "state.json", "privacy.json"  # in each checkpoints/step-NNNNNN/
CHECKPOINT_WEIGHTS, CHECKPOINT_BEST = "weights.safetensors", "best.safetensors"
PUBLIC_FILES = (CONFIG, TRANSCRIPT, HEAD, SUMMARY, STATEMENT)
PUBLIC_DIRS = (MODEL, REPORT)
RUN_MARKERS = (CONFIG, TRANSCRIPT, SUMMARY, PRIVATE, CHECKPOINTS)  # any of these: the directory holds a run
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600
INSECURE_NOTE = (
    "NOT PRIVATE: this run used deterministic privacy randomness (privacy.secure: false, a fixed "
    "privacy.seed), so anyone who guesses the seed can recompute the secret index, the coins and the noise. "
    "Use such runs for tests and exact reproductions only; never publish their outputs as private."
)


class RunDirError(ValueError):
    """An output directory that must not be written to as asked."""


def check_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to start a run in a directory that holds another run, unless resuming or overwriting it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output directory {path} is a file")
    found = [name for name in RUN_MARKERS if (path / name).exists()]
    if resume:
        if not (path / CONFIG).is_file():
            raise RunDirError(f"nothing to resume: {path} holds no run (no {CONFIG})")
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


def is_public(rel: str) -> bool:
    """Whether a path relative to a run directory is a public output (what export may ship)."""
    parts = Path(rel).parts
    if not parts or any(part.startswith(".") for part in parts):
        return False
    return rel in PUBLIC_FILES or (len(parts) > 1 and parts[0] in PUBLIC_DIRS)


def private_dir(run_dir: str | Path, *sub: str) -> Path:
    """``run_dir/private[/sub…]``, created with mode 0700 (owner only)."""
    path = Path(run_dir) / PRIVATE
    for part in ("", *sub):
        path = path / part if part else path
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` so a reader sees the old file or the whole new one: temp name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a private file below ``private/`` atomically (0600 from its creation, fsynced, then renamed)."""
    atomic_write(path, data.encode() if isinstance(data, str) else data, PRIVATE_FILE_MODE)


def append_private_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to a private log and fsync it before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a private log; a torn last line (no newline: a crash mid-write) is dropped."""
    if not path.is_file():
        return []
    raw = path.read_text()
    complete = raw[: raw.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def write_secret(run_dir: Path, secret_index: int, subsets: int, entropy: int, secure: bool) -> None:
    """J and the privacy entropy, alone in the private area: kept for resume and for audits (ground truth)."""
    record = {"secret_index": secret_index, "subsets": subsets, "entropy": str(entropy), "secure": secure}
    private_dir(run_dir)
    write_private(Path(run_dir) / SECRET, json.dumps(record))


def read_secret(run_dir: str | Path) -> dict[str, Any]:
    """The private secret file: ``secret_index``, ``subsets``, ``entropy`` (int) and ``secure``."""
    path = Path(run_dir) / SECRET
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (it holds the secret index)")
    try:
        data = json.loads(path.read_text())
        return {
            "secret_index": int(data["secret_index"]),
            "subsets": int(data["subsets"]),
            "entropy": int(data["entropy"]),
            "secure": bool(data["secure"]),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is unreadable") from None


def write_timing(run_dir: Path, wall_time_s: float, step_seconds: list[float]) -> None:
    """Wall-clock and host facts of a run: private, since timing can follow secret-dependent work."""
    record = {
        "wall_time_s": wall_time_s,
        "seconds_per_step": sum(step_seconds) / len(step_seconds) if step_seconds else None,
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()},
    }
    private_dir(run_dir)
    write_private(Path(run_dir) / TIMING, json.dumps(record, indent=2))


def read_timing(run_dir: str | Path) -> dict[str, Any]:
    """A run's private timing record (empty when the run wrote none)."""
    path = Path(run_dir) / TIMING
    return json.loads(path.read_text()) if path.is_file() else {}


def public_run_config(run_dir: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """A run's config from its ``config.yaml`` with the secret fields unset (eval, replay, audit, export)."""
    from paczero.config import apply_override, build_config, load_yaml_tree

    tree = load_yaml_tree(Path(run_dir) / CONFIG)
    for assignment in overrides:
        apply_override(tree, assignment)
    privacy = tree.setdefault("privacy", {})
    # The seed is redacted in the file; a placeholder keeps an insecure run's config valid (the secure flag
    # is public and bound into the transcript). Nothing that reads this config uses the privacy randomness.
    privacy.update(secret_index=None, seed=None if privacy.get("secure", True) else 0)
    return build_config(tree)
