"""One command for a GPU user: is training on CUDA correct, how fast is a paper-scale step, what fits.

    python benchmarks/gpu_check.py                 # on a CUDA machine: ≤ 8 minutes, one H200
    python benchmarks/gpu_check.py --dry-run       # anywhere: every phase on the CPU at tiny shapes, < 1 min

Phases run most important first, each under its own time limit and (on a GPU) in its own process, and the
results file is rewritten after every phase, so a run stopped at any point keeps what it measured:

1. ``correctness``: ZPL, MI, MeZO and DPZero tiny runs on CPU and on CUDA from one config: transcripts,
   privacy statement and ledger compared;
2. ``resume``: a CUDA run SIGKILLed mid-way and resumed with ``paczero train --resume``: every transcript line
   written before the kill must come back unchanged;
3. ``opt-1.3b``: an OPT-1.3B-shaped random model, N = 1000: step time, step / (2 × forward), peak memory
   against inference, automatic micro-batch, in fp16, bf16 and fp32, full and LoRA;
4. ``smollm2-135m``: the replication config's step time with the real SmolLM2-135M weights;
5. ``opt-6.7b``: the OPT-6.7B shape in fp16, or a statement of what did not fit.

Results: ``benchmarks/results/gpu-check.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES: list[tuple[str, float, str]] = [  # name, time limit on a GPU (s), what it answers
    ("correctness", 70, "CPU vs CUDA: transcripts, privacy statement, ledger"),
    ("resume", 50, "SIGKILL on CUDA, then paczero train --resume: pre-kill lines unchanged"),
    ("opt-1.3b", 200, "OPT-1.3B shape, N = 1000: step time, step / 2 forwards, memory, micro-batch"),
    ("smollm2-135m", 50, "SmolLM2-135M replication config: step time"),
    ("opt-6.7b", 100, "OPT-6.7B shape, fp16: step time and memory, or what did not fit"),
]
BUDGET_S = 465.0  # phases stop within 5 s of their limit: the whole command stays under 8 minutes
DRY_LIMIT_S = 240.0  # per phase in a dry run: seconds each when idle, generous for a busy shared CPU


def phase_function(name: str):
    """The function that runs a phase (imported late: a dry run with no time left never imports torch)."""
    import gpu_check_correct as correct
    import gpu_check_speed as speed

    return {
        "correctness": correct.correctness,
        "resume": correct.resume,
        "opt-1.3b": speed.opt_13b,
        "smollm2-135m": speed.smollm2,
        "opt-6.7b": speed.opt_67b,
    }[name]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def run_phase(name: str, args: argparse.Namespace, limit: float, partial: Path) -> dict[str, Any]:
    """Run one phase in this process; partial results go to ``partial`` as they come."""
    import torch
    from gpu_check_correct import PhaseContext

    from paczero.bench.machine import machine

    if args.dry_run:
        torch.set_num_threads(1)
    # inside the parent's scratch folder, so that a phase killed at its limit leaves nothing behind
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=partial.parent) as work:
        ctx = PhaseContext(
            dry_run=args.dry_run,
            device="cpu" if args.dry_run else args.device,
            workdir=Path(work),
            deadline=time.monotonic() + limit,
            data_dir=args.data_dir,
            emit=lambda result: _write_json(partial, {"result": result, "complete": False}),
        )
        result = phase_function(name)(ctx)
    payload = {"result": result, "complete": True, "machine": machine() if name != "resume" else None}
    _write_json(partial, payload)
    return payload


def _status(result: dict[str, Any]) -> str:
    """A finished phase's status: ``error`` if any part failed, ``timeout`` if it stopped at its limit."""
    return "error" if result.get("errors") else "timeout" if result.get("stopped") else "ok"


