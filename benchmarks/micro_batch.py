"""Forward time over a pool against the micro-batch size (the CPU rule of ``paczero.autobatch``).

.venv/bin/python benchmarks/micro_batch.py --model tiny-opt --pool 1000 --sizes 4,8,16,32,64,128,256
"""

from __future__ import annotations

import argparse
import time

import torch

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.registry import build_objective, load_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-opt")
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--sizes", default="4,8,16,32,64,128,256")
    parser.add_argument("--data-dir", default=None, help="SST-2 folder (default: the shipped copy)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(ModelConfig(name=args.model, track="lora"))
    task = TaskConfig(name="sst2", data_dir=args.data_dir, pool_size=args.pool, dev_size=0, test_size=0)
    pool = load_splits(task).pool
    print("| micro-batch | forward s (best of 2) |\n|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        objective = build_objective(task, loaded.tokenizer, size)
        data = objective.prepare(pool, torch.device("cpu"))
        objective.losses(loaded.model, data)  # warm-up
        best = min(_timed(lambda o=objective, d=data: o.losses(loaded.model, d)) for _ in range(2))
        print(f"| {size} | {best:.3f} |")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
