"""Data parallelism with torchrun and gloo on CPU: results independent of the number of ranks, a dead rank
ends the job, and a run resumes under a different number of ranks."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "dist_worker.py"
CONFIG = """
task: {name: synthetic-sentiment, pool_size: 96, dev_size: 40, test_size: 40}
model: {name: tiny-opt, track: lora}
train: {steps: 6, lr: 3.0e-2, eval_every: 3, micro_batch_size: 16, clip: null, progress: false,
        checkpoint_every: 3, dist_timeout: 30}
privacy: {mechanism: MECH, budget: 0.2, subsets: 16, secure: false, seed: 0}
"""


def launch(tmp_path, out, nproc, mech="paczero-mi", extra=(), env_extra=None, resume=False, secure=False):
    cfg = tmp_path / f"{mech}.yaml"
    text = CONFIG.replace("MECH", mech)
    cfg.write_text(text.replace("secure: false, seed: 0", "secure: true") if secure else text)
    args = ["--resume", str(out)] if resume else ["--config", str(cfg), "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env_extra or {})}
    if nproc == 1:
        command = [sys.executable, str(WORKER), "train", *args, *extra]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-port",
            str(29500 + os.getpid() % 1000),
            str(WORKER),
            "train",
            *args,
            *extra,
        ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)


def transcript(run):
    lines = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "prev_hash"} for r in lines]


def weights(run):
    return (run / "model" / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("mech", ["paczero-zpl", "paczero-mi"])
def test_one_and_two_ranks_give_identical_transcripts_weights_and_metrics(tmp_path, mech):
    one, two = tmp_path / "one", tmp_path / "two"
    assert launch(tmp_path, one, 1, mech).returncode == 0
    result = launch(tmp_path, two, 2, mech)
    assert result.returncode == 0, result.stderr[-2000:]
    assert transcript(one) == transcript(two) and len(transcript(one)) == 6
    assert weights(one) == weights(two)
    s1, s2 = (json.loads((r / "summary.json").read_text()) for r in (one, two))
    assert s1["dev"]["history"] == s2["dev"]["history"] and s1["test"] == s2["test"]
    assert s1["privacy"]["mi_spent"] == s2["privacy"]["mi_spent"]
    assert result.stdout.count("Privacy statement") == 1  # rank 0 alone reports


def test_a_dead_rank_ends_the_job_with_an_error_and_no_hang(tmp_path):
    began = time.monotonic()
    result = launch(
        tmp_path,
        tmp_path / "run",
        2,
        env_extra={"PACZERO_TEST_KILL_RANK": "1", "PACZERO_TEST_KILL_STEP": "2"},
    )
    elapsed = time.monotonic() - began
    assert result.returncode != 0
    assert elapsed < 120, elapsed
    assert "Signal 9" in result.stderr or "SIGKILL" in result.stderr or "exitcode" in result.stderr


def test_a_two_rank_run_resumes_on_one_rank_to_the_same_result(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert launch(tmp_path, whole, 1).returncode == 0
    crashed = launch(
        tmp_path, broken, 2, env_extra={"PACZERO_TEST_KILL_RANK": "0", "PACZERO_TEST_KILL_STEP": "4"}
    )
    assert crashed.returncode != 0
    assert len(transcript(broken)) == 4  # steps 1-4 were released; the checkpoint holds step 3
    resumed = launch(tmp_path, broken, 1, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert transcript(broken) == transcript(whole)
    assert weights(broken) == weights(whole)


def test_secure_mode_under_torchrun_ranks_agree_and_runs_differ(tmp_path):
    """The OS entropy is drawn once on rank 0 and shared: both ranks release and hold exactly the same; a
    second secure run draws other entropy, so its noise differs."""
    released = []
    for name in ("a", "b"):
        dump = tmp_path / f"dump-{name}"
        dump.mkdir()
        result = launch(
            tmp_path,
            tmp_path / name,
            2,
            "paczero-zpl",
            env_extra={"PACZERO_TEST_DUMP": str(dump)},
            secure=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        rank0, rank1 = (json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1))
        assert rank0 == rank1
        assert transcript(tmp_path / name)[-1]["released"] == rank0["released"][-1]
        released.append(rank0["released"])
    assert released[0] != released[1]


def test_nccl_process_group_is_given_this_rank_s_device(monkeypatch):
    """Under torchrun on GPUs the process group is NCCL, bound to the rank's device (without it NCCL could
    not start); on CPU it is gloo."""
    import torch

    from paczero import distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    ctx = distributed.init_from_env(30.0, torch.device("cuda:1"))
    assert (
        ctx.rank == 1 and calls[-1]["backend"] == "nccl" and calls[-1]["device_id"] == torch.device("cuda:1")
    )
    distributed.init_from_env(30.0, None)
    assert calls[-1]["backend"] == "gloo" and "device_id" not in calls[-1]
