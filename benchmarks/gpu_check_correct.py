"""Correctness phases of ``gpu_check.py``: the same tiny runs on CPU and CUDA, and kill-and-resume on CUDA.

Every run here seeds its privacy randomness (``privacy.secure: false``, ``privacy.seed: 0``) so that two runs
can be compared at all: that is for testing only, never for a model that is released.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import yaml

TESTING_ONLY = (
    "privacy randomness is seeded (privacy.secure: false, privacy.seed: 0) so that runs can be compared; "
    "this is for testing only, never for a model that is released"
)
CHAIN_FIELDS = ("prev_hash",)  # the chain hash: it differs as soon as any earlier line differs
TINY = {
    "task": {"name": "synthetic-sentiment", "pool_size": 64, "dev_size": 16, "test_size": 16},
    "model": {"name": "tiny-opt", "track": "full", "dtype": "float32"},
    "train": {"steps": 12, "lr": 1.0e-3, "clip": 25, "eval_every": 6, "progress": False},
    "privacy": {"subsets": 16, "seed": 0, "secure": False},
}
MECHANISMS: dict[str, dict[str, Any]] = {  # the order is the order of importance
    "paczero-zpl": {},
    "paczero-mi": {"budget": 0.33},
    "mezo": {},
    "dpzero": {"epsilon": 2.0, "sampling_rate": 0.5},
}


@dataclass
class PhaseContext:
    """What a phase needs: mode, device, data, a scratch folder, its deadline and a partial-result sink."""

    dry_run: bool
    device: str  # "cuda" on a GPU machine; "cpu" in a dry run
    workdir: Path
    deadline: float  # time.monotonic() at which the phase must stop starting new work
    emit: Callable[[dict[str, Any]], None] = lambda result: None
    data_dir: str | None = None  # real SST-2 (train.tsv, dev.tsv); None: synthetic SST-2-like prompts
    notes: list[str] = field(default_factory=list)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


def guarded(result: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None with the error noted in ``result["errors"]``: one failure must not end a phase."""
    try:
        return fn()
    except Exception as err:
        result.setdefault("errors", []).append(f"{key}: {type(err).__name__}: {err}"[:2000])
        return None


def tiny_config(mechanism: str, device: str, dry_run: bool = False, **train: Any) -> dict[str, Any]:
    """The tiny run of ``mechanism`` on ``device`` as a config tree (``train`` keys override; a dry run is
    shorter still)."""
    tree = json.loads(json.dumps(TINY))
    tree["model"]["device"] = device
    if dry_run:
        tree["task"].update(pool_size=32, dev_size=8, test_size=8)
        tree["train"].update(steps=4, eval_every=2)
    tree["train"].update(train)
    tree["privacy"].update(mechanism=mechanism, **MECHANISMS[mechanism])
    return tree


def train_in_process(tree: dict[str, Any], run_dir: Path) -> None:
    """One run, written to ``run_dir`` (steps.jsonl, privacy.md, summary.json, ...)."""
    from paczero.config import build_config
    from paczero.trainer import Trainer

    Trainer(build_config(tree), run_dir).run()


class _CpuDrawsOnDevice:
    """Stands in for ``torch`` inside ``paczero.zo``: ``randn`` draws on the CPU generator, then moves."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def randn(*shape: Any, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Any:
        return torch.randn(*shape, generator=generator, dtype=dtype).to(device)


@contextlib.contextmanager
def cpu_directions() -> Iterator[None]:
    """Diagnostic only: draw every direction z with the CPU generator, whatever the parameters' device."""
    import paczero.zo as zo

    def generator(self: Any, seed: int, device: torch.device) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(int(seed))

    with (
        mock.patch.object(zo.Directions, "_generator", generator),
        mock.patch.object(zo, "torch", _CpuDrawsOnDevice()),
    ):
        yield


def read_lines(path: Path) -> list[str]:
    """The complete lines of a transcript (a line cut by a kill has no newline and is left out)."""
    if not path.is_file():
        return []
    text = path.read_bytes().decode()
    return text.split("\n")[:-1]


def _public(line: str) -> dict[str, Any]:
    record = json.loads(line)
    return {k: v for k, v in record.items() if k not in CHAIN_FIELDS}


