"""``paczero bench``: what a step costs against two bare forward passes, and against the reference protocol.

Everything is measured in one process and one run and reported as ratios, because shared machines are noisy:

- bare forward time over the step's batch, and each mechanism's full ``Trainer.step`` time;
- the *reference protocol* of the published code, re-implemented on our parts for comparison only: three
  forward sweeps per step (the third only logs the loss), each one call of N sequences per label word padded
  to the call's longest rounded up to 8 (:mod:`paczero.bench_reference`), a full-vocabulary log-softmax at
  every position, and four regenerations of z (+ε, −2ε, +ε restore, −η·b update);
- peak memory of inference alone and of a training step, each in a fresh subprocess (CPU: the resident-set
  high-water mark, reset after loading; CUDA: ``torch.cuda.max_memory_allocated``);
- the privacy bookkeeping (subset aggregation, posterior update, MI calibration) at M = 128, N = 1000;
- optional sweeps of the step time over the pool size N (linear fit) and the number of subsets M.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from paczero.accounting import PacLedger
from paczero.bench_reference import PublishedClassifier
from paczero.bench_trunk import TARGETS as TRUNK_TARGETS
from paczero.bench_trunk import trunk_comparison, trunk_markdown, trunk_target_values
from paczero.config import RunConfig, load_config
from paczero.mechanisms import get_mechanism
from paczero.mechanisms.base import Guarantee, StepInput
from paczero.models.loaders import LoadedModel, load_model
from paczero.models.trunk import TrunkCachedModel
from paczero.subsets import Secret, build_subsets
from paczero.tasks.classification import Classifier, MicroBatch, PreparedSet
from paczero.trainer import Trainer
from paczero.zo import clip, two_point_estimate

MIB = 2**20
TARGETS = {  # name: (comparison, threshold)
    "step / 2 forwards (lora)": ("<=", 1.10),
    "step / 2 forwards (full)": ("<=", 1.25),
    "reference / ours": (">=", 3.0),
    "train peak / inference peak": ("<=", 1.10),
    "privacy bookkeeping / step": ("<", 0.01),
    "step(M max) / step(M min)": ("<=", 1.10),
    **TRUNK_TARGETS,
}


# ----------------------------------------------------------------------------------------------------------
# The reference protocol (comparison only)


class ReferenceClassifier(Classifier):
    """The published code's scoring, for comparison only; the per-example losses equal ``Classifier``'s.

    Each flag undoes one of our optimisations (all on = the reference protocol): ``per_candidate`` makes every
    (example, label word) pair its own sequence, ``full_logits`` computes the logits of every position (with
    ``per_candidate``: and a full-vocabulary log-softmax over them), ``fixed_padding`` left-pads every
    sequence to ``max_length``.
    """

    def __init__(
        self,
        tokenizer,
        prompt: str,
        label_words: list[str],
        micro_batch_size: int,
        max_length: int,
        per_candidate: bool = True,
        full_logits: bool = True,
        fixed_padding: bool = True,
    ):
        super().__init__(tokenizer, prompt, label_words, micro_batch_size, max_length)
        self.single_token = self.single_token and not per_candidate
        self.full_logits = full_logits
        self.fixed_padding = fixed_padding

    def prepare(self, examples, device: torch.device) -> PreparedSet:
        data = super().prepare(examples, device)
        return dataclasses.replace(data, keep=0) if self.full_logits else data  # 0 keeps every position

    def _collate(self, chunk, device: torch.device) -> MicroBatch:
        mb = super()._collate(chunk, device)
        extra = self.max_length - mb.input_ids.shape[1] if self.fixed_padding else 0
        return dataclasses.replace(
            mb,
            input_ids=F.pad(mb.input_ids, (extra, 0), value=self.pad_id),
            attention_mask=F.pad(mb.attention_mask, (extra, 0)),
            position_ids=F.pad(mb.position_ids, (extra, 0)),
        )


def reference_objective(cfg: RunConfig, tokenizer, micro_batch_size: int) -> PublishedClassifier:
    """The published code's scoring: one call of N sequences per label word (``micro_batch_size`` unused)."""
    task = cfg.task
    return PublishedClassifier(tokenizer, task.prompt, task.label_words, task.pool_size, task.max_length)


@dataclass
class ReferenceRecord:
    seeds: list[int]
    update: list[float]
    loss: float  # from the third forward sweep, at θ
    seconds: float


