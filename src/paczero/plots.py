"""Figures and a self-contained HTML report for a run directory or a comparison of runs; TensorBoard logging.

``write_report(DIR)`` reads only the public outputs of a run (summary.json, steps.jsonl, privacy.md) and
writes PNG files and ``report.html`` (PNGs inlined as base64, no scripts, no links) into ``DIR/report/``, a
public output. ``include_private=True`` adds the membership-inference audit (scored against the secret) and
writes to ``DIR/private/report/`` instead, with a first line that says the page must not be published. A
directory without summary.json but with run directories below it (``paczero compare`` output or any folder
of runs) gets the comparison figures.
Figures are drawn with matplotlib's object API on the Agg canvas, so no global backend is switched.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paczero.rundir import PRIVATE, private_dir

__all__ = ["RunData", "Report", "find_runs", "write_report", "open_tensorboard", "TensorBoardLog"]


@dataclass
class RunData:
    """The public outputs of one finished run."""

    path: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str | Path) -> RunData:
        path = Path(path)
        summary_file = path / "summary.json"
        if not summary_file.is_file():
            raise FileNotFoundError(f"{path} is not a finished run: no summary.json")
        steps = path / "steps.jsonl"
        lines = steps.read_text().splitlines() if steps.is_file() else []
        return cls(path, json.loads(summary_file.read_text()), [json.loads(x) for x in lines if x.strip()])

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(step, value) for a per-step field, dropping steps where it is null."""
        pairs = [(r["step"], r[key]) for r in self.records if r.get(key) is not None]
        return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)

    def per_release(self, key: str) -> np.ndarray:
        """A per-direction field flattened over all releases, nulls dropped."""
        return np.array([v for r in self.records for v in r.get(key) or [] if v is not None], float)

    def utility(self) -> tuple[str, float | None]:
        """The headline utility: the primary metric (accuracy by default) on test, else on selected dev."""
        metric = self.summary.get("primary_metric", "accuracy")
        for split, metrics in (("test", self.summary.get("test")), ("dev", self._dev())):
            if metrics and metrics.get(metric) is not None:
                return f"{split} {metric}", float(metrics[metric])
        return metric, None

    def _dev(self) -> dict[str, Any] | None:
        return (self.summary.get("dev") or {}).get("selected")


def find_runs(directory: str | Path) -> list[Path]:
    """Every run directory (holding summary.json) strictly below ``directory``, sorted by path."""
    root = Path(directory)
    return sorted(p.parent for p in root.rglob("summary.json") if p.parent != root)


@dataclass
class Report:
    """What ``write_report`` produced: the figure files, the HTML page, and notes on empty figures."""

    directory: Path
    figures: dict[str, Path]
    html: Path
    notes: dict[str, str] = field(default_factory=dict)


