"""The figures of a run report, drawn with matplotlib's object API on the Agg canvas (no backend switch).

Each ``fig_*`` function draws into a fresh figure and returns it with a note when it had nothing to show.
Noisy per-step curves are drawn raw and as a trailing mean whose window the legend states.
``save_png`` writes no version metadata, so the same public outputs always give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from paczero.report.words import PERCENT_METRICS

if TYPE_CHECKING:
    from paczero.report.run_data import RunData

Drawn = tuple[Figure, str | None]


def smoothing_window(n: int) -> int:
    """Points in the trailing mean of an n-point curve: n/20, at least 5 (or n when shorter)."""
    return max(1, min(n, max(5, round(n / 20))))


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    return np.convolve(values, np.ones(window) / window, mode="valid")


def window_label(window: int, unit: str) -> str:
    return f"mean over the last {window} {unit}" if window > 1 else f"per {unit.rstrip('s')}, unsmoothed"


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG without the matplotlib version, so equal figures give equal files."""
    fig.savefig(path, dpi=110, metadata={"Software": None})


def _canvas(panels: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(5.0 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _empty(ax: Any, message: str) -> str:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return message


def fig_dev(runs: list[RunData]) -> Drawn:
    """Dev loss and the dev primary metric over steps; for one run also the smoothed training loss."""
    fig, (ax_loss, ax_metric) = _canvas(2)
    metric = runs[0].summary.get("primary_metric", "accuracy")
    drawn = False
    for run in runs:
        history = [h for h in (run.summary.get("dev") or {}).get("history", []) if "loss" in h]
        label = "dev" if len(runs) == 1 else run.name
        if history:
            steps = [h["step"] for h in history]
            ax_loss.plot(steps, [h["loss"] for h in history], marker="o", label=label)
            if all(metric in h for h in history):
                ax_metric.plot(steps, [h[metric] for h in history], marker="o", label=label)
            drawn = True
        if len(runs) == 1:
            drawn = _train_loss(ax_loss, run) or drawn
            selected = run.summary.get("selected_step")
            if selected is not None and history:
                for ax in (ax_loss, ax_metric):
                    ax.axvline(selected, color="grey", ls=":", lw=1, label=f"selected step {selected}")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_metric.set(xlabel="step", ylabel=f"dev {metric}", title=f"dev {metric}")
    if metric in PERCENT_METRICS:
        ax_metric.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    for ax in (ax_loss, ax_metric):
        if ax.lines:
            ax.legend(fontsize="small")
    return fig, None if drawn else _empty(ax_loss, "no dev evaluation and no training loss recorded")


def _train_loss(ax: Any, run: RunData) -> bool:
    """The per-step training loss (l₊ + l₋)/2, faint, and its trailing mean."""
    step, loss = run.series("loss")
    if not len(step):
        return False
    window = smoothing_window(len(step))
    ax.plot(step, loss, color="tab:orange", alpha=0.25, lw=0.8)
    ax.plot(
        step[window - 1 :],
        trailing_mean(loss, window),
        color="tab:orange",
        label="train, " + window_label(window, "steps"),
    )
    return True


def fig_privacy(runs: list[RunData]) -> Drawn:
    """Cumulative MI (nats) or ε spent per step, with the budget as a dashed line for a single run."""
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
                    ax.axhline(budget, color="grey", ls="--", label=f"budget {budget:.3g}")
    if not ax.lines:
        return fig, _empty(ax, "no privacy accounting per step: no run here has a bounded guarantee")
    ax.set(xlabel="step", ylabel="cumulative spend", title="privacy spent")
    ax.legend(fontsize="small")
    return fig, None


def fig_unanimity(run: RunData) -> Drawn:
    """How often all candidate subsets agree on the sign, as a trailing mean over releases."""
    fig, (ax,) = _canvas()
    flags = run.per_release("unanimous")
    if not len(flags):
        return fig, _empty(ax, "no releases recorded")
    window = smoothing_window(len(flags))
    ax.plot(
        np.arange(window, len(flags) + 1),
        trailing_mean(flags, window),
        label=window_label(window, "releases"),
    )
    ax.axhline(flags.mean(), color="grey", ls="--", lw=1, label=f"whole run: {flags.mean():.1%}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set(xlabel="release (step × direction)", ylabel="unanimity rate", ylim=(-0.02, 1.02))
    ax.set_title("all candidate subsets agree on the sign", fontsize="medium")
    ax.legend(fontsize="small")
    return fig, None


def fig_qplus(run: RunData) -> Drawn:
    """Histogram of q₊: the (posterior) mass of candidate subsets whose mean projected gradient is > 0."""
    fig, (ax,) = _canvas()
    q = run.per_release("q_plus")
    label = "q₊ = posterior mass of subsets with a positive mean"
    if not len(q):
        # Without a posterior-weighted q₊, show it under the uniform prior: the fraction of positive subsets.
        q = run.per_release("positive_fraction")
        label = "fraction of candidate subsets with a positive mean"
    if not len(q):
        return fig, _empty(ax, "no releases recorded")
    ax.hist(q, bins=np.linspace(0, 1, 41))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=label, ylabel="releases", title="q₊ histogram")
    ax.xaxis.label.set_fontsize("small")
    return fig, None


def fig_sigma(run: RunData) -> Drawn:
    """The noise scale of each noisy release (log axis when it spans a wide range)."""
    fig, (ax,) = _canvas()
    pairs = [(r["step"], s) for r in run.records for s in r.get("sigma") or [] if s is not None]
    if not pairs:
        return fig, _empty(ax, "no noisy release in this run")
    steps, sigma = zip(*pairs, strict=True)
    ax.plot(steps, sigma, ".", ms=5)
    if max(sigma) > 1.5 * min(sigma):  # a wide range: log axis with plain labels
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    else:  # nearly constant (DP calibrates σ once): from zero, so its size reads at a glance
        ax.set_ylim(0, 1.2 * max(sigma))
    ax.set(xlabel="step", ylabel="σ", title="noise scale of noisy releases")
    return fig, None


def _minor_log_label(value: float, _: int) -> str:
    """Label the 2s and 5s between powers of ten, plainly (0.2, 5, 50), and leave the rest blank."""
    return f"{value:g}" if value > 0 and round(value / 10 ** np.floor(np.log10(value))) in (2, 5) else ""


def fig_frontier(runs: list[RunData]) -> Drawn:
    """Each run's utility against its membership-attack bound (× at 1 when it has no bound)."""
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
    if points[0][4].split()[-1] in PERCENT_METRICS:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    return fig, None