def reference_step(trainer: Trainer, objective: Classifier, data: PreparedSet, t: int) -> ReferenceRecord:
    """One step by the published protocol on the trainer's model, directions, mechanism and ledger.

    Draws the same public seeds as ``Trainer.step`` and releases through the same mechanism, so from the same
    state it makes the same update; it only spends three forward sweeps and four regenerations per direction.
    """
    tc = trainer.cfg.train
    start = time.perf_counter()
    lr, k_dirs = trainer.lr_at(t), tc.directions
    seeds = [int(trainer.public_rng.integers(0, 2**63 - 1)) for _ in range(k_dirs)]
    model, apply = trainer.loaded.model, trainer.directions.apply
    values, losses = [], []
    for seed in seeds:
        apply([(seed, tc.zo_eps)])
        plus = objective.losses(model, data)
        apply([(seed, -2.0 * tc.zo_eps)])
        minus = objective.losses(model, data)
        apply([(seed, tc.zo_eps)])
        losses.append(float(objective.losses(model, data).mean()))  # the third sweep: logging only
        g, _ = clip(two_point_estimate(plus, minus, tc.zo_eps).g, tc.clip)
        release = trainer.mechanism.release(StepInput.from_estimates(g, trainer.subsets), trainer.ledger)
        trainer.ledger.charge(release)
        values.append(release.value)
    for seed, value in zip(seeds, values, strict=True):
        apply([(seed, -lr / k_dirs * value)])  # the fourth regeneration
    return ReferenceRecord(seeds, values, float(np.mean(losses)), time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------------------
# Measurement helpers


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median(fn: Callable[[], Any], repeats: int) -> float:
    return statistics.median(_timed(fn) for _ in range(repeats))


def interleaved(fns: dict[Any, Callable[[], Any]], repeats: int) -> dict[Any, float]:
    """Median time of each function, timed round-robin so that a change in machine load hits all alike."""
    times: dict[Any, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            times[key].append(_timed(fn))
    return {key: statistics.median(ts) for key, ts in times.items()}


def stepper(trainer: Trainer, first: int = 0) -> Callable[[], Any]:
    """Calls ``trainer.step(t)`` with t = first, first + 1, ... (the learning-rate schedule advances)."""
    counter = iter(range(first, 10**9))
    return lambda: trainer.step(next(counter))


def token_counts(data: PreparedSet) -> dict[str, int]:
    """Sequences, real tokens and tokens including padding of one forward sweep over ``data``."""
    return {
        "sequences": sum(mb.input_ids.shape[0] for mb in data.batches),
        "real": sum(int(mb.attention_mask.sum()) for mb in data.batches),
        "with_padding": sum(mb.input_ids.numel() for mb in data.batches),
    }


def _mechanism_overrides(name: str, cfg: RunConfig) -> list[str]:
    extra = [f"privacy.mechanism={name}"]
    if name == "paczero-mi" and cfg.privacy.budget is None:
        extra.append("privacy.budget=0.33")
    return extra


def bookkeeping_seconds(mechanism: str, m: int = 128, n: int = 1000, calls: int = 200) -> float:
    """Mean time of subset aggregation + release (MI calibration) + ledger charge (posterior update).

    The per-example estimates are drawn so that the subsets disagree, which forces the noisy MI branch.
    """
    rng = np.random.default_rng(0)
    subsets = build_subsets(n, m, rng)
    mech = get_mechanism(mechanism)(Secret(0, m), rng)
    ledger = PacLedger(m, calls, 0.33 if mech.guarantee is Guarantee.MI_BUDGET else None)
    gs = rng.normal(0.0, 1.0, size=(calls, n))

    def run() -> None:
        for g in gs:
            ledger.charge(mech.release(StepInput.from_estimates(g, subsets), ledger))

    return _timed(run) / calls


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares line y = slope·x + intercept, with R² and the largest relative residual."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {
        "slope_s_per_example": float(slope),
        "intercept_s": float(intercept),
        "r2": r2,
        "max_relative_residual": float(np.max(np.abs(y - pred) / y)),
    }


def machine() -> dict[str, Any]:
    """Where and when: the numbers mean little without the machine, its load and the library versions."""
    import transformers

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if found:
            return found.group(1).strip()
    return platform.processor()


# ----------------------------------------------------------------------------------------------------------
# Peak memory, one phase per subprocess


def status_kib(key: str) -> int:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``) in KiB; 0 where absent."""
    found = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(found.group(1)) if found else 0


def reset_peak_rss() -> bool:
    """Reset the resident-set high-water mark to the current RSS (Linux ≥ 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


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


# ----------------------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class BenchOptions:
    """What to measure. Mechanisms are switched with ``privacy.mechanism`` overrides on the same model."""

    mechanisms: tuple[str, ...] = ("mezo", "paczero-zpl", "paczero-mi")
    repeats: int = 3
    reference: bool = True
    reference_repeats: int = 1
    memory: bool = True
    bookkeeping: bool = True
    sweep_n: tuple[int, ...] = ()
    sweep_m: tuple[int, ...] = ()
    threads: int | None = None  # torch intra-op threads; 1 is steadier on a shared, busy machine
    notes: list[str] = field(default_factory=list)


BENCH_OVERRIDES = ["task.dev_size=0", "task.test_size=0", "train.progress=false"]  # a bench never evaluates


def run_bench(config: str | None, overrides: Sequence[str], options: BenchOptions) -> dict[str, Any]:
    """Measure one model/config; returns the JSON-ready result with every target checked."""
    overrides = [*overrides, *BENCH_OVERRIDES]
    if options.threads:
        torch.set_num_threads(options.threads)
    cfg = load_config(config, overrides)
    loaded = load_model(cfg.model)
    base = Trainer(cfg, loaded=loaded)
    pool = base.pool

    def forward() -> None:
        base.objective.losses(base.forward_model, pool)  # the model the step runs (cached trunk or not)

    forward()  # warm-up: the first call at each micro-batch shape sets up kernels and allocations
    tokens = token_counts(pool)
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "file": config,
            "overrides": list(overrides),
            "task": cfg.task.name,
            "model": cfg.model.name,
            "track": cfg.model.track,
            "dtype": cfg.model.dtype,
            "trainable_parameters": loaded.num_trainable(),
            "pool_size": base.subsets.n,
            "subsets": cfg.privacy.subsets,
            "directions": cfg.train.directions,
            "micro_batch_size": base.objective.micro_batch_size,
            "repeats": options.repeats,
        },
        "tokens_per_sweep": tokens,
        "notes": list(options.notes),
    }
    trainers = {
        name: Trainer(load_config(config, [*overrides, *_mechanism_overrides(name, cfg)]), loaded=loaded)
        for name in options.mechanisms
    }
    for tr in trainers.values():  # a cached trunk is filled by its first forward, which is not a step cost
        if isinstance(tr.forward_model, TrunkCachedModel):
            tr.objective.losses(tr.forward_model, tr.pool)
    timings = interleaved(
        {"forward": forward, **{n: stepper(tr) for n, tr in trainers.items()}}, options.repeats
    )
    forward_s = timings.pop("forward")
    steps = {
        name: {
            "step_s": step_s,
            "ratio_to_two_forwards": step_s / (2 * forward_s),
            "real_tokens_per_s": 2 * tokens["real"] / step_s,
        }
        for name, step_s in timings.items()
    }
    out["forward_s"] = forward_s
    out["steps"] = steps
    if isinstance(base.forward_model, TrunkCachedModel):  # the same step without the trunk cache
        out["trunk"] = trunk_comparison(config, overrides, loaded, base, options.repeats, stepper)
    if options.reference:
        out["reference"] = _reference(config, overrides, cfg, loaded, options)
    if options.bookkeeping:
        out["bookkeeping"] = {
            name: {"seconds": bookkeeping_seconds(name)} for name in ("paczero-zpl", "paczero-mi")
        }
    if options.sweep_n:
        out["sweep_n"] = _sweep(config, overrides, loaded, "task.pool_size", options.sweep_n, options.repeats)
        out["sweep_n"]["fit"] = linear_fit(options.sweep_n, out["sweep_n"]["step_s"])
    if options.sweep_m:
        out["sweep_m"] = _sweep_subsets(base, options.sweep_m, options.repeats)
        times = out["sweep_m"]["step_s"]
        out["sweep_m"]["max_over_min"] = max(times) / min(times)
    if options.memory:
        del base
        gc.collect()
        out["memory"] = measure_memory(config, list(overrides), torch.get_num_threads())
    out["targets"] = check_targets(out)
    return out


