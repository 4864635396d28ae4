"""Kill-and-resume: a run crashed at random points (in-process faults, SIGKILL, SIGTERM, SIGINT) and resumed
ends with exactly the weights, transcript and ledger of the uninterrupted run; the budget is charged once.

Subprocess tests (real SIGKILL) are slow-marked: each process start imports torch and transformers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import paczero.checkpoint as ckpt
import paczero.interrupt as interrupt
import paczero.outputs as outputs
import paczero.resume as resume
import paczero.trainer as trainer_mod
from paczero.checkpoint import Checkpointer, CheckpointError
from paczero.config import load_config
from paczero.resume import resume_config
from paczero.rundir import CHECKPOINTS
from paczero.trainer import Trainer
from paczero.transcript import TranscriptWriter
from paczero.zo import Directions

SMALL = ["task.pool_size=32", "task.dev_size=16", "task.test_size=16", "train.eval_every=3"]
MI = ["privacy.mechanism=paczero-mi", "privacy.budget=0.2", "train.lr=3.0e-2"]


# The seed 3701339312 found a resume bug (a checkpoint deleted to be re-saved at the same step, so a fault
# in that window left released steps and no checkpoint); it stays as a regression case.
FAULT_SEEDS = [20261129, 3701339312]


def fault_rng(default: int = FAULT_SEEDS[0]) -> np.random.Generator:
    """Fault points from a fixed seed, so CI is repeatable; PACZERO_FAULT_SEED=N or =random explores."""
    chosen = os.environ.get("PACZERO_FAULT_SEED", str(default))
    seed = int.from_bytes(os.urandom(4), "little") if chosen == "random" else int(chosen)
    print(f"fault seed {seed}")
    return np.random.default_rng(seed)


class Crash(Exception):
    """A simulated fault: the process dies here (nothing after it runs)."""


def outcome(run_dir: Path) -> dict:
    """What must match bitwise: final weights, transcript (every byte), ledger, selection and summary."""
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    summary = json.loads((run_dir / "summary.json").read_text())
    last = max((run_dir / "checkpoints").iterdir())
    state = json.loads((last / "state.json").read_text())
    return {
        "weights": load_file(str(run_dir / "model" / "adapter_model.safetensors")),
        "records": lines,
        "ledger": state["ledger"],
        "privacy": summary["privacy"],
        "dev": summary["dev"],
        "selected_step": summary["selected_step"],
        "test": summary["test"],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    for key in ("records", "ledger", "privacy", "dev", "selected_step", "test"):
        assert a[key] == b[key], key


def reference(tmp_path: Path, make_config, *overrides: str) -> dict:
    """The uninterrupted run, in this process (1 torch thread, as in the subprocesses)."""
    Trainer(make_config(*overrides), tmp_path / "reference").run()
    return outcome(tmp_path / "reference")


@pytest.mark.parametrize("seed", FAULT_SEEDS)
@pytest.mark.parametrize(
    "mechanism", [MI, ["privacy.mechanism=paczero-zpl", "train.lr=3.0e-2", "train.directions=2"]]
)
def test_in_process_faults_at_random_points_resume_to_the_uninterrupted_run(
    tmp_path, monkeypatch, mechanism, seed, make_config
):
    """Faults at random calls of every place a run writes or changes state, including torn checkpoint
    files."""
    overrides = [*SMALL, *mechanism, "train.steps=12", "train.checkpoint_every=2"]
    expected = reference(tmp_path, make_config, *overrides)
    run_dir = tmp_path / "run"
    counter = {"calls": 0, "crash_at": None}

    def fault_site(original):
        def wrapped(*args, **kwargs):
            counter["calls"] += 1
            if counter["calls"] == counter["crash_at"]:
                raise Crash(original.__qualname__)
            return original(*args, **kwargs)

        return wrapped

    def torn_write(path, data, mode):  # a checkpoint file cut in half, then the process dies
        counter["calls"] += 1
        if counter["calls"] == counter["crash_at"]:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, data[: len(data) // 2])
            os.close(fd)
            raise Crash("torn checkpoint file")  # noqa: B904
        original_write_new(path, data, mode)

    original_write_new = ckpt._write_new
    monkeypatch.setattr(ckpt, "_write_new", torn_write)
    monkeypatch.setattr(Directions, "apply", fault_site(Directions.apply))  # mid-step, mid-perturbation
    monkeypatch.setattr(TranscriptWriter, "append", fault_site(TranscriptWriter.append))  # record written
    monkeypatch.setattr(outputs, "append_private_line", fault_site(outputs.append_private_line))
    monkeypatch.setattr(ckpt.os, "replace", fault_site(os.replace))  # before a checkpoint's rename
    monkeypatch.setattr(Trainer, "evaluate", fault_site(Trainer.evaluate))  # mid-evaluation
    rng = fault_rng(seed)
    points = []
    while True:  # a fault at a random one of the next 30 events; after 12 faults, run to the end
        counter["calls"], counter["crash_at"] = 0, int(rng.integers(1, 31)) if len(points) < 12 else None
        try:
            if not points:
                Trainer(make_config(*overrides), run_dir).run()
            else:
                Trainer(resume_config(run_dir, None, []), run_dir, resume=True).run()
            break
        except Crash as crash:
            points.append(f"{lines_in(run_dir / 'steps.jsonl')}:{crash}")
    print(
        f"in-process faults ({mechanism[0]}): {len(points)} kill points tried (lines written:site) {points}"
    )
    assert_same(outcome(run_dir), expected)
    assert len(points) >= 2


def test_saving_a_step_that_already_has_a_checkpoint_never_removes_it(tmp_path, monkeypatch, make_config):
    """Resuming a finished run saves, at exit, the step its newest checkpoint holds; a fault while doing so
    must leave that checkpoint (once it was deleted first, and a fault left released steps without one)."""
    overrides = [*SMALL, *MI, "train.steps=4", "train.checkpoint_every=2"]
    run_dir = tmp_path / "run"
    Trainer(make_config(*overrides), run_dir).run()
    expected = outcome(run_dir)
    real_replace = os.replace

    def replace(src, dst):  # every rename into checkpoints/ fails, as if the process died there
        if Path(dst).parent.name == CHECKPOINTS:
            raise Crash("checkpoint rename")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    Trainer(resume_config(run_dir, None, []), run_dir, resume=True).run()
    assert Checkpointer(run_dir, 2).latest().name == "step-000004"
    assert_same(outcome(run_dir), expected)


def test_in_process_faults_reach_at_least_five_kill_points(tmp_path, monkeypatch, make_config):
    """Crashes right after each of 6 distinct steps' transcript appends, resumed each time."""
    overrides = [*SMALL, *MI, "train.steps=12", "train.checkpoint_every=3"]  # step 1 resumes from step 0
    expected = reference(tmp_path, make_config, *overrides)
    run_dir = tmp_path / "run"
    kill_after = [1, 2, 4, 6, 9, 11]
    original = TranscriptWriter.append

    def append(self, record):
        original(self, record)
        if kill_after and record["step"] == kill_after[0]:
            kill_after.pop(0)
            raise Crash

    monkeypatch.setattr(TranscriptWriter, "append", append)
    kills = 0
    for attempt in range(10):
        try:
            cfg = make_config(*overrides) if attempt == 0 else resume_config(run_dir, None, [])
            Trainer(cfg, run_dir, resume=attempt > 0).run()
            break
        except Crash:
            kills += 1
    print(f"kill after steps 1, 2, 4, 6, 9, 11: {kills} kill points tried")
    assert kills == 6
    assert_same(outcome(run_dir), expected)
    records = [json.loads(line) for line in outcome(run_dir)["records"]]
    assert sum(r["mi_step"] for r in records) == pytest.approx(expected["privacy"]["mi_spent"], rel=1e-12)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_stops_cleanly_and_resumes_exactly(
    tmp_path, monkeypatch, make_config, sig
):
    """The signal arrives mid-run (here: from the transcript writer after step 4, checkpoints every 3
    steps)."""
    overrides = [*SMALL, *MI, "train.steps=8", "train.checkpoint_every=3"]
    expected = reference(tmp_path, make_config, *overrides)
    run_dir = tmp_path / "run"
    original = TranscriptWriter.append

    def append(self, record):
        original(self, record)
        if record["step"] == 4:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(TranscriptWriter, "append", append)
    trainer = Trainer(make_config(*overrides), run_dir)
    with (
        pytest.raises(interrupt.Interrupted, match="after step 4; checkpoint saved") as stop,
        interrupt.graceful_stop(trainer.checkpoints),
    ):
        trainer.run()
    assert stop.value.signum == sig and stop.value.path.name == "step-000004"
    assert signal.getsignal(sig) is not None and not (run_dir / "summary.json").exists()
    monkeypatch.setattr(TranscriptWriter, "append", original)
    Trainer(resume_config(run_dir, None, []), run_dir, resume=True).run()
    print(f"{signal.Signals(sig).name}: 1 kill point tried, resumed from step 4")
    assert_same(outcome(run_dir), expected)


