"""The campaign's table, summary.json and plots, from the per-cell public summaries it kept.

python benchmarks/campaign_table.py [--results benchmarks/results/campaign] [--images docs/images]

Writes RESULTS/summary.json (test accuracy per seed, mean and 95 % t-interval half-width per method, the M
study) and RESULTS/table.md (the table with paired differences against MeZO), and three plots: test accuracy
per method, the dev curves, and the M study. Cells that have not finished are simply absent: every row says
how many seeds it holds.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CELL = re.compile(r"(?P<method>[^,]+),lr=(?P<lr>[^,]+),seed=(?P<seed>\d+)(,M=(?P<m>\d+))?(,(?P<tag>.+))?")
EXPLORED = {"T=3000": "3000 steps", "K=4": "K = 4 directions", "mlp": "LoRA on q, o and the MLP"}
ORDER = ("first-order", "mezo", "paczero-zpl", "paczero-mi", "paczero-mi-0.05", "dpzero", "dpzero-eps0.5")
LABELS = {
    "first-order": "first-order (backprop, no privacy)",
    "mezo": "MeZO (no privacy)",
    "paczero-zpl": "PACZero-ZPL (I = 0)",
    "paczero-mi": "PACZero-MI (0.33 nats)",
    "paczero-mi-0.05": "PACZero-MI (0.05 nats)",
    "dpzero": "DPZero (ε matched to MI 0.33)",
    "dpzero-eps0.5": "DPZero (ε = 0.5)",
}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (nan below two values)."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else float("nan")), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def read_cells(results: Path) -> list[dict]:
    cells = []
    for path in sorted((results / "cells").glob("*.json")):
        match = CELL.fullmatch(path.stem)
        if match:
            summary = json.loads(path.read_text())
            m = int(match["m"]) if match["m"] else 2
            cells.append(
                {
                    "method": match["method"],
                    "lr": float(match["lr"]),
                    "seed": int(match["seed"]),
                    "M": m,
                    "tag": match["tag"] or "",
                    "summary": summary,
                }
            )
    return cells


def picked(cell: dict, choice: dict | None) -> bool:
    return choice is not None and np.isclose(cell["lr"], choice["lr"]) and cell["tag"] == choice["tag"]


def main_runs(cells: list[dict], chosen: dict[str, dict]) -> dict[str, dict[int, dict]]:
    """method -> seed -> summary, for the chosen grid point at M = 2."""
    runs: dict[str, dict[int, dict]] = {}
    for c in cells:
        if c["M"] == 2 and picked(c, chosen.get(c["method"])):
            runs.setdefault(c["method"], {})[c["seed"]] = c["summary"]
    return runs


def pair(a: dict[int, dict], b: dict[int, dict]) -> dict:
    """Test accuracy of a minus b on their common data seeds: mean, 95 % half-width and n."""
    common = sorted(set(a) & set(b))
    mean, h = interval([a[s]["test"]["accuracy"] - b[s]["test"]["accuracy"] for s in common])
    return {"n": len(common), "mean": mean, "ci95": h}


def points(p: dict | None) -> str:
    """A paired difference in points of accuracy, with its n ("—" when there is nothing to pair)."""
    if not p or not p["n"]:
        return "—"
    return f"{100 * p['mean']:+.1f} ± {100 * p['ci95']:.1f} pts ({p['n']})"


def explored(cells: list[dict], runs: dict[str, dict[int, dict]]) -> list[dict]:
    """The variants tried besides the main runs: test accuracy per seed, paired against the same method's
    main runs, and against MeZO on the same variant at the learning rate with seed 0's lowest dev loss."""
    groups: dict[tuple[str, str, float], dict[int, dict]] = {}
    for c in cells:
        if c["tag"] in EXPLORED:
            groups.setdefault((c["tag"], c["method"], c["lr"]), {})[c["seed"]] = c["summary"]
    rows = []
    for (tag, method, lr), mine in sorted(
        groups.items(), key=lambda g: (list(EXPLORED).index(g[0][0]), g[0][1:])
    ):
        mezo = [g for (t, m, _), g in groups.items() if (t, m) == (tag, "mezo") and 0 in g]
        best = min(mezo, key=lambda g: g[0]["dev"]["selected"]["loss"], default={})
        seeds = sorted(mine)
        accs = [mine[s]["test"]["accuracy"] for s in seeds]
        mean, h = interval(accs)
        rows.append(
            {
                "variant": tag,
                "method": method,
                "lr": lr,
                "data_seeds": seeds,
                "seeds": accs,
                "mean": mean,
                "ci95": h,
                "paired_vs_main": pair(mine, runs.get(method, {})),
                "paired_vs_mezo_same_variant": pair(mine, best) if method != "mezo" else None,
            }
        )
    return rows


