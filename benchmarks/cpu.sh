#!/usr/bin/env bash
# The CPU measurements of docs/benchmarks.md, one command each (run from the repository root).
# Results go to benchmarks/results/ (JSON + markdown). --threads 1 keeps timings steady on a busy machine.
set -euo pipefail
mkdir -p benchmarks/results
SST2="--set task.name=sst2 --set privacy.subsets=128"

# tiny model, N = 1000: every target, the N sweep (linear fit) and the M sweep (flatness)
for track in lora full; do
  .venv/bin/paczero bench $SST2 --set model.name=tiny-opt --set model.track=$track --set task.pool_size=1000 \
    --threads 1 --repeats 5 --sweep-n 125,250,500,1000 --sweep-m 2,16,128,1024 \
    --json benchmarks/results/tiny-$track.json --markdown benchmarks/results/tiny-$track.md
done

# SmolLM2-135M: reference protocol and peak memory at N = 64 (each reference sweep scores 2 × 64 sequences
# of 128 tokens with full-vocabulary logits), step / 2 forwards at the paper's N = 1000
S="$SST2 --set model.name=smollm2-135m --threads 1 --repeats 1 --mechanisms paczero-zpl"
.venv/bin/paczero bench $S --set model.track=lora --set task.pool_size=64 \
  --json benchmarks/results/smol-lora-ref.json --markdown benchmarks/results/smol-lora-ref.md
.venv/bin/paczero bench $S --set model.track=full --set task.pool_size=64 --no-reference \
  --json benchmarks/results/smol-full-mem.json --markdown benchmarks/results/smol-full-mem.md
for track in lora full; do
  .venv/bin/paczero bench $S --set model.track=$track --set task.pool_size=1000 --no-reference --no-memory \
    --json benchmarks/results/smol-$track-1000.json --markdown benchmarks/results/smol-$track-1000.md
done

# forward time against the micro-batch size (the CPU rule of train.micro_batch_size: auto)
.venv/bin/python benchmarks/micro_batch.py --model tiny-opt --pool 1000

# low-precision drift of the ±εz round trip over 1000 steps
.venv/bin/python benchmarks/drift.py --steps 1000 --json benchmarks/results/drift.json