def kill_after_step_5_and_resume_with_other_losses(tmp_path, monkeypatch, make_config, mechanism):
    """Killed after step 5 with the last checkpoint at step 3; on resume every projected gradient flips sign
    (as a GPU's non-deterministic kernels might change them): returns the transcript before and after."""
    overrides = [*SMALL, *mechanism, "train.steps=8", "train.checkpoint_every=3"]
    run_dir = tmp_path / "run"
    original = TranscriptWriter.append

    def append(self, record):
        original(self, record)
        if record["step"] == 5:
            raise Crash

    monkeypatch.setattr(TranscriptWriter, "append", append)
    with pytest.raises(Crash):
        Trainer(make_config(*overrides), run_dir).run()
    written = (run_dir / "steps.jsonl").read_bytes()
    assert written.count(b"\n") == 5 and Checkpointer(run_dir, 3).latest().name == "step-000003"
    monkeypatch.setattr(TranscriptWriter, "append", original)
    real_estimate = trainer_mod.two_point_estimate
    monkeypatch.setattr(
        trainer_mod, "two_point_estimate", lambda plus, minus, eps: real_estimate(minus, plus, eps)
    )
    resumed = Trainer(resume_config(run_dir, None, []), run_dir, resume=True)
    resumed.run()
    return written, (run_dir / "steps.jsonl").read_bytes(), resumed


