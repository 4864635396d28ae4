"""Figures and a self-contained HTML report for a run directory or a comparison of runs.

``write_report(DIR)`` reads only the public outputs of a run (summary.json, steps.jsonl, privacy.md) — never
the private area, never timings — and writes PNG files and ``report.html`` (PNGs inlined as base64, no
scripts, no links) into ``DIR/report/``, a public output: the same public outputs give the same bytes. The
page opens with the privacy guarantee in plain words and the start, selected and test metrics, and shows
only the figures that apply to the run's mechanism. ``include_private=True`` adds the membership-inference
audit (scored against the secret) and writes to ``DIR/private/report/`` instead, with a first line that says
the page must not be published. A directory without summary.json but with run directories below it
(``paczero compare`` output or any folder of runs) gets the comparison figures.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from paczero.report.figures import (
    fig_dev,
    fig_frontier,
    fig_privacy,
    fig_qplus,
    fig_sigma,
    fig_unanimity,
    save_png,
    smoothing_window,
    window_label,
)
from paczero.report.run_data import RunData, find_runs
from paczero.report.words import (
    fmt_metric,
    fmt_number,
    privacy_in_words,
    run_in_words,
    utility_in_words,
)
from paczero.rundir import MIA, REPORT, STATEMENT, SUMMARY, private_dir

__all__ = ["Report", "write_report"]


@dataclass
class Report:
    """What ``write_report`` produced: the figure files, the HTML page, and notes on empty figures."""

    directory: Path
    figures: dict[str, Path]
    html: Path
    notes: dict[str, str] = field(default_factory=dict)


def _encode(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return html.escape("n/a" if v is None else format(v, ".4g") if isinstance(v, float) else str(v))

    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_table(summary: dict[str, Any]) -> str:
    dev, selected_step = summary.get("dev") or {}, summary.get("selected_step")
    rows = [("dev, start (zero-shot)", dev.get("start")), ("dev, selected", dev.get("selected"))]
    rows.append(("test, selected model", {**(summary.get("test") or {}), "step": selected_step}))
    rows = [(name, vals) for name, vals in rows if vals and len(vals) > 1]
    names = sorted({k for _, vals in rows for k in vals if k != "step"}, key=lambda k: (k != "loss", k))
    body = [[name, vals.get("step"), *(fmt_metric(k, vals.get(k)) for k in names)] for name, vals in rows]
    return _table(["", "step", *names], body) if rows else ""


def _run_row(run: RunData) -> list[Any]:
    p = run.summary.get("privacy") or {}
    label, utility = run.utility()
    return [
        run.name,
        run.summary["mechanism"],
        run.summary.get("steps_run"),
        f"{label}: {fmt_metric(label.split()[-1], utility)}",
        fmt_number(p.get("attack_bound"), ".1%"),
        fmt_number(p.get("mi_spent")),
        fmt_number(p.get("epsilon_spent", p.get("matched_epsilon"))),
    ]


RUN_HEADER = ["run", "mechanism", "steps", "utility", "attack bound", "MI spent", "ε (spent or matched)"]
STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1.5em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .6em}"
    "img{max-width:100%;display:block;margin:1em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}"
    "p.privacy{background:#eef4fb;border-left:4px solid #3b78c3;padding:.6em 1em}.caption{color:#555}"
    "h2::first-letter{text-transform:uppercase}"
)


PRIVATE_BANNER = (
    "PRIVATE: this page shows results computed against the secret subset (membership-inference audit). "
    "Do not publish it; the public report is report/report.html."
)


def _mia_section(run: RunData) -> str:
    """The aggregate membership-inference results, if ``paczero audit mia`` was run on this run."""
    path = run.path / MIA
    if not path.is_file():
        return "<p>No membership-inference audit yet: run <code>paczero audit mia --run DIR</code>.</p>"
    audit = json.loads(path.read_text())
    rows = [
        [
            a["attack"],
            a["accuracy"],
            f"[{a['accuracy_ci'][0]:.3f}, {a['accuracy_ci'][1]:.3f}]",
            a["auc"],
            a["tpr_at_1pct_fpr"],
            a["tpr_at_0.1pct_fpr"],
        ]
        for a in audit["attacks"]
    ]
    header = ["attack", "accuracy", "95% CI", "AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR"]
    return f"<p>Bound on accuracy: {html.escape(str(audit.get('bound')))}</p>" + _table(header, rows)


def write_report(directory: str | Path, include_private: bool = False) -> Report:
    """Figures and ``report.html`` for a run directory or a directory of runs, in ``directory/report``.

    ``include_private`` adds the results that depend on the secret and writes to ``directory/private/report``.
    """
    directory = Path(directory)
    single = (directory / SUMMARY).is_file()
    runs = [RunData.load(directory)] if single else [RunData.load(p) for p in find_runs(directory)]
    if not runs:
        raise FileNotFoundError(f"{directory} holds no finished run (no summary.json in it or below it)")
    if include_private and not single:
        raise ValueError("a report with private results is made for one run directory at a time")
    out = private_dir(directory, REPORT) if include_private else directory / REPORT
    out.mkdir(parents=True, exist_ok=True)
    makers = _run_figures(runs[0]) if single else _comparison_figures(runs)
    for stale in FIGURE_NAMES - set(makers):  # a figure of an earlier report that no longer applies
        (out / f"{stale}.png").unlink(missing_ok=True)
    figures, notes = {}, {}
    for name, make in makers.items():
        fig, note = make()
        figures[name] = out / f"{name}.png"
        save_png(fig, figures[name])
        if note:
            notes[name] = note
    title = f"paczero report: {directory.name}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if single:
        parts.append(_headline(runs[0]))
    else:
        parts.append(_table(RUN_HEADER, [_run_row(r) for r in runs]))
    if include_private:
        parts.insert(0, f'<p class="private"><strong>{html.escape(PRIVATE_BANNER)}</strong></p>')
    for name, path in figures.items():
        heading, caption = _caption(name, runs)
        parts.append(
            f'<h2>{html.escape(heading)}</h2><p class="caption">{html.escape(caption)}</p>'
            f'<img alt="{name}" src="data:image/png;base64,{_encode(path)}">'
        )
    if single:
        statement = runs[0].path / STATEMENT
        if statement.is_file():
            parts.append(f"<h2>privacy statement</h2><pre>{html.escape(statement.read_text())}</pre>")
        if include_private:
            parts.append("<h2>membership-inference audit</h2>" + _mia_section(runs[0]))
    page = out / "report.html"
    page.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    return Report(out, figures, page, notes)


Maker = Callable[[], tuple[Figure, str | None]]
FIGURE_NAMES = frozenset({"dev", "privacy", "unanimity", "q_plus", "sigma", "frontier"})


def _run_figures(run: RunData) -> dict[str, Maker]:
    """The figures that apply to the run's mechanism: no spend or σ without a budget, no subsets under DP."""
    makers: dict[str, Maker] = {"dev": lambda: fig_dev([run])}
    if run.guarantee.spends_budget:
        makers["privacy"] = lambda: fig_privacy([run])
    if not run.guarantee.is_dp:
        makers["unanimity"] = lambda: fig_unanimity(run)
        makers["q_plus"] = lambda: fig_qplus(run)
    if run.guarantee.spends_budget:
        makers["sigma"] = lambda: fig_sigma(run)
    return makers


