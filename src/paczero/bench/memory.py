"""Peak memory of inference and of a training step, each phase alone in a fresh process."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import torch

from paczero.bench.machine import reset_peak_rss, status_kib
from paczero.config import load_config
from paczero.trainer import Trainer


def memory_phase(config: str | None, overrides: list[str], phase: str) -> dict[str, Any]:
    """Load the run, reset the peak, run one phase (``inference``: two forward sweeps; ``step``: one
    ``Trainer.step``) and return the peak. Meant to run alone in a fresh process."""
    trainer = Trainer(load_config(config, overrides))
    cuda = trainer.pool_device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    resettable = reset_peak_rss()
    baseline = status_kib("VmRSS") * 1024
    if phase == "inference":
        for _ in range(2):
            trainer.objective.losses(trainer.loaded.model, trainer.pool)
    elif phase == "step":
        trainer.step(0)
    else:
        raise ValueError(f"unknown memory phase {phase!r}")
    out = {
        "phase": phase,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": status_kib("VmHWM") * 1024,
        "peak_reset_after_load": resettable,
    }
    if cuda:
        torch.cuda.synchronize()
        out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return out


def measure_memory(config: str | None, overrides: list[str], threads: int) -> dict[str, Any]:
    """Inference and step peaks, each measured in its own subprocess so one cannot inflate the other."""
    result = {}
    for phase in ("inference", "step"):
        cmd = [sys.executable, "-m", "paczero.bench", phase, json.dumps([config, overrides, threads])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory phase {phase!r} failed:\n{done.stderr[-2000:]}")
        result[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    key = "cuda_max_allocated_bytes" if "cuda_max_allocated_bytes" in result["step"] else "peak_rss_bytes"
    inf, step = result["inference"], result["step"]
    result["metric"] = key
    result["ratio"] = step[key] / inf[key]
    if key == "peak_rss_bytes":
        result["increment_ratio"] = (step[key] - step["baseline_rss_bytes"]) / max(
            inf[key] - inf["baseline_rss_bytes"], 1
        )
    return result