PAC_RESUMES = [MI, ["privacy.mechanism=paczero-zpl", "train.lr=3.0e-2"]]


@pytest.mark.parametrize("mechanism", PAC_RESUMES)
def test_resume_never_recomputes_a_released_step(tmp_path, monkeypatch, make_config, mechanism):
    """Steps 4 and 5 keep the values already released, and the final weights are exactly the replay of the
    transcript from θ_0."""
    written, after, resumed = kill_after_step_5_and_resume_with_other_losses(
        tmp_path, monkeypatch, make_config, mechanism
    )
    assert after.startswith(written) and after.count(b"\n") == 8
    from paczero.transcript import replay

    loaded, _ = replay(tmp_path / "run")  # to the selected step, from θ_0 and the transcript alone
    replayed, trained = trainer_mod.trainable_state(loaded), trainer_mod.trainable_state(resumed.loaded)
    assert replayed.keys() == trained.keys() and all(torch.equal(replayed[k], trained[k]) for k in trained)


@pytest.mark.parametrize("mechanism", PAC_RESUMES)
def test_resume_check_catches_a_recomputed_release(tmp_path, monkeypatch, make_config, mechanism):
    """Negative control: resuming as the first version did (transcript cut back to the checkpoint, steps 4
    and 5 computed again) changes lines that were already released, and the check above sees it."""
    monkeypatch.setattr(resume, "released_lines", lambda run_dir, checkpointed: list(checkpointed))
    written, after, _ = kill_after_step_5_and_resume_with_other_losses(
        tmp_path, monkeypatch, make_config, mechanism
    )
    assert not after.startswith(written)


def test_privacy_generator_states_are_kept_in_a_private_file(tmp_path, make_config):
    trainer = Trainer(
        make_config(*SMALL, "train.steps=2", "privacy.secure=true", "privacy.seed=null"), tmp_path / "r"
    )
    trainer.run()
    private = tmp_path / "r" / "checkpoints" / "step-000002" / "privacy.json"
    assert private.stat().st_mode & 0o777 == 0o600
    states = json.loads(private.read_text())
    assert states["generators"]["mechanism"] == trainer.mechanism.rng.bit_generator.state
    assert set(states["generators"]) == {"sampling", "mechanism"}  # every non-public generator is private
    public = json.loads((private.parent / "state.json").read_text())["generators"]
    assert set(public) == {"public", "data"}