def _comparison_figures(runs: list[RunData]) -> dict[str, Maker]:
    makers: dict[str, Maker] = {"frontier": lambda: fig_frontier(runs), "dev": lambda: fig_dev(runs)}
    if any(r.guarantee.spends_budget for r in runs):
        makers["privacy"] = lambda: fig_privacy(runs)
    return makers


def _headline(run: RunData) -> str:
    """Privacy in plain words, the start/selected/test metrics, and what was run."""
    s = run.summary
    return (
        f'<p class="privacy"><b>Privacy.</b> {html.escape(privacy_in_words(s))}</p>'
        f"<p><b>Utility.</b> {html.escape(utility_in_words(s))}</p>{_metrics_table(s)}"
        f"<p><b>Run.</b> {html.escape(run_in_words(s))}</p>"
    )


def _caption(name: str, runs: list[RunData]) -> tuple[str, str]:
    """Heading and one-sentence reading guide of a figure."""
    run = runs[0]
    if name == "dev":
        if len(runs) > 1:
            return "Learning curves", "Dev loss and dev metric at each evaluation, one line per run."
        steps = len(run.series("loss")[0])
        train = (
            f"; the training loss (l₊ + l₋)/2 of every step, faint, and its "
            f"{window_label(smoothing_window(steps), 'steps')}"
            if steps
            else ""
        )
        return (
            "Learning curves",
            f"Dev loss and dev metric at each evaluation (dotted: the selected step){train}.",
        )
    if name == "privacy":
        if len(runs) > 1:
            return "Privacy spent", "Cumulative MI (nats) or ε after each step, one line per run."
        return "Privacy spent", "Cumulative MI (nats) or ε after each step; dashed: the budget."
    if name == "unanimity":
        window = window_label(smoothing_window(len(run.per_release("unanimous"))), "releases")
        return "Unanimity", (
            f"Share of releases where every candidate subset agrees on the sign of the projected gradient, "
            f"{window}; dashed: the whole run. Unanimous releases are free and carry the gradient's sign; "
            "the others are coin flips (ZPL) or noisy (MI). A rate near 0 for long means the updates are "
            "mostly noise."
        )
    if name == "q_plus":
        return "Subset agreement (q₊)", (
            "Fraction of candidate subsets (posterior mass for MI) whose mean is positive, per release: at 0 "
            "or 1 the subsets agree, near 0.5 they split evenly."
        )
    if name == "sigma":
        if run.guarantee.is_dp:
            return "Noise scale σ", (
                "Standard deviation of the noise on each released projected gradient, multiplier·C/(q·N), "
                "set for the whole run by ε: far above the typical clipped gradient, it drowns the signal."
            )
        return "Noise scale σ", (
            "Standard deviation of the Gaussian noise added to the secret subset's ±1 sign on each noisy "
            "release: far above 1, a release carries little of the sign."
        )
    return "Utility vs attack bound", "Each run's headline metric against its membership-attack bound p*."
