"""Unanimity rate of the candidate-subset signs against the public minibatch size, on a tiny model.

Two measurements on the synthetic sentiment task (tiny OPT, LoRA), all from the library's own code paths:

1. *static*: at θ_0, per-example estimates g over the whole pool for R random directions; for each batch
   size, R public minibatches drawn by ``Trainer.step_batch`` (the data generator and its redraw rule);
   the fraction of (direction, batch) pairs on which all M subset means over subset ∩ batch agree in sign.
2. *training*: a PACZero-ZPL run per batch size; the unanimity rate along its trajectory, the best dev
   accuracy, and the wall time per step (two forward sweeps of the batch).

    .venv/bin/python benchmarks/unanimity_vs_batch.py            # the table in docs/tasks.md
    .venv/bin/python benchmarks/unanimity_vs_batch.py --help
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from paczero.config import load_config
from paczero.mechanisms.base import StepInput
from paczero.mechanisms.clipping import clip
from paczero.trainer import Trainer
from paczero.zo import two_point_estimate


def run_config(args: argparse.Namespace, batch_size: int | None, seed: int, steps: int):
    return load_config(
        None,
        [
            "task.name=synthetic-sentiment",
            f"task.pool_size={args.pool}",
            f"task.dev_size={args.dev}",
            "task.test_size=0",
            f"task.data_seed={seed}",
            "model.name=tiny-opt",
            "model.track=lora",
            "privacy.mechanism=paczero-zpl",
            f"privacy.subsets={args.subsets}",
            f"train.batch_size={'null' if batch_size is None else batch_size}",
            f"train.steps={steps}",
            f"train.lr={args.lr}",
            "train.clip=null",
            f"train.eval_every={max(1, steps // 4)}",
            "train.select_by=dev_accuracy",
            f"train.seed={seed}",
            "train.micro_batch_size=128",
            "train.progress=false",
        ],
    )


def pool_estimates(trainer: Trainer, directions: int, seed: int) -> np.ndarray:
    """Per-example estimates g over the whole pool at θ_0 for ``directions`` public seeds, shape (R, N)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    eps, rows = trainer.cfg.train.zo_eps, []
    for _ in range(directions):
        s = int(rng.integers(0, 2**63 - 1))
        trainer.directions.apply([(s, eps)])
        plus = trainer.objective.losses(trainer.loaded.model, trainer.pool)
        trainer.directions.apply([(s, -2 * eps)])
        minus = trainer.objective.losses(trainer.loaded.model, trainer.pool)
        trainer.directions.apply([(s, eps)])
        rows.append(clip(two_point_estimate(plus, minus, eps).g, trainer.cfg.train.clip)[0])
    return np.stack(rows)


def static_rate(args: argparse.Namespace, batch_size: int | None, g: np.ndarray, seed: int) -> float:
    trainer = Trainer(run_config(args, batch_size, seed, 1))
    flags = []
    for g_pool in g:
        rows, _ = trainer.step_batch()
        values = g_pool if rows is None else g_pool[rows]
        flags.append(StepInput.from_estimates(values, trainer.subsets, rows).unanimous)
    return float(np.mean(flags))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=512, help="N, the training pool")
    parser.add_argument("--dev", type=int, default=128)
    parser.add_argument("--subsets", type=int, default=16, help="M, candidate subsets")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--directions", type=int, default=200, help="R, directions for the static rate")
    parser.add_argument("--steps", type=int, default=150, help="T of each training run")
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and public seeds")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for seed in args.seeds:
        base = Trainer(run_config(args, None, seed, 1))
        g = pool_estimates(base, args.directions, seed)
        for b in args.batch_sizes:
            size = None if b >= args.pool else b
            trainer = Trainer(run_config(args, size, seed, args.steps))
            summary = trainer.run()
            rows.append(
                {
                    "seed": seed,
                    "batch": b,
                    "static_unanimity": static_rate(args, size, g, seed),
                    "training_unanimity": summary["privacy"]["unanimity_rate"],
                    "dev_accuracy_start": summary["dev"]["start"]["accuracy"],
                    "dev_accuracy_best": max(h["accuracy"] for h in summary["dev"]["history"]),
                    "seconds_per_step": sum(trainer.timing["step_seconds"])
                    / len(trainer.timing["step_seconds"]),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    print(
        f"\nN = {args.pool}, M = {args.subsets}, R = {args.directions} directions (static), "
        f"T = {args.steps} ZPL steps at lr {args.lr} (training), seeds {args.seeds}: mean over seeds\n"
    )
    print("| batch | unanimity at θ_0 | unanimity in training | best dev accuracy (start) | s/step |")
    print("|---:|---:|---:|---:|---:|")
    for b in args.batch_sizes:
        sel = [r for r in rows if r["batch"] == b]

        def mean(key: str, sel=sel) -> float:
            return float(np.mean([r[key] for r in sel]))

        print(
            f"| {b}{' (pool)' if b >= args.pool else ''} | {mean('static_unanimity'):.3f} "
            f"| {mean('training_unanimity'):.3f} | {mean('dev_accuracy_best'):.3f} "
            f"({mean('dev_accuracy_start'):.3f}) | {mean('seconds_per_step'):.3f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
