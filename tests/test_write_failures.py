"""A write that fails during a run (full disk, permission denied, read-only file system) ends the run with one
line (what could not be written, that every released step is kept, the command that continues) and exit 1;
the transcript stays whole, and the resumed run equals the uninterrupted one bit for bit."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import peft.peft_model
import pytest
import safetensors.torch
from safetensors import SafetensorError

import paczero.checkpoint as ckpt
import paczero.rundir as rundir
from paczero.cli import main
from paczero.rundir import public_run_config, read_private_lines
from paczero.transcript import TRANSCRIPT, _chain, genesis_hash
from tests.test_checkpoint import ENV, assert_same, outcome

RUN = [
    "task.name=synthetic-sentiment",
    "task.pool_size=32",
    "task.dev_size=16",
    "task.test_size=16",
    "model.name=tiny-opt",
    "train.steps=6",
    "train.checkpoint_every=2",
    "train.eval_every=3",
    "train.clip=null",
    "train.progress=false",
    "privacy.mechanism=paczero-mi",
    "privacy.budget=0.3",
    "privacy.subsets=8",
    "privacy.secure=false",  # deterministic privacy randomness, so the resumed run can be compared bitwise
    "privacy.seed=5",
]
TRAIN = ["train", *(arg for item in RUN for arg in ("--set", item))]


class FullDisk:
    """From the ``nth`` write of file ``name`` on, every write fails with ``code`` after writing half its
    bytes, as on a disk that fills up mid-write. It stands in for the run's writers (``write_all``,
    safetensors); a file written atomically counts under its own name."""

    def __init__(self, name: str, nth: int, code: int):
        self.name, self.nth, self.code, self.failed = name, nth, code, False
        self.write_all, self.save_file = rundir.write_all, safetensors.torch.save_file

    def failing(self, path: str) -> bool:
        name = Path(path).name
        if name.startswith(".") and name.endswith(".tmp"):  # atomic_write's temporary name
            name = name[1:-4]
        self.nth -= name == self.name
        self.failed = self.failed or self.nth == 0
        return self.failed

    def patched_write_all(self, fd: int, data: bytes) -> None:
        if self.failing(os.readlink(f"/proc/self/fd/{fd}")):
            os.write(fd, data[: len(data) // 2])
            raise OSError(self.code, os.strerror(self.code))
        self.write_all(fd, data)

    def patched_save_file(self, tensors, filename, metadata=None) -> None:
        if self.failing(filename):
            Path(filename).write_bytes(b"\0" * 64)
            message = f"Error while serializing: I/O error: {os.strerror(self.code)} (os error {self.code})"
            raise SafetensorError(message)
        self.save_file(tensors, filename, metadata)

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(rundir, "write_all", self.patched_write_all)
        monkeypatch.setattr(ckpt, "write_all", self.patched_write_all)
        monkeypatch.setattr(safetensors.torch, "save_file", self.patched_save_file)
        monkeypatch.setattr(peft.peft_model, "safe_save_file", self.patched_save_file)  # the saved model


def assert_whole(run_dir: Path) -> None:
    """The transcript and the private state log hold whole lines only, and the transcript's chain holds."""
    raw = (run_dir / TRANSCRIPT).read_text() if (run_dir / TRANSCRIPT).is_file() else ""
    assert raw == "" or raw.endswith("\n"), "the transcript ends in a torn line"
    _chain(raw.splitlines(), genesis_hash(public_run_config(run_dir).to_dict()))  # raises on a broken chain
    state = run_dir / rundir.STATE
    assert not state.is_file() or state.read_text().endswith("\n")
    released = raw.count("\n")  # the private state of a step is written first: one more may be there
    steps = [line["step"] for line in read_private_lines(state)]
    assert steps in (list(range(1, released + 1)), list(range(1, released + 2)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert main([*TRAIN, "--output-dir", str(run_dir)]) == 0
    return outcome(run_dir)


def continue_after(run_dir: Path, message: str) -> None:
    """What the message tells the user to do, on a disk that works again."""
    if "--overwrite" in message:
        assert main([*TRAIN, "--output-dir", str(run_dir), "--overwrite"]) == 0
    else:
        assert f"continue with: paczero train --resume {run_dir}" in message
        assert main(["train", "--resume", str(run_dir)]) == 0


# (file, its n-th write, error, what the message names): the config, a transcript line, a checkpoint's
# weights (safetensors), a private state line, the transcript head, the final model (peft's safetensors), the
# summary
CASES = [
    ("config.yaml", 1, errno.ENOSPC, "config.yaml"),
    ("steps.jsonl", 3, errno.ENOSPC, "steps.jsonl"),
    ("best.safetensors", 1, errno.ENOSPC, "checkpoints/step-000002"),
    ("state.jsonl", 3, errno.EACCES, "private/state.jsonl"),
    ("transcript.json", 2, errno.EROFS, "transcript.json"),
    ("adapter_model.safetensors", 1, errno.ENOSPC, "run/model"),
    ("summary.json", 1, errno.EROFS, "summary.json"),
]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds written files through /proc/self/fd")
@pytest.mark.parametrize("name, nth, code, named", CASES)
def test_a_write_failure_gives_one_line_keeps_the_transcript_and_resumes_exactly(
    tmp_path, monkeypatch, capsys, reference, name, nth, code, named
):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(name, nth, code).install(patch)
        assert main([*TRAIN, "--output-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    print(f"{name} write {nth} ({errno.errorcode[code]}): {err}")
    assert len(err) == 1 and err[0].startswith(f"paczero: error: could not write {run_dir}"), err
    assert f"{named}: {os.strerror(code)};" in err[0]
    assert "every released step is kept" in err[0] or "nothing was released" in err[0]
    if (run_dir / "config.yaml").is_file():
        assert_whole(run_dir)
    continue_after(run_dir, err[0])
    assert_same(outcome(run_dir), reference)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds written files through /proc/self/fd")
def test_the_whole_transcript_check_catches_a_torn_line(tmp_path, monkeypatch, capsys):
    """Negative control: without cutting a failed append back, a torn line is left, and the check sees it."""
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk("steps.jsonl", 2, errno.ENOSPC).install(patch)
        patch.setattr(rundir.os, "ftruncate", lambda fd, size: None)
        assert main([*TRAIN, "--output-dir", str(run_dir)]) == 1
    assert "could not write" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="torn line"):
        assert_whole(run_dir)


def _tmpfs_run(tmp_path: Path, size: str) -> subprocess.CompletedProcess:
    """Train on a ``size`` tmpfs in a private mount namespace; the run directory is copied out after."""
    mount, copy = tmp_path / "mnt", tmp_path / "copy"
    mount.mkdir()
    train = [sys.executable, "-m", "paczero", *TRAIN, "--output-dir", str(mount / "run")]
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {mount} || exit 99; {' '.join(train)}; rc=$?; "
        f"cp -a {mount}/run {copy}; exit $rc"
    )
    env = {**ENV, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare to mount a private tmpfs")
def test_a_run_on_a_full_tmpfs_gives_one_line_and_resumes_elsewhere_exactly(tmp_path, reference):
    """The real thing: a 100 KiB tmpfs fills up during the run; a copy of the directory on a bigger disk
    resumes to the uninterrupted run."""
    done = _tmpfs_run(tmp_path, "100k")
    if done.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    err = done.stderr.strip().splitlines()
    print(f"full tmpfs: exit {done.returncode}: {err}")
    assert done.returncode == 1 and len(err) == 1, done.stderr
    assert "No space left on device" in err[0] and "every released step is kept" in err[0]
    copy = tmp_path / "copy"
    assert_whole(copy)
    assert main(["train", "--resume", str(copy)]) == 0
    assert_same(outcome(copy), reference)
