#!/bin/sh
# The SmolLM2 pilot (docs/results.md, "Pilot"): zero-shot, MeZO and PACZero-ZPL at 5 data seeds. The
# trained cells run seed by seed (the zero-shot ones last), so a run stopped early leaves paired results;
# rerunning it skips the finished cells (an unfinished one starts again). Then the table with 95% intervals
# and paired differences, and its plot.
# Usage: sh benchmarks/pilot.sh [OUTPUT_DIR]
set -eu
out="${1:-runs/pilot}"
sweep=configs/replication/pilot/sweep.yaml
paczero sweep "$sweep" --output-dir "$out" --emit \
  | awk -F'task.data_seed=' '{print (index($0, "zero-shot") > 0) "\t" $NF "\t" $0}' \
  | sort -s -n -k1,1 -k2,2 | cut -f3- \
  | while read -r cell; do sh -c "$cell --overwrite"; done
python benchmarks/pilot_table.py "$out" --plot docs/images/pilot.png --copy-summaries benchmarks/results/pilot > "$out/table.md"
cat "$out/table.md"
