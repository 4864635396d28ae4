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
        tensorboard/     the TensorBoard log (train.report_to); wandb/ and mlflow/ likewise
        report/          a report that includes private results
      checkpoints/       the full state for resume; never exported
        step-NNNNNN/     state.json (public state), privacy.json (0600: the privacy generators, which
                         predict the coins and noise), weights.safetensors, best.safetensors
      .lock              held by the one command using the directory; never exported

Public (``paczero export`` ships these and nothing else) is a function of public inputs and released values
only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import re
import shutil
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

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
LOCK = ".lock"  # hidden and run-internal: export never ships it; it exists only while a command holds it
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600
INSECURE_NOTE = (
    "NOT PRIVATE: this run used deterministic privacy randomness (privacy.secure: false, a fixed "
    "privacy.seed), so anyone who guesses the seed can recompute the secret index, the coins and the noise. "
    "Use such runs for tests and exact reproductions only; never publish their outputs as private."
)


class RunDirError(ValueError):
    """An output directory that must not be written to as asked."""


class RunDirLocked(RunDirError):
    """Another process holds the run directory: one command at a time may use it."""


class RunWriteError(OSError):
    """A file of a run directory could not be written (full disk, no permission, read-only file system)."""


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
        if entry.name == LOCK:  # the lock this command holds: removing it would let a second writer in
            continue
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
    with writing(path):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        except OSError:
            with suppress(OSError):  # a part written to a full disk would keep its space taken
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a private file below ``private/`` atomically (0600 from its creation, fsynced, then renamed)."""
    atomic_write(path, data.encode() if isinstance(data, str) else data, PRIVATE_FILE_MODE)


def append_private_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to a private log and fsync it before returning."""
    append_line(path, json.dumps(record), PRIVATE_FILE_MODE)


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


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write inside the block into a RunWriteError naming ``path``, also where the error names
    no file (``os.write``, buffered writes) or comes from safetensors as text ("… (os error 28)")."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as err:
        raise RunWriteError(err.errno, err.strerror, str(path)) from err
    except SafetensorError as err:
        code = re.search(r"\(os error (\d+)\)", str(err))
        if code is None:
            raise
        raise RunWriteError(int(code[1]), os.strerror(int(code[1])), str(path)) from err


def write_failure(err: OSError, run_dir: Path) -> str:
    """One line for a run that could not write: what failed, what is kept, and how to continue."""
    what = f"could not write {err.filename}: {err.strerror}"
    if not (run_dir / CONFIG).is_file():
        return f"{what}; nothing was released; once it can be written, run the same command with --overwrite"
    transcript = run_dir / TRANSCRIPT
    released = transcript.read_bytes().count(b"\n") if transcript.is_file() else 0
    return (
        f"{what}; every released step is kept ({released} in {transcript}); once it can be written (free "
        f"space, permissions, a writable file system), continue with: paczero train --resume {run_dir}"
    )


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a nearly full disk may take part of a write and succeed)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_line(path: Path, line: str, mode: int) -> None:
    """Append one line and fsync it; a failed write is cut off again, so the file keeps whole lines only."""
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, (line + "\n").encode())
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # shrinking needs no space
                raise
        finally:
            os.close(fd)


# Run directories this process holds: a nested hold (a train command, then its trainer) is the outer one.
_held: set[Path] = set()


@contextmanager
def hold_run_dir(run_dir: str | Path, command: str, *, create: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s exclusive lock while the block runs; RunDirLocked at once if another process does.

    The lock is the kernel's (``flock`` on ``run_dir/.lock``), so it ends with the holding process however
    that ends, kill -9 included. ``create`` (training) makes a missing directory, removed again if the block
    leaves it empty. Without ``create`` a missing directory is not locked (the command reports it), and a
    directory this user cannot write is locked only if a lock file is already there.
    """
    path = Path(run_dir).resolve()
    if path in _held:
        yield
        return
    created = create and not path.exists()
    if created:
        path.mkdir(parents=True, exist_ok=True)  # another train may make it at the same time
    fd = _lock(path, str(run_dir), command) if path.is_dir() else None
    if fd is not None:
        _held.add(path)
    try:
        yield
    finally:
        if fd is not None:
            _held.discard(path)
            _unlock(path, fd)
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _lock(path: Path, shown: str, command: str) -> int | None:
    """An open, locked descriptor of ``path/.lock`` with this process named in it (None: unlockable)."""
    lock = path / LOCK
    for _ in range(100):  # a holder that ends removes the file; a descriptor of the removed one is retried
        opened = _open_lock(lock)
        if opened is None:
            return None
        fd, writable = opened
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another paczero process"
            os.close(fd)
            raise RunDirLocked(
                f"{shown} is in use by {holder}; one command at a time may use a run directory: wait "
                f"until it ends (or stop it; a stopped run continues with paczero train --resume {shown}), "
                "then try again"
            ) from None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            current = False
        if current:
            holder = f"paczero {command} (pid {os.getpid()} on host {socket.gethostname()})\n"
            with suppress(OSError):  # the name is a courtesy: a full disk still gets the lock
                if writable:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, holder.encode(), 0)
            return fd
        os.close(fd)
    raise RunDirError(f"could not lock {shown}: its lock file keeps changing")


def _open_lock(lock: Path) -> tuple[int, bool] | None:
    """The lock file (and whether it is writable), created if need be; read-only where this user cannot
    write, or None when it is absent there."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE), True
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(lock, os.O_RDONLY), False
    except FileNotFoundError:
        return None


def _unlock(path: Path, fd: int) -> None:
    """Remove the lock file, then release it (a process waiting on the removed file retries on a new one)."""
    with suppress(OSError):  # a directory this user cannot write: the file stays, unlocked
        os.unlink(path / LOCK)
    os.close(fd)
