"""What ``paczero train`` prints at the end: dev metrics by step, a one-line privacy statement, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dev_table(summary: dict[str, Any]) -> str:
    """Dev loss and primary metric at every evaluation; step 0 is the model before training (zero-shot)."""
    metric, history = summary["primary_metric"], summary["dev"]["history"]
    if not history or "loss" not in history[0]:
        return "no dev set (task.dev_size = 0): nothing to show by step"
    lines = [
        f"dev {metric} by step (step 0 = the model before training, zero-shot):",
        f"  step  {metric:>9}  loss",
    ]
    for row in history:
        mark = "  <- selected" if row["step"] == summary["selected_step"] else ""
        lines.append(f"  {row['step']:>4}  {row.get(metric, float('nan')):>9.4f}  {row['loss']:.4f}{mark}")
    return "\n".join(lines)


def privacy_line(summary: dict[str, Any]) -> str:
    """One sentence: what the run's guarantee says, in numbers (privacy.md has the full statement)."""
    p = summary["privacy"]
    bound = p.get("attack_bound")
    coin = (
        f"a membership attack succeeds with probability at most {bound:.3f} (0.5 = a coin flip)"
        if bound is not None
        else "see the privacy statement for the attack bound"
    )
    if p["guarantee"] == "zero-mi":
        return (
            "I(S*; Y_1:T) = 0: the released signs, and so the model, are independent of which candidate "
            "subset S* of the pool was secretly trained on; an attacker guessing whether a pool example was "
            f"in S* does no better than a coin flip (success bound {bound:.3f})"
        )
    if p["guarantee"] == "mi-budget":
        return f"I(S*; Y_1:T) <= {p['mi_spent']:.4g} nats (budget {p['mi_budget']:.4g}): {coin}"
    if p["guarantee"] == "dp":
        return f"(ε = {p.get('epsilon_spent', float('nan')):.4g}, δ = {p.get('delta', 0):g})-DP: {coin}"
    return f"{summary['mechanism']} gives no privacy guarantee (a non-private reference)"


def train_report(summary: dict[str, Any], out: Path) -> str:
    """The end of ``paczero train``: the dev table, the result, the privacy line and where things are."""
    metric = summary["primary_metric"]
    dev, test = summary["dev"]["selected"], summary["test"]
    result = f"selected step {summary['selected_step']}"
    if metric in dev:
        result += f": dev {metric} {dev[metric]:.4f}"
    if test:
        result += f", test {metric} {test[metric]:.4f}"
    result += f"; {summary['steps_run']} steps in {summary['wall_time_s']:.1f} s"
    return "\n".join(
        [
            dev_table(summary),
            result,
            f"Privacy statement ({summary['mechanism']}; full text in {out / 'privacy.md'}): "
            + privacy_line(summary),
            f"model: {out / 'model'} (evaluate again: paczero eval --run {out})",
            f"report: paczero report {out} (plots and report.html in {out / 'report'})",
        ]
    )
