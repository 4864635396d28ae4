"""What ``paczero train`` prints at the end: dev metrics by step, a one-line privacy statement, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paczero.report.words import privacy_in_words
from paczero.rundir import MODEL, REPORT, STATEMENT


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


def train_report(summary: dict[str, Any], out: Path, wall_time_s: float) -> str:
    """The end of ``paczero train``: the dev table, the result, the privacy line and where things are.

    The wall time is this process's (private timing, shown on the console only, never written publicly)."""
    metric = summary["primary_metric"]
    dev, test = summary["dev"]["selected"], summary["test"]
    result = f"selected step {summary['selected_step']}"
    if metric in dev:
        result += f": dev {metric} {dev[metric]:.4f}"
    if test:
        result += f", test {metric} {test[metric]:.4f}"
    result += f"; {summary['steps_run']} steps in {wall_time_s:.1f} s"
    return "\n".join(
        [
            dev_table(summary),
            result,
            f"Privacy statement ({summary['mechanism']}; full text in {out / STATEMENT}): "
            + privacy_in_words(summary),
            f"model: {out / MODEL} (evaluate again: paczero eval --run {out})",
            f"report: paczero report {out} (plots and report.html in {out / REPORT})",
        ]
    )