def test_unreadable_or_foreign_checkpoint_is_refused(tmp_path, make_config):
    run_dir = tmp_path / "r"
    Trainer(make_config(*SMALL, "train.steps=3"), run_dir).run()
    last = Checkpointer(run_dir, 0).latest()
    state = last / "state.json"
    state.write_text(state.read_text()[:-20])
    with pytest.raises(CheckpointError, match="unreadable"):
        Trainer(resume_config(run_dir, None, []), run_dir, resume=True).run()
    with pytest.raises(CheckpointError, match=r"train.lr \(0.0001 -> 0.5\)"):
        resume_config(run_dir, None, ["train.lr=0.5"])
    assert resume_config(run_dir, None, ["train.progress=true"]).train.progress is True


# ---------------------------------------------------------------------------------------------------------
# Real processes: SIGTERM/SIGINT save and exit cleanly; SIGKILL at random moments loses nothing.

CLI = [sys.executable, "-m", "paczero"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def write_config(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "kill.yaml"
    path.write_text(
        "task: {name: synthetic-sentiment, pool_size: 128, dev_size: 16, test_size: 16}\n"
        "model: {name: tiny-opt, track: lora}\n"
        f"train: {{steps: {steps}, lr: 3.0e-2, eval_every: 5, clip: null, progress: false, "
        "checkpoint_every: 3}\n"
        "privacy: {mechanism: paczero-mi, budget: 0.2, subsets: 16, secure: false, seed: 0}\n"
    )
    return path


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_at(proc: subprocess.Popen, steps_file: Path, at_step: int, sig: int, jitter: float) -> bool:
    """Send ``sig`` once the transcript holds ``at_step`` lines (plus a random delay); False if it
    finished."""
    while lines_in(steps_file) < at_step:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    time.sleep(jitter)
    proc.send_signal(sig)
    return True


def kill_and_resume(tmp_path: Path, steps: int, plan: list[tuple[int, int]], rng) -> tuple[dict, int]:
    config = write_config(tmp_path, steps)
    run_dir = tmp_path / "run"
    steps_file = run_dir / "steps.jsonl"
    kills = 0
    args = ["train", "--config", str(config), "--output-dir", str(run_dir)]
    for at_step, sig in plan:
        proc = start(args)
        sent = signal_at(proc, steps_file, at_step, sig, float(rng.uniform(0, 0.02)))
        _, err = proc.communicate(timeout=300)
        if sent and proc.returncode != 0:
            kills += 1
            if sig == signal.SIGKILL:
                assert proc.returncode == -signal.SIGKILL
            else:  # a clean stop: checkpoint saved, one message, the conventional exit code
                assert proc.returncode == 128 + sig, err
                assert "checkpoint saved" in err and "--resume" in err and "Traceback" not in err
        args = ["train", "--resume", str(run_dir)]
    proc = start(args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return outcome(run_dir), kills


def subprocess_reference(tmp_path: Path, steps: int) -> dict:
    """The uninterrupted run of the same config, in this process (1 torch thread, like the subprocesses)."""
    ref = tmp_path / "ref"
    ref.mkdir()
    Trainer(load_config(write_config(ref, steps)), ref / "run").run()
    return outcome(ref / "run")


@pytest.mark.slow
def test_sigterm_sigint_and_sigkill_then_resume_equal_the_uninterrupted_run(tmp_path, make_config):
    steps = 24
    rng = fault_rng()
    points = sorted(rng.choice(np.arange(2, steps - 2), size=3, replace=False).tolist())
    plan = list(zip(points, [signal.SIGTERM, signal.SIGKILL, signal.SIGINT]))
    got, kills = kill_and_resume(tmp_path, steps, plan, rng)
    print(f"subprocess kill points tried: {kills} (steps {points}: SIGTERM, SIGKILL, SIGINT)")
    assert kills >= 2
    assert_same(got, subprocess_reference(tmp_path, steps))


@pytest.mark.slow
def test_many_random_sigkills_then_resume_equal_the_uninterrupted_run(tmp_path):
    steps = 60
    rng = fault_rng()
    points = sorted(rng.choice(np.arange(1, steps - 1), size=12, replace=False).tolist())
    got, kills = kill_and_resume(tmp_path, steps, [(p, signal.SIGKILL) for p in points], rng)
    print(f"subprocess SIGKILL points tried: {kills} (at steps {points})")
    assert kills >= 10
    assert_same(got, subprocess_reference(tmp_path, steps))
