"""Speed and memory phases of ``gpu_check.py``: paper-shaped OPT models and SmolLM2-135M, timed by
``paczero.bench.step.run_bench`` on one loaded model, plus the peak memory of inference and of a training
step."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any
from unittest import mock

import gpu_check_shapes as shapes
import torch
from gpu_check_correct import PhaseContext, guarded

from paczero.bench import machine
from paczero.bench import step as bench
from paczero.config import load_config
from paczero.models.loaders import TORCH_DTYPES as DTYPES
from paczero.models.loaders import LoadedModel, load_model
from paczero.trainer import Trainer

GIB = 2**30
PAPER_N = 1000
DRY_N = 32
# (dtype, track), most important first: fp16 is what the paper ran, fp32 the slowest and least needed
CELLS = [
    ("float16", "full"),
    ("float16", "lora"),
    ("bfloat16", "full"),
    ("bfloat16", "lora"),
    ("float32", "lora"),
    ("float32", "full"),
]
DRY_CELLS = [("float32", "full"), ("float32", "lora"), ("float16", "lora")]  # CPU half-precision is slow


def sst2_dir(ctx: PhaseContext, pool: int) -> str:
    """The user's SST-2 folder, or synthetic SST-2-like prompts written for this phase."""
    if ctx.data_dir:
        return ctx.data_dir
    return str(shapes.write_sst2_like(ctx.workdir / "sst2-like", n_train=pool + 64))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return machine.status_kib("VmRSS") * 1024


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        machine.reset_peak_rss()