def _reference(config, overrides, cfg: RunConfig, loaded: LoadedModel, options: BenchOptions) -> dict:
    """Reference-protocol step time against ours, same mechanism, model, data and starting state."""
    ours = Trainer(cfg, loaded=loaded)
    ref_obj = reference_objective(cfg, loaded.tokenizer, ours.objective.micro_batch_size)
    ref_pool = ref_obj.prepare(ours.splits.pool, ours.pool_device)
    ref_trainer = Trainer(load_config(config, list(overrides)), loaded=loaded)
    ours_s = _median(lambda: ours.step(0), options.reference_repeats)
    ref_s = _median(lambda: reference_step(ref_trainer, ref_obj, ref_pool, 0), options.reference_repeats)
    return {
        "mechanism": cfg.privacy.mechanism,
        "ours_step_s": ours_s,
        "reference_step_s": ref_s,
        "ratio": ref_s / ours_s,
        "reference_tokens_per_sweep": token_counts(ref_pool),
    }


def _sweep(config, overrides, loaded: LoadedModel, key: str, values, repeats: int) -> dict[str, list]:
    trainers = [Trainer(load_config(config, [*overrides, f"{key}={v}"]), loaded=loaded) for v in values]
    for trainer in trainers:
        trainer.step(0)  # warm-up
    times = interleaved({i: stepper(tr, first=1) for i, tr in enumerate(trainers)}, repeats)
    return {"key": key, "values": list(values), "step_s": [times[i] for i in range(len(values))]}