def _canvas(panels: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(5.0 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _empty(ax, message: str) -> str:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return message


# Each figure function draws into a fresh canvas and returns a note when it had nothing to show.


def _fig_dev(runs: list[RunData]) -> tuple[Figure, str | None]:
    fig, (ax_loss, ax_acc) = _canvas(2)
    drawn = False
    for run in runs:
        history = [h for h in (run.summary.get("dev") or {}).get("history", []) if "loss" in h]
        label = run.summary["mechanism"] if len(runs) == 1 else run.name
        if history:
            steps = [h["step"] for h in history]
            ax_loss.plot(steps, [h["loss"] for h in history], marker="o", label=f"dev ({label})")
            if all("accuracy" in h for h in history):
                ax_acc.plot(steps, [h["accuracy"] for h in history], marker="o", label=label)
            drawn = True
        if len(runs) == 1:
            step, loss = run.series("loss")
            if len(step):
                ax_loss.plot(step, loss, alpha=0.5, label="train, (l+ + l−)/2")
                drawn = True
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_acc.set(xlabel="step", ylabel="dev accuracy", title="dev accuracy")
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize="small")
    return fig, None if drawn else _empty(ax_loss, "no dev evaluation and no training loss recorded")


def _fig_privacy(runs: list[RunData]) -> tuple[Figure, str | None]:
    fig, (ax,) = _canvas()
    for run in runs:
        for key, unit in (("mi_spent", "MI (nats)"), ("epsilon_spent", "ε")):
            step, spent = run.series(key)
            if len(step):
                label = f"{run.name if len(runs) > 1 else run.summary['mechanism']}: {unit}"
                ax.step(np.concatenate([[0], step]), np.concatenate([[0], spent]), where="post", label=label)
                budget = (run.summary.get("privacy") or {}).get(
                    "mi_budget" if key == "mi_spent" else "epsilon"
                )
                if budget and len(runs) == 1:
                    ax.axhline(budget, color="grey", ls="--", label=f"budget {budget:g}")
    if not ax.lines:
        return fig, _empty(ax, "no privacy accounting per step: this mechanism has no bounded guarantee")
    ax.set(xlabel="step", ylabel="cumulative spend", title="privacy spent")
    ax.legend(fontsize="small")
    return fig, None


def _fig_unanimity(run: RunData) -> tuple[Figure, str | None]:
    fig, (ax,) = _canvas()
    flags = run.per_release("unanimous")
    if not len(flags):
        return fig, _empty(ax, "no releases recorded")
    window = max(1, len(flags) // 20)
    rolling = np.convolve(flags, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, len(flags) + 1), rolling)
    ax.set(
        xlabel="release",
        ylabel="unanimity rate",
        ylim=(-0.02, 1.02),
        title=f"all candidate subsets agree (rolling mean over {window})",
    )
    return fig, None


def _fig_qplus(run: RunData) -> tuple[Figure, str | None]:
    fig, (ax,) = _canvas()
    q = run.per_release("q_plus")
    label = "q₊ = posterior mass of subsets with a positive mean"
    if not len(q):
        # Without a posterior-weighted q₊, show it under the uniform prior: the fraction of positive subsets.
        q = run.per_release("positive_fraction")
        label = "q₊ under the uniform posterior = fraction of subsets with a positive mean"
    if not len(q):
        return fig, _empty(ax, "no releases recorded")
    ax.hist(q, bins=np.linspace(0, 1, 41))
    ax.set(xlabel=label, ylabel="releases", title="q₊ histogram")
    ax.xaxis.label.set_fontsize("small")
    return fig, None


def _fig_sigma(run: RunData) -> tuple[Figure, str | None]:
    fig, (ax,) = _canvas()
    pairs = [(r["step"], s) for r in run.records for s in r.get("sigma") or [] if s is not None]
    if not pairs:
        return fig, _empty(ax, "no noisy releases: σ applies to paczero-mi's noisy steps only")
    steps, sigma = zip(*pairs, strict=True)
    ax.semilogy(steps, sigma, ".", ms=3)
    ax.set(xlabel="step", ylabel="σ_t", title="noise scale of noisy releases")
    return fig, None


def _fig_frontier(runs: list[RunData]) -> tuple[Figure, str | None]:
    fig, (ax,) = _canvas()
    points = []
    for run in runs:
        label, utility = run.utility()
        bound = (run.summary.get("privacy") or {}).get("attack_bound")
        if utility is not None:
            points.append((1.0 if bound is None else float(bound), utility, bound is None, run, label))
    if not points:
        return fig, _empty(ax, "no run recorded an accuracy")
    for x, y, unbounded, run, _ in points:
        ax.scatter([x], [y], marker="x" if unbounded else "o")
        ax.annotate(
            f"{run.summary['mechanism']} ({run.name})",
            (x, y),
            fontsize="x-small",
            textcoords="offset points",
            xytext=(4, 4),
        )
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set(
        xlabel="membership-attack bound p* (× at 1: no bound)",
        ylabel=points[0][4],
        title="utility vs attack bound",
        xlim=(0.48, 1.02),
    )
    return fig, None


def _encode(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return html.escape("n/a" if v is None else format(v, ".4g") if isinstance(v, float) else str(v))

    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _run_row(run: RunData) -> list[Any]:
    p = run.summary.get("privacy") or {}
    label, utility = run.utility()
    return [
        run.name,
        run.summary["mechanism"],
        run.summary.get("steps_run"),
        f"{label}: {utility}",
        p.get("attack_bound"),
        p.get("mi_spent"),
        p.get("epsilon_spent", p.get("matched_epsilon")),
    ]


RUN_HEADER = ["run", "mechanism", "steps", "utility", "attack bound", "MI spent", "ε (spent or matched)"]
STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.2em .6em}"
    "img{max-width:100%;display:block;margin:1em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}"
)


