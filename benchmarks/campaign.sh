#!/bin/sh
# The SmolLM2 SST-2 campaign (docs/results.md, "Campaign plan"): three sweeps, each resumable (a rerun skips
# the cells that finished), then one table per sweep. Usage: sh benchmarks/campaign.sh [OUTPUT_DIR]
set -eu
out="${1:-runs/campaign}"
for sweep in main all-layers subsets; do
  paczero sweep "configs/replication/campaign/sweep-$sweep.yaml" --output-dir "$out/$sweep"
  paczero sweep "configs/replication/campaign/sweep-$sweep.yaml" --output-dir "$out/$sweep" \
    --aggregate-only > "$out/$sweep/table.md"
done