def compare_transcripts(a_dir: Path, b_dir: Path) -> dict[str, Any]:
    """Step-by-step comparison of two runs' ``steps.jsonl`` (timing fields aside) and privacy outputs."""
    a = read_lines(a_dir / "steps.jsonl")
    b = read_lines(b_dir / "steps.jsonl")
    ra, rb = [json.loads(x) for x in a], [json.loads(x) for x in b]
    same = [_public(x) == _public(y) for x, y in zip(a, b, strict=False)]
    first = next((i for i, s in enumerate(same) if not s), None)
    pairs = [
        (u, v)
        for x, y in zip(ra, rb, strict=False)
        for u, v in zip(x["released"], y["released"], strict=False)
    ]
    head = zip(ra[:first], rb[:first], strict=False)
    losses = [abs(x["loss"] - y["loss"]) for x, y in head if x["loss"] is not None]
    out: dict[str, Any] = {
        "steps": [len(a), len(b)],
        "identical_steps": sum(same),
        "released_identical": sum(x["released"] == y["released"] for x, y in zip(ra, rb, strict=False)),
        "kinds_identical": sum(x["kinds"] == y["kinds"] for x, y in zip(ra, rb, strict=False)),
        "first_difference_step": None if first is None else first + 1,
        "fields_differing_at_first_difference": []
        if first is None
        else sorted(k for k, v in _public(a[first]).items() if _public(b[first]).get(k) != v),
        "max_abs_released_difference": max((abs(u - v) for u, v in pairs), default=0.0),
        "max_released_magnitude": max((max(abs(u), abs(v)) for u, v in pairs), default=0.0),
        "max_abs_loss_difference_before_first_difference": max(losses, default=0.0),
    }
    out.update(compare_privacy(a_dir, b_dir))
    return out


def compare_privacy(a_dir: Path, b_dir: Path) -> dict[str, Any]:
    """Whether the privacy statement (privacy.md) and the summary's privacy block are identical."""
    pa = json.loads((a_dir / "summary.json").read_text())["privacy"]
    pb = json.loads((b_dir / "summary.json").read_text())["privacy"]
    differing = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
    return {
        "privacy_md_identical": (a_dir / "privacy.md").read_bytes() == (b_dir / "privacy.md").read_bytes(),
        "privacy_block_identical": not differing,
        "privacy_block_differences": {k: [pa.get(k), pb.get(k)] for k in differing[:8]},
    }


def correctness(ctx: PhaseContext) -> dict[str, Any]:
    """Each mechanism's tiny run on CPU, on ``ctx.device``, and on ``ctx.device`` with CPU-drawn z."""
    result: dict[str, Any] = {
        "devices": ["cpu", ctx.device],
        "config": TINY,
        "note": TESTING_ONLY,
        "variants": {
            ctx.device: "the run as a user runs it on this device",
            f"{ctx.device}+cpu-z": "diagnostic: the same, but every direction z drawn by the CPU generator "
            "and moved to the device, so that only the kernels differ from the CPU run",
        },
        "mechanisms": {},
    }
    if ctx.dry_run:
        result["dry_run"] = "no CUDA here: both sides run on the CPU; this checks the phase, not a GPU"
    for mechanism in MECHANISMS:
        if ctx.time_left() <= 0:
            result["stopped"] = f"time limit reached before {mechanism}"
            break
        compared = guarded(result, mechanism, lambda m=mechanism: _compare_devices(ctx, m))
        if compared is not None:
            result["mechanisms"][mechanism] = compared
        ctx.emit(result)
    return result


def _compare_devices(ctx: PhaseContext, mechanism: str) -> dict[str, Any]:
    base = ctx.workdir / mechanism
    train_in_process(tiny_config(mechanism, "cpu", ctx.dry_run), base / "cpu")
    train_in_process(tiny_config(mechanism, ctx.device, ctx.dry_run), base / "device")
    with cpu_directions():
        train_in_process(tiny_config(mechanism, ctx.device, ctx.dry_run), base / "device-cpu-z")
    return {
        ctx.device: compare_transcripts(base / "cpu", base / "device"),
        f"{ctx.device}+cpu-z": compare_transcripts(base / "cpu", base / "device-cpu-z"),
    }


# ----------------------------------------------------------------------------------------------------------
# Kill and resume