def m_study(cells: list[dict], lr: float) -> list[dict]:
    rows = []
    zpl = [c for c in cells if c["method"] == "paczero-zpl" and not c["tag"] and np.isclose(c["lr"], lr)]
    for m in sorted({c["M"] for c in zpl}):
        at_m = sorted((c for c in zpl if c["M"] == m and c["seed"] in (0, 1, 2)), key=lambda c: c["seed"])
        accs = [c["summary"]["test"]["accuracy"] for c in at_m]
        mean, h = interval(accs)
        unanimity = [c["summary"]["privacy"]["unanimity_rate"] for c in at_m]
        rows.append(
            {
                "M": m,
                "data_seeds": [c["seed"] for c in at_m],
                "seeds": accs,
                "mean": mean,
                "ci95": h,
                "unanimity": float(np.mean(unanimity)) if unanimity else float("nan"),
            }
        )
    return rows


def summarize(results: Path) -> tuple[dict, dict[str, dict[int, dict]]]:
    lr = json.loads((results / "lr.json").read_text())
    zero = json.loads((results / "zero-shot.json").read_text())
    cells = read_cells(results)
    runs = main_runs(cells, lr["chosen"])
    methods = {}
    chosen = {m: {"lr": c["lr"], "tag": c["tag"]} for m, c in lr["chosen"].items()}
    for method in ORDER:
        seeds = runs.get(method, {})
        accs = [seeds[s]["test"]["accuracy"] for s in sorted(seeds)]
        mean, h = interval(accs)
        loss, loss_h = interval([seeds[s]["test"]["loss"] for s in sorted(seeds)])
        methods[method] = {
            "data_seeds": sorted(seeds),
            "seeds": accs,
            "mean": mean,
            "ci95": h,
            "test_loss": {"mean": loss, "ci95": loss_h},
            **chosen.get(method, {}),
        }
    summary = {
        "steps": next(iter(runs["mezo"].values()))["steps_planned"],
        "pool_size": 256,
        "test_size": 872,
        "track": "SmolLM2-135M-Instruct, LoRA r = 8 on q_proj and o_proj of the top block "
        "(29 blocks cached); first-order: 200 full-batch Adam epochs on the same parameters; each method's "
        "learning rate (and DPZero's clip C, as tag clip=C; otherwise C = 25) chosen on seed 0's dev loss",
        "zero_shot": {"accuracy": zero["test"]["accuracy"], "loss": zero["test"]["loss"]},
        "methods": methods,
        "m_study": m_study(cells, lr["chosen"]["paczero-zpl"]["lr"]),
        "explored": explored(cells, runs),
        "lr_grid": lr["grid"],
    }
    return summary, runs


def paired(runs: dict[str, dict[int, dict]], a: str, b: str) -> tuple[float, float, int]:
    result = pair(runs.get(a, {}), runs.get(b, {}))
    return result["mean"], result["ci95"], result["n"]


