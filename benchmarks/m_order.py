"""Step time against M with the trainers timed in two orders: separates an effect of M from one of the order.

.venv/bin/python benchmarks/m_order.py
"""

from __future__ import annotations

import torch

from paczero.bench.step import BENCH_OVERRIDES
from paczero.bench.timing import interleaved, stepper
from paczero.config import load_config
from paczero.models.loaders import load_model
from paczero.trainer import Trainer

BASE = [
    "task.name=sst2",
    "model.name=tiny-opt",
    "task.pool_size=1000",
    *BENCH_OVERRIDES,
]


def main() -> None:
    torch.set_num_threads(1)
    loaded = load_model(load_config(None, BASE).model)
    for order in ([1024, 2, 128], [2, 1024, 128]):
        trainers = {
            m: Trainer(load_config(None, [*BASE, f"privacy.subsets={m}"]), loaded=loaded) for m in order
        }
        for trainer in trainers.values():
            trainer.step(0)
        times = interleaved({m: stepper(t, first=1) for m, t in trainers.items()}, 5)
        print("order", order, "step s:", {m: round(s, 4) for m, s in times.items()})


if __name__ == "__main__":
    main()