def compare_prefix(before: list[str], after: list[str]) -> dict[str, Any]:
    """Every line written before a kill against the same line after the resumed run finished.

    Resume never computes a released step again (it re-applies the released values), so every line written
    before the kill must come back byte for byte; ``differing`` names the fields of any line that did not.
    """
    byte_identical, differing = 0, []
    for number, line in enumerate(before, 1):
        other = after[number - 1] if number <= len(after) else None
        if other == line:
            byte_identical += 1
        else:
            fields = (
                ["<missing after resume>"]
                if other is None
                else sorted(k for k, v in _public(line).items() if _public(other).get(k) != v)
            )
            differing.append({"step": number, "fields": fields})
    return {
        "lines_before_kill": len(before),
        "byte_identical": byte_identical,
        "differing": differing,
        "passed": bool(before) and not differing,
    }


def tamper(lines: list[str], index: int) -> list[str]:
    """A copy of ``lines`` with one released value changed (the negative control)."""
    record = json.loads(lines[index])
    record["released"] = [v + 1.0 for v in record["released"]]
    return [*lines[:index], json.dumps(record), *lines[index + 1 :]]


def _fork_cli(argv: list[str], log: Path) -> int:
    """``paczero <argv>`` in a forked child (no new interpreter to start); returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from paczero.cli import main

        code = main(argv)
    except BaseException:  # the child must never return into the parent's code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def kill_and_resume(
    ctx: PhaseContext, mechanism: str, steps: int, every: int, kill_at: int
) -> dict[str, Any]:
    """Train on ``ctx.device``, SIGKILL the process once ``kill_at`` steps are written, resume with
    ``paczero train --resume``, and compare every line written before the kill with the final transcript."""
    root = ctx.workdir / mechanism
    root.mkdir(parents=True)
    config, run_dir, log = root / "run.yaml", root / "run", root / "log.txt"
    tree = tiny_config(mechanism, ctx.device, steps=steps, checkpoint_every=every)
    config.write_text(yaml.safe_dump(tree))
    steps_file = run_dir / "steps.jsonl"
    pid = _fork_cli(["train", "--config", str(config), "--output-dir", str(run_dir)], log)
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if len(read_lines(steps_file)) >= kill_at:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = True
            break
        time.sleep(0.001)
    before = read_lines(steps_file)
    out: dict[str, Any] = {
        "mechanism": mechanism,
        "device": ctx.device,
        "steps": steps,
        "checkpoint_every": every,
        "kill": "SIGKILL" if killed else "none: the run ended before it could be killed",
        "killed_by_sigkill": killed and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
    }
    pid = _fork_cli(["train", "--resume", str(run_dir)], log)
    _, status = os.waitpid(pid, 0)
    out["resume_exit_code"] = os.waitstatus_to_exitcode(status)
    after = read_lines(steps_file)
    out["lines_after_resume"] = len(after)
    out.update(compare_prefix(before, after))
    out["passed"] = out["passed"] and out["killed_by_sigkill"] and out["resume_exit_code"] == 0
    if before:
        index = len(before) // 2
        control = compare_prefix(tamper(before, index), after)
        out["negative_control"] = {
            "tampered_step": index + 1,
            "change": "released value + 1 in the copy of the pre-kill transcript",
            "detected": not control["passed"] and [d["step"] for d in control["differing"]] == [index + 1],
        }
    if out["resume_exit_code"] != 0:
        out["log_tail"] = log.read_text()[-1500:]
    return out


def resume(ctx: PhaseContext) -> dict[str, Any]:
    """Kill-and-resume for ZPL and MI (checkpoints every 4 steps, killed after 6 steps were written)."""
    if ctx.device.startswith("cuda") and torch.cuda.is_initialized():
        raise RuntimeError("the resume phase forks its runs, so CUDA must not be in use yet: run it isolated")
    result: dict[str, Any] = {"note": TESTING_ONLY, "runs": {}}
    for mechanism in ("paczero-zpl", "paczero-mi"):
        if ctx.time_left() <= 0:
            result["stopped"] = f"time limit reached before {mechanism}"
            break
        run = guarded(
            result, mechanism, lambda m=mechanism: kill_and_resume(ctx, m, steps=40, every=4, kill_at=6)
        )
        if run is not None:
            result["runs"][mechanism] = run
        ctx.emit(result)
    runs = result["runs"].values()
    result["passed"] = bool(runs) and not result.get("errors") and all(r["passed"] for r in runs)
    return result
