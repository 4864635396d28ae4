"""Bytes each rank hands to all-reduce per training step, measured by wrapping the collective.

Run under torchrun, e.g.
    OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 benchmarks/comm_volume.py --config CONFIG.yaml
Prints, on rank 0, the bytes per step (payload of every all-reduce) and the per-step wall time.
"""

import argparse
import json
import time

import torch.distributed as dist

import paczero.distributed as pd
from paczero.config import load_config
from paczero.trainer import Trainer

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
parser.add_argument("--set", action="append", default=[])
args = parser.parse_args()

sent = {"bytes": 0, "calls": 0}
all_reduce = dist.all_reduce


def counting_all_reduce(tensor, *a, **kw):
    sent["bytes"] += tensor.numel() * tensor.element_size()
    sent["calls"] += 1
    return all_reduce(tensor, *a, **kw)


pd.dist.all_reduce = counting_all_reduce
trainer = Trainer(load_config(args.config, args.set))
per_step, seconds = [], []
for t in range(trainer.cfg.train.steps):
    before = sent["bytes"]
    start = time.perf_counter()
    trainer.step(t)
    seconds.append(time.perf_counter() - start)
    per_step.append(sent["bytes"] - before)
if trainer.dist.is_main:
    out = {
        "world_size": trainer.dist.world_size,
        "pool": trainer.subsets.n,
        "directions": trainer.cfg.train.directions,
        "all_reduce_bytes_per_step": per_step[-1],
        "all_reduce_calls_per_step": sent["calls"] // len(per_step),
        "seconds_per_step_median": sorted(seconds)[len(seconds) // 2],
    }
    print(json.dumps(out))
pd.shutdown(trainer.dist)