PRIVATE_BANNER = (
    "PRIVATE: this page shows results computed against the secret subset (membership-inference audit). "
    "Do not publish it; the public report is report/report.html."
)


def _mia_section(run: RunData) -> str:
    """The aggregate membership-inference results, if ``paczero audit mia`` was run on this run."""
    path = run.path / PRIVATE / "audit" / "mia.json"
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
    single = (directory / "summary.json").is_file()
    runs = [RunData.load(directory)] if single else [RunData.load(p) for p in find_runs(directory)]
    if not runs:
        raise FileNotFoundError(f"{directory} holds no finished run (no summary.json in it or below it)")
    if include_private and not single:
        raise ValueError("a report with private results is made for one run directory at a time")
    out = private_dir(directory, "report") if include_private else directory / "report"
    out.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[], tuple[Figure, str | None]]]
    if single:
        run = runs[0]
        makers = {
            "dev": lambda: _fig_dev(runs),
            "privacy": lambda: _fig_privacy(runs),
            "unanimity": lambda: _fig_unanimity(run),
            "q_plus": lambda: _fig_qplus(run),
            "sigma": lambda: _fig_sigma(run),
        }
    else:
        makers = {
            "frontier": lambda: _fig_frontier(runs),
            "dev": lambda: _fig_dev(runs),
            "privacy": lambda: _fig_privacy(runs),
        }
    figures, notes = {}, {}
    for name, make in makers.items():
        fig, note = make()
        figures[name] = out / f"{name}.png"
        fig.savefig(figures[name], dpi=110)
        if note:
            notes[name] = note
    title = f"paczero report: {directory.name}"
    parts = [f"<h1>{html.escape(title)}</h1>", _table(RUN_HEADER, [_run_row(r) for r in runs])]
    if include_private:
        parts.insert(0, f'<p class="private"><strong>{html.escape(PRIVATE_BANNER)}</strong></p>')
    for name, path in figures.items():
        parts.append(
            f'<h2>{html.escape(name)}</h2><img alt="{name}" src="data:image/png;base64,{_encode(path)}">'
        )
    if single:
        statement = runs[0].path / "privacy.md"
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


class TensorBoardLog:
    """Scalars of each public step record, written with a ``SummaryWriter``-like object."""

    def __init__(self, writer: Any):
        self.writer = writer

    def log(self, record: Any) -> None:
        w, step = self.writer, record.step
        if record.loss is not None:  # None for DP runs: the loss over a secret batch is not released
            w.add_scalar("train/loss", record.loss, step)
        w.add_scalar("train/lr", record.lr, step)
        w.add_scalar("privacy/unanimous", float(np.mean(record.unanimous)), step)
        if record.mi_spent is not None:
            w.add_scalar("privacy/mi_spent", record.mi_spent, step)
        sigma = [s for s in record.sigma if s is not None]
        if sigma:
            w.add_scalar("privacy/sigma", float(np.mean(sigma)), step)

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(directory: Path) -> TensorBoardLog | None:
    """A TensorBoard log in ``directory`` when the tensorboard package is installed, else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return TensorBoardLog(SummaryWriter(str(directory)))