def _sweep_subsets(trainer: Trainer, values, repeats: int) -> dict[str, list]:
    """Step time over M on ONE trainer (same model, pool tensors and caches): only the candidate subsets,
    the mechanism and the ledger are swapped, so the timing isolates what M changes."""
    cfg = trainer.cfg
    parts = {}
    for m in values:
        subsets = build_subsets(trainer.subsets.n, m, np.random.default_rng(m))
        mechanism = type(trainer.mechanism)(Secret(0, m), np.random.default_rng(0))
        releases = cfg.train.steps * cfg.train.directions
        budget = cfg.privacy.budget if cfg.privacy.mechanism == "paczero-mi" else None
        parts[m] = (subsets, mechanism, PacLedger(m, releases, budget, cfg.privacy.budget_schedule))
    counter = iter(range(1, 10**9))

    def step_with(m: int) -> Callable[[], Any]:
        def run() -> Any:
            trainer.subsets, trainer.mechanism, trainer.ledger = parts[m]
            return trainer.step(next(counter))

        return run

    saved = (trainer.subsets, trainer.mechanism, trainer.ledger)
    for m in values:
        step_with(m)()  # warm-up
    times = interleaved({m: step_with(m) for m in values}, repeats)
    trainer.subsets, trainer.mechanism, trainer.ledger = saved
    return {"key": "privacy.subsets", "values": list(values), "step_s": [times[m] for m in values]}