def markdown(summary: dict, runs: dict[str, dict[int, dict]]) -> str:
    z = summary["zero_shot"]["accuracy"]
    lines = [
        f"T = {summary['steps']} steps, N = 256, test = all 872 validation examples; zero-shot {z:.4f} "
        f"(test loss {summary['zero_shot']['loss']:.4f}).",
        "",
        "| method | lr | seeds | test accuracy (mean ± 95 % CI) | − zero-shot | paired − MeZO (n) "
        "| test loss | unanimity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in ORDER:
        row = summary["methods"][method]
        if not row["seeds"]:
            lines.append(f"| {LABELS[method]} | {row.get('lr', '—')} | 0 | not run | | | | |")
            continue
        d, h, n = paired(runs, method, "mezo")
        vs = "—" if method == "mezo" else f"{100 * d:+.1f} ± {100 * h:.1f} pts ({n})"
        pac = method.startswith("paczero")  # unanimity is what PAC releases turn on; others leave it unused
        unan = [s.get("privacy", {}).get("unanimity_rate") for s in runs[method].values()] if pac else []
        unan = [u for u in unan if u is not None]
        u = f"{np.mean(unan):.2f}" if unan else "—"
        acc = f"{row['mean']:.4f} ± {row['ci95']:.4f}"
        gain = f"{100 * (row['mean'] - z):+.1f} pts"
        lr = f"{row['lr']:g}" + (f", {row['tag'].replace('=', ' ')}" if row["tag"] else "")
        loss = f"{row['test_loss']['mean']:.4f} ± {row['test_loss']['ci95']:.4f}"
        lines.append(
            f"| {LABELS[method]} | {lr} | {len(row['seeds'])} | {acc} | {gain} | {vs} | {loss} | {u} |"
        )
    lines += ["", "| M | seeds | test accuracy (mean ± 95 % CI) | unanimity |", "|---|---|---|---|"]
    for r in summary["m_study"]:
        lines.append(
            f"| {r['M']} | {len(r['seeds'])} | {r['mean']:.4f} ± {r['ci95']:.4f} | {r['unanimity']:.3f} |"
        )
    lines += [
        "",
        "| variant | method | lr | seeds | test accuracy (mean ± 95 % CI) | − zero-shot "
        "| paired − main run (n) | paired − MeZO, same variant (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["explored"]:
        lines.append(
            f"| {EXPLORED[r['variant']]} | {LABELS[r['method']]} | {r['lr']:g} | {len(r['seeds'])} "
            f"| {r['mean']:.4f} ± {r['ci95']:.4f} | {100 * (r['mean'] - z):+.1f} pts "
            f"| {points(r['paired_vs_main'])} | {points(r['paired_vs_mezo_same_variant'])} |"
        )
    return "\n".join(lines) + "\n"


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_test(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [m for m in ORDER if summary["methods"][m]["seeds"]]
    for i, m in enumerate(names):
        row = summary["methods"][m]
        ax.scatter([i] * len(row["seeds"]), row["seeds"], s=14, alpha=0.6, color="C0")
        ax.errorbar(
            i + 0.18,
            row["mean"],
            yerr=0 if np.isnan(row["ci95"]) else row["ci95"],
            fmt="o",
            color="C3",
            capsize=4,
        )
    ax.axhline(summary["zero_shot"]["accuracy"], color="grey", ls="--", lw=1, label="zero-shot")
    ax.set_xticks(range(len(names)), [LABELS[m].replace(" (", "\n(") for m in names], fontsize=7)
    ax.set_ylabel("test accuracy (872)")
    ax.set_title("SST-2, SmolLM2-135M, top-block LoRA: seeds (blue), mean ± 95 % CI (red)", fontsize=9)
    ax.legend(fontsize=8)
    save(fig, path)


def plot_dev(runs: dict[str, dict[int, dict]], cells: list[dict], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method in ORDER:
        curves = [s["dev"]["history"] for s in runs.get(method, {}).values()]
        if not curves:
            continue
        steps = [h["step"] for h in curves[0]]
        loss = np.mean([[h["loss"] for h in c][: len(steps)] for c in curves if len(c) >= len(steps)], axis=0)
        left.plot(steps, loss, label=f"{LABELS[method]} ({len(curves)} seeds)")
    left.set_xlabel("step (first-order: epoch)")
    left.set_ylabel("dev loss (mean over seeds)")
    left.legend(fontsize=6)
    mezo = [c for c in cells if c["method"] == "mezo" and c["seed"] == 0 and c["tag"] in ("", "T=3000")]
    for c in sorted(mezo, key=lambda c: (c["tag"], c["lr"])):
        hist = c["summary"]["dev"]["history"]
        steps = f", {c['tag'].replace('T=', '')} steps" if c["tag"] else ""
        right.plot([h["step"] for h in hist], [h["loss"] for h in hist], label=f"MeZO lr {c['lr']:g}{steps}")
    right.set_xlabel("step")
    right.set_ylabel("dev loss (seed 0)")
    right.set_title("MeZO's dev curve: the lr grid and a longer run", fontsize=9)
    right.legend(fontsize=7)
    save(fig, path)


def plot_m(summary: dict, path: Path) -> None:
    rows = [r for r in summary["m_study"] if r["seeds"]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ms = [r["M"] for r in rows]
    ax.errorbar(
        ms,
        [r["mean"] for r in rows],
        yerr=[0 if np.isnan(r["ci95"]) else r["ci95"] for r in rows],
        fmt="o-",
        capsize=4,
        label="test accuracy",
    )
    ax.axhline(summary["zero_shot"]["accuracy"], color="grey", ls="--", lw=1, label="zero-shot")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (candidate subsets)")
    ax.set_ylabel("test accuracy")
    twin = ax.twinx()
    twin.plot(ms, [r["unanimity"] for r in rows], "s--", color="C1", label="unanimity")
    twin.set_ylabel("unanimous steps", color="C1")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("PACZero-ZPL against M", fontsize=9)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/campaign")
    parser.add_argument("--images", type=Path, default=ROOT / "docs/images")
    args = parser.parse_args()
    summary, runs = summarize(args.results)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary, runs)
    (args.results / "table.md").write_text(table)
    plot_test(summary, args.images / "campaign-test.png")
    plot_dev(runs, read_cells(args.results), args.images / "campaign-dev.png")
    plot_m(summary, args.images / "campaign-m.png")
    print(table)


if __name__ == "__main__":
    main()
