"""One writer per run directory: ``train`` (and ``--resume``) hold the directory's lock for the run's
lifetime, ``audit mia``, ``report``, ``export``, ``replay`` and ``eval --run`` while they use it; a second
command is refused at once (exit 2, one line naming the holder), and a holder killed with SIGKILL leaves no
lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paczero.cli import main
from paczero.rundir import LOCK
from tests.test_checkpoint import (
    CLI,
    ENV,
    assert_same,
    lines_in,
    outcome,
    start,
    subprocess_reference,
    write_config,
)

SMALL = [
    "task.name=synthetic-sentiment",
    "task.pool_size=32",
    "task.dev_size=16",
    "task.test_size=16",
    "model.name=tiny-opt",
    "train.steps=4",
    "train.progress=false",
    "privacy.subsets=8",
    "privacy.secure=false",
    "privacy.seed=1",
]
HOLD = (
    "import sys, time\nfrom paczero.rundir import hold_run_dir\n"
    "with hold_run_dir(sys.argv[1], 'train'):\n    print('held', flush=True)\n    time.sleep(600)\n"
)
# The same CLI with the lock taken out: what two trains did before run directories were locked.
UNLOCKED = (
    "import contextlib, sys\nimport paczero.rundir as rundir\n"
    "rundir.hold_run_dir = lambda *args, **kwargs: contextlib.nullcontext()\n"
    "from paczero.cli import main\nsys.exit(main(sys.argv[1:]))\n"
)


def sets(*overrides: str) -> list[str]:
    return [arg for item in (*SMALL, *overrides) for arg in ("--set", item)]


def files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run but its lock, by relative path."""
    paths = [p for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != LOCK]
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in paths}


def commands(run_dir: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that uses a run directory, pointed at ``run_dir``."""
    return {
        "train": ["train", "--output-dir", str(run_dir), "--overwrite", *sets()],
        "train --resume": ["train", "--resume", str(run_dir)],
        "export": ["export", "--run", str(run_dir), "--output", str(tmp_path / "bundle"), "--allow-insecure"],
        "eval --run": ["eval", "--run", str(run_dir), "--split", "dev"],
        "audit mia": ["audit", "mia", "--run", str(run_dir), "--no-transcript"],
        "report": ["report", str(run_dir)],
        "replay": ["replay", "--run", str(run_dir), "--output-dir", str(tmp_path / "replayed")],
    }


def test_every_command_is_refused_while_another_process_holds_the_run_and_works_after_a_kill_9(
    tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["train", "--output-dir", str(run_dir), *sets()]) == 0
    assert not (run_dir / LOCK).exists()  # a lock lives only while a command holds it
    before = files(run_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        for name, args in commands(run_dir, tmp_path).items():
            started = time.monotonic()
            assert main(args) == 2, name
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1, (name, err)
            assert f"in use by paczero train (pid {holder.pid} on host {socket.gethostname()})" in err[0]
            assert "wait until it ends" in err[0] and f"paczero train --resume {run_dir}" in err[0]
            assert time.monotonic() - started < 5, f"{name} was not refused at once"
        assert files(run_dir) == before  # nothing was touched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / LOCK).exists()  # the killed holder left its lock file, but not its lock
    for name, args in commands(run_dir, tmp_path).items():
        assert main(args) == 0, name
    assert not (run_dir / LOCK).exists()


def test_a_train_that_fails_early_leaves_no_directory_behind(tmp_path, capsys):
    run_dir = tmp_path / "new" / "run"
    assert main(["train", "--output-dir", str(run_dir), *sets("train.steps=0")]) == 2
    assert "train.steps" in capsys.readouterr().err
    assert not run_dir.exists()


def two_trains(tmp_path: Path, python_args: list[str]) -> list[tuple[int, str]]:
    """Start two trains into one directory together; their (exit code, stderr)."""
    args = ["train", "--output-dir", str(tmp_path / "same"), *sets("train.steps=12")]
    env = {**ENV, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [*python_args, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    return [(proc.wait(timeout=300), proc.communicate()[1]) for proc in procs]


def one_ran_one_was_refused(results: list[tuple[int, str]]) -> bool:
    """Exactly one train finished and the other was refused with one line naming the lock's holder."""
    if sorted(rc for rc, _ in results) != [0, 2]:
        return False
    refused = next(err for rc, err in results if rc == 2).strip().splitlines()
    return len(refused) == 1 and "is in use by paczero train (pid" in refused[0]


def test_two_trains_into_one_directory_one_runs_the_other_is_refused_and_the_run_exports(tmp_path):
    results = two_trains(tmp_path, CLI)
    assert one_ran_one_was_refused(results), results
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(tmp_path / "same"), "--output", str(bundle), "--allow-insecure"]) == 0
    assert lines_in(tmp_path / "same" / "steps.jsonl") == 12
    assert not (bundle / LOCK).exists()


@pytest.mark.slow
def test_without_the_lock_the_two_trains_are_not_kept_apart(tmp_path):
    """Negative control: with the lock taken out of the same CLI, the check above fails (both trains write the
    directory: they mix their records, or one fails on the other's files)."""
    results = two_trains(tmp_path, [sys.executable, "-c", UNLOCKED])
    print(f"without the lock: exit codes {[rc for rc, _ in results]}; {[err[-300:] for _, err in results]}")
    assert not one_ran_one_was_refused(results)


def test_kill_9_during_a_run_leaves_no_stale_lock_and_the_run_resumes_exactly(tmp_path):
    steps = 12
    run_dir = tmp_path / "run"
    proc = start(["train", "--config", str(write_config(tmp_path, steps)), "--output-dir", str(run_dir)])
    while lines_in(run_dir / "steps.jsonl") < 4:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and (run_dir / LOCK).exists()
    assert os.stat(run_dir / LOCK).st_size > 0  # it names the dead holder; nothing holds it
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert not (run_dir / LOCK).exists()
    assert_same(outcome(run_dir), subprocess_reference(tmp_path, steps))