def _peak(device: torch.device) -> int:
    _sync(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return machine.status_kib("VmHWM") * 1024


def memory_peaks(trainer: Trainer) -> dict[str, Any]:
    """Peak memory of two inference sweeps and of one training step, on the already loaded model.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; CPU (dry run): the
    resident-set high-water mark after a reset. Both include the weights, which stay loaded throughout.
    """
    device = trainer.pool_device
    model, pool = trainer.loaded.model, trainer.pool
    out: dict[str, Any] = {
        "metric": "cuda_max_allocated" if device.type == "cuda" else "peak_rss",
        "loaded_bytes": _allocated(device),
    }
    _reset_peak(device)
    for _ in range(2):
        trainer.objective.losses(model, pool)
    out["inference_peak_bytes"] = _peak(device)
    _reset_peak(device)
    trainer.step(0)
    out["step_peak_bytes"] = _peak(device)
    out["step_over_inference"] = out["step_peak_bytes"] / out["inference_peak_bytes"]
    return out


def measure(
    overrides: list[str],
    config: str | None,
    mechanisms: tuple[str, ...],
    repeats: int,
    loaded: LoadedModel | None = None,
) -> dict:
    """Load (unless ``loaded`` is given); time forward and steps with ``run_bench``; then the memory peaks
    on the same model."""
    cfg = load_config(config, [*overrides, *bench.BENCH_OVERRIDES])
    started = time.perf_counter()
    if loaded is None:
        loaded = load_model(cfg.model)
        _sync(loaded.device)
    load_s = time.perf_counter() - started
    options = bench.BenchOptions(
        mechanisms=mechanisms, repeats=repeats, reference=False, memory=False, bookkeeping=False
    )
    with mock.patch.object(bench, "load_model", lambda _cfg: loaded):
        out = bench.run_bench(config, overrides, options)
    out["load_s"] = load_s
    out["memory"] = memory_peaks(Trainer(cfg, loaded=loaded))
    return out


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    """The numbers the docs quote, from one ``measure`` result."""
    c, mem = out["config"], out["memory"]
    steps = {
        name: {"step_s": s["step_s"], "step_over_two_forwards": s["ratio_to_two_forwards"]}
        for name, s in out["steps"].items()
    }
    return {
        "model": c["model"],
        "dtype": c["dtype"],
        "track": c["track"],
        "trainable_parameters": c["trainable_parameters"],
        "pool_size": c["pool_size"],
        "micro_batch_size": c["micro_batch_size"],
        "tokens_per_sweep": out["tokens_per_sweep"],
        "load_s": out["load_s"],
        "forward_s": out["forward_s"],
        "steps": steps,
        "memory": {
            "metric": mem["metric"],
            "loaded_gib": mem["loaded_bytes"] / GIB,
            "inference_peak_gib": mem["inference_peak_bytes"] / GIB,
            "step_peak_gib": mem["step_peak_bytes"] / GIB,
            "step_over_inference": mem["step_over_inference"],
        },
    }


def _free_bytes(device: str) -> int | None:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[0]
    return None


def fits(name: str, dtype: str, free: int | None) -> tuple[bool, str]:
    """Whether the weights of shape ``name`` in ``dtype`` leave room for activations in ``free`` bytes."""
    need = shapes.parameter_count(name) * torch.finfo(DTYPES[dtype]).bits // 8
    if free is None:
        return True, f"weights {need / GIB:.1f} GiB; free memory unknown (CPU)"
    ok = need * 1.25 < free
    return ok, f"weights {need / GIB:.1f} GiB (+25% for activations) against {free / GIB:.1f} GiB free"


def _cells(ctx: PhaseContext, name: str, cells: list[tuple[str, str]], repeats: int) -> dict[str, Any]:
    shapes.install()
    pool = DRY_N if ctx.dry_run else PAPER_N
    data = sst2_dir(ctx, pool)
    result: dict[str, Any] = {
        "shape": {"name": name, **shapes.SHAPES[name], "vocab": shapes.OPT_VOCAB},
        "parameters": shapes.parameter_count(name),
        "weights": "random (OPTConfig, no hub); the timings need the shape, not the weights",
        "tokenizer": shapes.tokenizer_note(name),
        "data": ctx.data_dir or "synthetic SST-2-like phrases (SST-2's prompt lengths)",
        "pool_size": pool,
        "mechanism": "paczero-zpl",
        "micro_batch_size": "auto",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cells": [],
    }
    for dtype, track in cells:
        cell: dict[str, Any] = {"dtype": dtype, "track": track}
        ok, why = fits(name, dtype, _free_bytes(ctx.device))
        if ctx.time_left() <= 0:
            cell.update(status="not run", reason="phase time limit reached")
        elif not ok:
            cell.update(status="did not fit", reason=why)
        else:
            overrides = [
                f"model.name={name}",
                f"model.dtype={dtype}",
                f"model.track={track}",
                f"model.device={ctx.device}",
                "task.name=sst2",
                f"task.data_dir={data}",
                f"task.pool_size={pool}",
                "train.micro_batch_size=auto",
                "privacy.mechanism=paczero-zpl",
                "privacy.subsets=128" if not ctx.dry_run else "privacy.subsets=16",
            ]
            try:
                cell.update(status="ok", **summarise(measure(overrides, None, ("paczero-zpl",), repeats)))
            except torch.cuda.OutOfMemoryError as err:
                cell.update(status="did not fit", reason=f"CUDA out of memory ({why}): {str(err)[:300]}")
            except Exception as err:  # noted, and the next cell still runs
                cell.update(status="error", reason=f"{type(err).__name__}: {err}"[:2000])
                result.setdefault("errors", []).append(f"{dtype} {track}: {cell['reason']}")
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        result["cells"].append(cell)
        ctx.emit(result)
    return result


def opt_13b(ctx: PhaseContext) -> dict[str, Any]:
    """OPT-1.3B shape, N = 1000: fp16, bf16 and fp32, full and LoRA."""
    name = "random-opt-dry" if ctx.dry_run else "random-opt-1.3b"
    return _cells(ctx, name, DRY_CELLS if ctx.dry_run else CELLS, repeats=1 if ctx.dry_run else 2)


def opt_67b(ctx: PhaseContext) -> dict[str, Any]:
    """OPT-6.7B shape, N = 1000, fp16: full, then LoRA (each only if it fits)."""
    name = "random-opt-dry-large" if ctx.dry_run else "random-opt-6.7b"
    return _cells(ctx, name, [("float16", "full"), ("float16", "lora")], repeats=1 if ctx.dry_run else 2)


REPLICATION = "configs/replication/zpl.yaml"
REPLICATION_SCALE = ["task.pool_size=96", "train.micro_batch_size=32"]  # replication/scale-seed*.yaml
REPLICATION_STEPS = 100
SMOL_MECHANISMS = ("mezo", "paczero-zpl", "paczero-mi")


def _load_timed(config: str, overrides: list[str], result: dict[str, Any]) -> LoadedModel:
    started = time.perf_counter()
    loaded = load_model(load_config(config, overrides).model)
    result["load_s"] = time.perf_counter() - started
    return loaded


def smollm2(ctx: PhaseContext) -> dict[str, Any]:
    """SmolLM2-135M (real weights, fp32, LoRA) with the replication config: step time per mechanism at the
    replication's N = 96 and at the paper's N = 1000 (automatic micro-batch)."""
    model = "tiny-llama" if ctx.dry_run else "smollm2-135m"
    root = Path(__file__).resolve().parent.parent
    config = str(root / REPLICATION)
    runs = [("replication", 24 if ctx.dry_run else 96, REPLICATION_SCALE)]
    runs.append(("paper pool", DRY_N if ctx.dry_run else PAPER_N, ["train.micro_batch_size=auto"]))
    result: dict[str, Any] = {
        "config": REPLICATION,
        "model": model,
        "note": "dry run: tiny-llama stands in for SmolLM2-135M" if ctx.dry_run else "real weights (GGUF)",
        "runs": [],
    }
    loaded = None  # loaded once: both runs use the config's model, only the data and batch differ
    repeats = 1 if ctx.dry_run else 3
    for label, pool, extra in runs:
        if ctx.time_left() <= 0:
            result["runs"].append({"label": label, "status": "not run", "reason": "phase time limit reached"})
            continue
        overrides = [
            f"model.name={model}",
            f"model.device={ctx.device}",
            f"task.data_dir={sst2_dir(ctx, max(pool, 96))}",
            *extra,
            f"task.pool_size={pool}",
        ]
        if loaded is None:
            loaded = guarded(result, "load", lambda o=overrides: _load_timed(config, o, result))
        if loaded is None:
            result["runs"].append({"label": label, "status": "error", "reason": "the model did not load"})
            continue
        measured = guarded(
            result, label, lambda o=overrides, m=loaded: measure(o, config, SMOL_MECHANISMS, repeats, m)
        )
        if measured is None:
            result["runs"].append({"label": label, "status": "error", "reason": "see errors"})
            continue
        run = summarise(measured)
        zpl = run["steps"]["paczero-zpl"]["step_s"]
        run.update(
            label=label,
            status="ok",
            replication_steps=REPLICATION_STEPS,
            replication_train_s_per_run=zpl * REPLICATION_STEPS,
        )
        result["runs"].append(run)
        ctx.emit(result)
    return result