def check_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target the run can check: its value, threshold and whether it is met."""
    values: dict[str, float] = {}
    track = out["config"]["track"]
    for name, step in out["steps"].items():
        if name in ("paczero-zpl", "paczero-mi", "mezo"):
            key = f"step / 2 forwards ({track})"
            values[key] = max(values.get(key, 0.0), step["ratio_to_two_forwards"])
    if "reference" in out:
        values["reference / ours"] = out["reference"]["ratio"]
    if "memory" in out:
        values["train peak / inference peak"] = out["memory"]["ratio"]
    if "bookkeeping" in out and out["steps"]:
        step_s = statistics.median(s["step_s"] for s in out["steps"].values())
        values["privacy bookkeeping / step"] = max(b["seconds"] for b in out["bookkeeping"].values()) / step_s
    if "trunk" in out:
        values.update(trunk_target_values(out["trunk"]))
    if "sweep_m" in out:
        values["step(M max) / step(M min)"] = out["sweep_m"]["max_over_min"]
    checks = []
    for name, value in values.items():
        op, threshold = TARGETS[name]
        met = value <= threshold if op == "<=" else value >= threshold if op == ">=" else value < threshold
        checks.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": bool(met)})
    return checks


# ----------------------------------------------------------------------------------------------------------
# Report


def markdown(out: dict[str, Any]) -> str:
    """The result as markdown tables: setup, timings, memory, sweeps, targets."""
    c, m = out["config"], out["machine"]
    lines = [
        f"**{c['model']}** ({c['track']}, {c['dtype']}, {c['trainable_parameters']:,} trainable), task "
        f"{c['task']}, N = {c['pool_size']}, M = {c['subsets']}, K = {c['directions']}, micro-batch "
        f"{c['micro_batch_size']}, median of {c['repeats']}",
        f"machine: {m['processor']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, "
        f"load {', '.join(f'{x:.2f}' for x in m['load_average'])}; {m['date']}; torch {m['torch']}, "
        f"transformers {m['transformers']}" + (f"; GPU {m['cuda']}" if m["cuda"] else ""),
        "",
        "| measurement | seconds | ratio to 2 × forward | real tokens/s |",
        "|---|---|---|---|",
        f"| bare forward over the step's batch | {out['forward_s']:.3f} | 0.5 | "
        f"{out['tokens_per_sweep']['real'] / out['forward_s']:,.0f} |",
    ]
    for name, s in out["steps"].items():
        lines.append(
            f"| step, {name} | {s['step_s']:.3f} | {s['ratio_to_two_forwards']:.3f} | "
            f"{s['real_tokens_per_s']:,.0f} |"
        )
    if "reference" in out:
        r = out["reference"]
        lines.append(
            f"| reference protocol step, {r['mechanism']} | {r['reference_step_s']:.3f} | "
            f"{r['reference_step_s'] / (2 * out['forward_s']):.3f} | "
            f"{2 * out['tokens_per_sweep']['real'] / r['reference_step_s']:,.0f} |"
        )
        lines.append(
            f"\nreference / ours = {r['ratio']:.2f} (ours {r['ours_step_s']:.3f} s); tokens per sweep "
            f"ours {out['tokens_per_sweep']['with_padding']:,} (real {out['tokens_per_sweep']['real']:,}), "
            f"reference {r['reference_tokens_per_sweep']['with_padding']:,}"
        )
    if "trunk" in out:
        lines += trunk_markdown(out["trunk"])
    if "bookkeeping" in out:
        lines.append(
            "\nprivacy bookkeeping per release at M = 128, N = 1000: "
            + ", ".join(f"{k} {v['seconds'] * 1e3:.3f} ms" for k, v in out["bookkeeping"].items())
        )
    if "memory" in out:
        mem = out["memory"]
        inf, step = mem["inference"], mem["step"]
        lines += [
            "",
            "| memory | after load (MiB) | peak (MiB) |",
            "|---|---|---|",
            *(
                f"| {label} | {ph['baseline_rss_bytes'] / MIB:,.0f} | {ph[mem['metric']] / MIB:,.0f} |"
                for label, ph in (("inference (2 sweeps)", inf), ("training step", step))
            ),
            f"\npeak ratio ({mem['metric']}) {mem['ratio']:.3f}"
            + (
                f"; increment over the loaded model {mem['increment_ratio']:.3f}"
                if "increment_ratio" in mem
                else ""
            ),
        ]
    for sweep in ("sweep_n", "sweep_m"):
        if sweep in out:
            s = out[sweep]
            lines += ["", f"| {s['key']} | " + " | ".join(map(str, s["values"])) + " |"]
            lines += ["|---" * (len(s["values"]) + 1) + "|"]
            lines += ["| step s | " + " | ".join(f"{t:.3f}" for t in s["step_s"]) + " |"]
            if "fit" in s:
                f = s["fit"]
                lines.append(
                    f"\nlinear fit: {f['slope_s_per_example'] * 1e3:.4f} ms per example + "
                    f"{f['intercept_s']:.4f} s, R² = {f['r2']:.4f}, largest residual "
                    f"{f['max_relative_residual']:.1%}"
                )
    lines += ["", "| target | value | threshold | met |", "|---|---|---|---|"]
    for t in out["targets"]:
        lines.append(
            f"| {t['target']} | {t['value']:.4g} | {t['op']} {t['threshold']} | "
            f"{'yes' if t['met'] else 'NO'} |"
        )
    lines += [f"\n{n}" for n in out["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # one memory phase in a fresh process: python -m paczero.bench PHASE '[config, overrides, threads]'
    config_file, config_overrides, n_threads = json.loads(sys.argv[2])
    torch.set_num_threads(n_threads)
    print(json.dumps(memory_phase(config_file, config_overrides, sys.argv[1])))
