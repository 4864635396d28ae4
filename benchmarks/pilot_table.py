"""The pilot's table: test accuracy per method (mean and 95% t-interval over seeds) and the paired
differences between methods seed by seed, read from the runs' public summaries; optionally a plot.

Usage: python benchmarks/pilot_table.py RUNS_DIR [--plot PNG] [--copy-summaries DIR]
(RUNS_DIR may also be a directory of kept summaries, e.g. benchmarks/results/pilot.)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
from scipy import stats

CELL = re.compile(r"config=(?P<method>[^,]+),task\.data_seed=(?P<seed>\d+)")
ORDER = ("zero-shot", "mezo", "zpl")
LABELS = {"zero-shot": "zero-shot", "mezo": "MeZO (no privacy)", "zpl": "PACZero-ZPL (I = 0)"}
PAIRS = (("zpl", "mezo"), ("zpl", "zero-shot"), ("mezo", "zero-shot"))


def read_runs(root: Path) -> dict[str, dict[int, dict]]:
    """method → seed → summary, for every finished cell under ``root`` (run directories, or the summaries
    kept by ``--copy-summaries``, named after their cells)."""
    runs: dict[str, dict[int, dict]] = {}
    found = [(p.parent.name, p) for p in root.glob("*/summary.json")] + [
        (p.stem, p) for p in root.glob("*.json")
    ]
    for name, summary in sorted(found):
        match = CELL.fullmatch(name)
        if match:
            runs.setdefault(match["method"], {})[int(match["seed"])] = json.loads(summary.read_text())
    return runs


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan for fewer than two values)."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else float("nan"), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def accuracy(summary: dict) -> float:
    return float(summary["test"]["accuracy"])


def paired(runs: dict[str, dict[int, dict]], a: str, b: str) -> tuple[list[int], list[float]]:
    """Seeds both methods ran and the differences a − b in points. Zero-shot is run once: its test set (all
    872 validation examples) and its model are the same for every seed, so its one value pairs with each."""
    ra, rb = runs.get(a, {}), runs.get(b, {})
    if b == "zero-shot" and len(rb) == 1:
        rb = dict.fromkeys(ra, next(iter(rb.values())))
    seeds = sorted(set(ra) & set(rb))
    return seeds, [100 * (accuracy(ra[s]) - accuracy(rb[s])) for s in seeds]


def table(runs: dict[str, dict[int, dict]]) -> str:
    lines = [
        "| method | seeds | test accuracy, mean ± 95% CI | per seed |",
        "|---|---|---|---|",
    ]
    for method in ORDER:
        cells = runs.get(method, {})
        accs = [accuracy(cells[s]) for s in sorted(cells)]
        mean, half = interval(accs)
        per_seed = ", ".join(f"{s}: {accuracy(cells[s]):.3f}" for s in sorted(cells))
        spread = "" if np.isnan(half) else f" ± {half:.3f}"
        lines.append(f"| {LABELS[method]} | {len(accs)} | {mean:.3f}{spread} | {per_seed} |")
    lines += ["", "| paired difference | seeds | mean ± 95% CI (points) | per seed |", "|---|---|---|---|"]
    for a, b in PAIRS:
        seeds, diffs = paired(runs, a, b)
        mean, half = interval(diffs)
        per_seed = ", ".join(f"{s}: {d:+.1f}" for s, d in zip(seeds, diffs, strict=True))
        spread = "" if np.isnan(half) else f" ± {half:.1f}"
        lines.append(f"| {LABELS[a]} − {LABELS[b]} | {len(seeds)} | {mean:+.1f}{spread} | {per_seed} |")
    zpl = runs.get("zpl", {})
    if zpl:
        rates = [s["privacy"]["unanimity_rate"] for s in zpl.values()]
        lines += ["", f"ZPL unanimity rate: {np.mean(rates):.2f} (range {min(rates):.2f}–{max(rates):.2f})."]
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, method in enumerate(ORDER):
        cells = runs.get(method, {})
        accs = [accuracy(cells[s]) for s in sorted(cells)]
        if not accs:
            continue
        mean, half = interval(accs)
        left.errorbar([i], [mean], yerr=[0 if np.isnan(half) else half], fmt="o", capsize=6, color="black")
        left.scatter(np.full(len(accs), i + 0.15), accs, s=14, alpha=0.6)
        for s in sorted(cells):
            history = cells[s]["dev"]["history"]
            steps = [h["step"] for h in history if "accuracy" in h]
            right.plot(
                steps,
                [h["accuracy"] for h in history if "accuracy" in h],
                color=f"C{i}",
                alpha=0.6,
                label=LABELS[method] if s == min(cells) else None,
            )
    left.set_xticks(range(len(ORDER)), [LABELS[m] for m in ORDER], fontsize=8)
    left.set_ylabel("test accuracy (872 examples)")
    left.set_title("mean ± 95% CI, dots: seeds", fontsize=9)
    right.set_xlabel("step")
    right.set_ylabel("dev accuracy (300 examples)")
    right.set_title("dev curves, one line per seed", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--copy-summaries", type=Path, help="keep each cell's summary.json here")
    args = parser.parse_args()
    runs = read_runs(args.runs)
    print(table(runs), end="")
    if args.plot:
        plot(runs, args.plot)
    if args.copy_summaries:
        for summary in args.runs.glob("*/summary.json"):
            target = args.copy_summaries / f"{summary.parent.name}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(summary, target)


if __name__ == "__main__":
    main()