def _isolated(name: str, args: argparse.Namespace, limit: float, partial: Path) -> dict[str, Any]:
    """The phase in a child process, killed (with its whole process group) at the limit."""
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--phase-file",
        str(partial),
        "--phase-limit",
        str(limit),
    ]
    cmd += ["--device", args.device] + (["--data-dir", args.data_dir] if args.data_dir else [])
    cmd += ["--dry-run"] if args.dry_run else []
    proc = subprocess.Popen(  # a new session: the kill below reaches the phase's own children too
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=limit + 5)  # the phase stops itself at the limit; 5 s of grace
        status = "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        status = "timeout"
    found = json.loads(partial.read_text()) if partial.is_file() else {}
    if status == "ok" and not found.get("complete"):
        status = "error"
    if status == "ok":
        status = _status(found["result"])
    out = {"status": status, **found}
    if status == "error":
        out["error"] = err[-3000:]
    return out


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected phase in order within the budget; the results file is rewritten after each."""
    import gpu_check_report as report

    began = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1,
        "command": "python benchmarks/gpu_check.py" + (" --dry-run" if args.dry_run else ""),
        "mode": "dry-run (CPU, tiny shapes)" if args.dry_run else f"gpu ({args.device})",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "budget_s": args.budget,
        "machine": None,
        "phase_order": [p[0] for p in PHASES if p[0] in args.phases],
        "phases": {},
        "notes": [
            "privacy randomness is seeded in the correctness and resume phases (privacy.secure: false): "
            "for testing only",
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name, gpu_limit, question in PHASES:
            if name not in args.phases:
                continue
            left = args.budget - (time.monotonic() - began)
            limit = min(DRY_LIMIT_S if args.dry_run else gpu_limit, left)
            entry: dict[str, Any] = {"question": question, "limit_s": round(limit, 1)}
            start = time.monotonic()
            if limit <= 1:
                entry.update(status="skipped", reason="the command's time budget was spent")
            elif args.isolate:
                entry.update(_isolated(name, args, limit, Path(tmp) / f"{name}.json"))
            else:
                try:
                    found = run_phase(name, args, limit, Path(tmp) / f"{name}.json")
                    entry.update(status=_status(found["result"]), **found)
                except Exception as err:  # one phase failing must not lose the others
                    entry.update(status="error", error=f"{type(err).__name__}: {err}")
            entry["seconds"] = round(time.monotonic() - start, 1)
            results["machine"] = results["machine"] or entry.pop("machine", None)
            entry.pop("machine", None)
            entry.pop("complete", None)
            results["phases"][name] = entry
            results["elapsed_s"] = round(time.monotonic() - began, 1)
            _write_json(out, results)
            out.with_suffix(".md").write_text(report.markdown(results))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    _write_json(out, results)
    out.with_suffix(".md").write_text(report.markdown(results))
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", default=bool(os.environ.get("GPU_CHECK_DRY_RUN")))
    parser.add_argument("--out", help="results JSON (default results/gpu-check.json, -dry-run.json)")
    parser.add_argument("--device", default="cuda", help="model.device for the GPU side (cuda, cuda:N)")
    parser.add_argument(
        "--data-dir", default=None, help="SST-2 folder (train.tsv, dev.tsv); default synthetic"
    )
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole command")
    parser.add_argument("--phases", default=",".join(p[0] for p in PHASES), help="comma-separated subset")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each phase in its own process (default: on, except in a dry run)")  # fmt: skip
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--phase-file", help=argparse.SUPPRESS)
    parser.add_argument("--phase-limit", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phases = [p for p in args.phases.split(",") if p]
    unknown = set(args.phases) - {p[0] for p in PHASES}
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {[p[0] for p in PHASES]}")
    if args.out is None:
        args.out = str(HERE / "results" / ("gpu-check-dry-run.json" if args.dry_run else "gpu-check.json"))
    if args.isolate is None:
        args.isolate = not args.dry_run
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local: never wait on the hub
    if args.phase:  # a child process running one phase
        run_phase(args.phase, args, args.phase_limit, Path(args.phase_file))
        return 0
    needed = ("torch", "transformers", "peft", "dp_accounting")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        print(f"gpu_check: missing {missing}: pip install -e . (see docs/benchmarks.md)", file=sys.stderr)
        return 2
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device; use --dry-run to check the script on a CPU", file=sys.stderr)
            return 2
    results = run_all(args)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0 if all(p["status"] == "ok" for p in results["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
