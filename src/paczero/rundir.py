"""A run directory's two sides: the public outputs a user may publish, and the private area that never leaves.

Public (``paczero export`` ships these and nothing else): ``config.yaml`` (secret fields redacted),
``steps.jsonl`` and ``transcript.json`` (the released transcript), ``summary.json``, ``privacy.md``,
``model/`` and ``report/``. Each is a function of public inputs and released values only.

Private (``private/``, mode 0700, files 0600): ``secret.json`` (the secret index J and the privacy entropy),
``state.jsonl`` (per released step: the generator and ledger state that resume needs, and the step's
wall-clock), ``run.json`` (timings and host facts), ``audit/`` (membership attacks scored against the ground
truth), the trackers' folders (``tensorboard/``, ``wandb/``, ``mlflow/``) and ``report/`` (a report that
includes private results). ``checkpoints/`` holds the full state for resume; its ``privacy.json`` predicts
the coins and noise, and export never ships it either.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paczero.config import RunConfig

PRIVATE = "private"
SECRET = f"{PRIVATE}/secret.json"
STATE = f"{PRIVATE}/state.jsonl"
TIMING = f"{PRIVATE}/run.json"
PUBLIC_FILES = ("config.yaml", "steps.jsonl", "transcript.json", "summary.json", "privacy.md")
PUBLIC_DIRS = ("model", "report")
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600
INSECURE_NOTE = (
    "NOT PRIVATE: this run used deterministic privacy randomness (privacy.secure: false, a fixed "
    "privacy.seed), so anyone who guesses the seed can recompute the secret index, the coins and the noise. "
    "Use such runs for tests and exact reproductions only; never publish their outputs as private."
)


class RunDirError(ValueError):
    """An output directory that must not be written to as asked."""


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
    write_private(private_dir(run_dir) / "secret.json", json.dumps(record))


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
    write_private(private_dir(run_dir) / "run.json", json.dumps(record, indent=2))


def read_timing(run_dir: str | Path) -> dict[str, Any]:
    """A run's private timing record (empty when the run wrote none)."""
    path = Path(run_dir) / TIMING
    return json.loads(path.read_text()) if path.is_file() else {}


def public_run_config(run_dir: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """A run's config from its ``config.yaml`` with the secret fields unset (eval, replay, audit, export)."""
    from paczero.config import apply_override, build_config, load_yaml_tree

    tree = load_yaml_tree(Path(run_dir) / "config.yaml")
    for assignment in overrides:
        apply_override(tree, assignment)
    privacy = tree.setdefault("privacy", {})
    # The seed is redacted in the file; a placeholder keeps an insecure run's config valid (the secure flag
    # is public and bound into the transcript). Nothing that reads this config uses the privacy randomness.
    privacy.update(secret_index=None, seed=None if privacy.get("secure", True) else 0)
    return build_config(tree)
