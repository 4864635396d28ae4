#!/bin/sh
# The SmolLM2 SST-2 campaign (docs/results.md, "Campaign"): each phase on two single-threaded workers, each
# resumable (a rerun skips finished cells). Phase grid: every method's learning-rate grid on seed 0 (DPZero's
# with its clip); then one grid point per method by seed 0's dev loss; phase main: seeds 1-4 of every method,
# interleaved with ZPL's M study (M = 4, 16, 64, 128 at seeds 0-2); phase explore: more steps, K = 4
# directions and LoRA on the MLP as well; then the table, summary.json and plots.
# Usage: sh benchmarks/campaign.sh [OUTPUT_DIR]
set -eu
out="${1:-runs/campaign}"
py="${PYTHON:-python}"
for phase in grid main explore; do
  [ "$phase" = main ] && "$py" benchmarks/campaign.py choose
  "$py" benchmarks/campaign.py run "$phase" --worker 0 --workers 2 --out "$out" &
  "$py" benchmarks/campaign.py run "$phase" --worker 1 --workers 2 --out "$out"
  wait
done
"$py" benchmarks/campaign_table.py
