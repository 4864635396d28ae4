"""The step benchmark: each mechanism's step against two bare forwards and the reference protocol, one run."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from paczero.bench.bookkeeping import bookkeeping_seconds
from paczero.bench.machine import machine
from paczero.bench.memory import measure_memory
from paczero.bench.reference import reference_objective, reference_step
from paczero.bench.sweeps import linear_fit, sweep, sweep_subsets
from paczero.bench.targets import check_targets
from paczero.bench.timing import interleaved, median_time, stepper
from paczero.bench.trunk import trunk_comparison
from paczero.config import RunConfig, load_config
from paczero.mechanisms import get_mechanism
from paczero.models.loaders import LoadedModel, load_model
from paczero.models.trunk import TrunkCachedModel
from paczero.privacy.ledger import Guarantee
from paczero.tasks.classification import PreparedSet
from paczero.trainer import Trainer


def token_counts(data: PreparedSet) -> dict[str, int]:
    """Sequences, real tokens and tokens including padding of one forward sweep over ``data``."""
    return {
        "sequences": sum(mb.input_ids.shape[0] for mb in data.batches),
        "real": sum(int(mb.attention_mask.sum()) for mb in data.batches),
        "with_padding": sum(mb.input_ids.numel() for mb in data.batches),
    }


def _mechanism_overrides(name: str, cfg: RunConfig) -> list[str]:
    extra = [f"privacy.mechanism={name}"]
    if get_mechanism(name).guarantee is Guarantee.MI_BUDGET and cfg.privacy.budget is None:
        extra.append("privacy.budget=0.33")
    return extra


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
        "config": _setup(config, overrides, base, options),
        "tokens_per_sweep": tokens,
        "notes": list(options.notes),
    }
    out["forward_s"], out["steps"] = _step_timings(config, overrides, base, forward, tokens, options)
    if isinstance(base.forward_model, TrunkCachedModel):  # the same step without the trunk cache
        out["trunk"] = trunk_comparison(config, overrides, loaded, base, options.repeats, stepper)
    if options.reference:
        out["reference"] = _reference(config, overrides, cfg, loaded, options)
    if options.bookkeeping:
        out["bookkeeping"] = {
            name: {"seconds": bookkeeping_seconds(name)} for name in ("paczero-zpl", "paczero-mi")
        }
    if options.sweep_n:
        out["sweep_n"] = sweep(config, overrides, loaded, "task.pool_size", options.sweep_n, options.repeats)
        out["sweep_n"]["fit"] = linear_fit(options.sweep_n, out["sweep_n"]["step_s"])
    if options.sweep_m:
        out["sweep_m"] = sweep_subsets(base, options.sweep_m, options.repeats)
        times = out["sweep_m"]["step_s"]
        out["sweep_m"]["max_over_min"] = max(times) / min(times)
    if options.memory:
        del base, forward, pool  # its subprocesses may share this device: free this process's trainer
        gc.collect()
        out["memory"] = measure_memory(config, list(overrides), torch.get_num_threads())
    out["targets"] = check_targets(out)
    return out


def _setup(config: str | None, overrides: list[str], base: Trainer, options: BenchOptions) -> dict[str, Any]:
    """What a result was measured on: the config, the model's size and the run's sizes."""
    cfg = base.cfg
    return {
        "file": config,
        "overrides": list(overrides),
        "task": cfg.task.name,
        "model": cfg.model.name,
        "track": cfg.model.track,
        "dtype": cfg.model.dtype,
        "trainable_parameters": base.loaded.num_trainable(),
        "pool_size": base.subsets.n,
        "subsets": cfg.privacy.subsets,
        "directions": cfg.train.directions,
        "micro_batch_size": base.objective.micro_batch_size,
        "repeats": options.repeats,
    }


def _step_timings(
    config: str | None,
    overrides: list[str],
    base: Trainer,
    forward: Callable[[], None],
    tokens: dict[str, int],
    options: BenchOptions,
) -> tuple[float, dict[str, dict[str, float]]]:
    """The bare forward's time and each mechanism's step time, interleaved; steps against two forwards."""
    trainers = {
        name: Trainer(
            load_config(config, [*overrides, *_mechanism_overrides(name, base.cfg)]), loaded=base.loaded
        )
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
    return forward_s, steps


def _reference(config, overrides, cfg: RunConfig, loaded: LoadedModel, options: BenchOptions) -> dict:
    """Reference-protocol step time against ours, same mechanism, model, data and starting state."""
    ours = Trainer(cfg, loaded=loaded)
    ref_obj = reference_objective(cfg, loaded.tokenizer, ours.objective.micro_batch_size)
    ref_pool = ref_obj.prepare(ours.splits.pool, ours.pool_device)
    ref_trainer = Trainer(load_config(config, list(overrides)), loaded=loaded)
    ours_s = median_time(lambda: ours.step(0), options.reference_repeats)
    ref_s = median_time(lambda: reference_step(ref_trainer, ref_obj, ref_pool, 0), options.reference_repeats)
    return {
        "mechanism": cfg.privacy.mechanism,
        "ours_step_s": ours_s,
        "reference_step_s": ref_s,
        "ratio": ref_s / ours_s,
        "reference_tokens_per_sweep": token_counts(ref_pool),
    }
