"""Fold the replication runs (configs/replication/, docs/results.md) into one markdown table.

python benchmarks/replication_table.py runs/replication

A run directory may also hold ``test-full.json``, the output of
``paczero eval --run DIR --split test --set task.test_size=872`` (all of SST-2's validation set); its
accuracy is then a column.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from paczero.rundir import read_timing


def fmt(value, spec=".3f"):
    return "—" if value is None else format(value, spec)


def _seconds_per_step(summary: dict, run_dir: Path) -> float | None:
    """Older summaries carried the step time; newer runs keep it in their private timing record."""
    return summary.get("seconds_per_step") or read_timing(run_dir).get("seconds_per_step")


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _follows_majority(steps: Path) -> float | None:
    """Share of non-unanimous directions whose applied update has the sign most candidate subsets gave.

    A fair coin (ZPL) gives about 0.5; the more a release carries, the higher. None for DP (no subsets).
    """
    pairs = [
        (update, q_plus)
        for record in map(json.loads, steps.read_text().splitlines())
        for update, q_plus, unanimous in zip(
            record["update"], record.get("q_plus") or [], record.get("unanimous") or [], strict=False
        )
        if q_plus is not None and not unanimous and q_plus != 0.5
    ]
    return sum((u > 0) == (q > 0.5) for u, q in pairs) / len(pairs) if pairs else None


root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/replication")
columns = [
    "run",
    "data seed",
    "dev loss (start → selected)",
    "dev acc (start → selected)",
    "test acc",
    "test acc (872)",
    "unanimity",
    "follows majority",
    "s/step",
    "MI spent",
    "ε",
]
print("| " + " | ".join([*columns, "attack bound"]) + " |")
print("|" + "---|" * (len(columns) + 1))
full_accuracy = defaultdict(list)  # method -> test accuracy on all 872 validation examples, one per seed
for path in sorted(root.glob("*/summary.json")):
    s = json.loads(path.read_text())
    p = s["privacy"]
    name, seed = path.parent.name.split(",")
    name = name.removeprefix("config=")
    trained = name != "zero-shot"  # its one step at lr 0 only makes the test evaluation run
    start, selected = s["dev"]["start"] or {}, s["dev"]["selected"]
    cells = [
        name,
        seed.split("=")[1],
        f"{fmt(start.get('loss'))} → {fmt(selected.get('loss'))}",
        f"{fmt(start.get('accuracy'))} → {fmt(selected.get('accuracy'))}",
        fmt(s["test"]["accuracy"]),
        fmt(full["test"]["accuracy"] if (full := _read(path.parent / "test-full.json")) else None),
        fmt(p.get("unanimity_rate") if trained and not name.startswith("dp") else None, ".2f"),
        fmt(_follows_majority(path.parent / "steps.jsonl") if trained else None, ".2f"),
        fmt(_seconds_per_step(s, path.parent) if trained else None, ".1f"),
        fmt(p.get("mi_spent"), ".3g"),
        fmt(p.get("epsilon_spent", p.get("epsilon")), ".3g"),
        fmt(p.get("attack_bound"), ".3f"),
    ]
    print("| " + " | ".join(cells) + " |")
    if full:
        full_accuracy[name].append(full["test"]["accuracy"])

if full_accuracy:
    mezo = statistics.mean(full_accuracy["mezo"]) if "mezo" in full_accuracy else None
    print("\n| method | seeds | test acc (872), mean ± std | minus MeZO (points) |")
    print("|---|---|---|---|")
    for name, values in sorted(full_accuracy.items()):
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        gap = None if mezo is None else 100 * (mean - mezo)
        print(f"| {name} | {len(values)} | {mean:.3f} ± {std:.3f} | {fmt(gap, '+.1f')} |")
