"""Plain-words lines of a run report: the privacy guarantee, the utility, and what was run.

Everything here is a function of summary.json alone (no secret, no timing): equal summaries, equal text.
"""

from __future__ import annotations

from typing import Any

from paczero.privacy.ledger import Guarantee
from paczero.rundir import INSECURE_NOTE

TRACKS = {"lora": "LoRA", "full": "full-weight"}
PERCENT_METRICS = frozenset({"accuracy", "f1", "exact_match"})  # scores in [0, 1] shown as percentages


def guarantee_of(summary: dict[str, Any]) -> Guarantee:
    """The run's guarantee, from the privacy block (or, for an older summary, the mechanism registry)."""
    found = (summary.get("privacy") or {}).get("guarantee")
    if found:
        return Guarantee(found)
    from paczero.mechanisms import get_mechanism

    return get_mechanism(summary["mechanism"]).guarantee


def fmt_metric(name: str, value: float | None) -> str:
    """A metric for people: scores in [0, 1] as percentages, losses to three decimals."""
    if value is None:
        return "n/a"
    if name in PERCENT_METRICS:
        return f"{100 * value:.1f}%"
    return f"{value:.3f}" if name == "loss" else f"{value:.4g}"


def fmt_number(value: Any, spec: str = ".3g") -> str:
    """A number to three significant digits (or ``spec``); n/a when absent."""
    return "n/a" if value is None else format(value, spec)


def privacy_in_words(summary: dict[str, Any]) -> str:
    """What the run's guarantee means in plain words, led by a warning when the run is not private."""
    words = _guarantee_in_words(summary)
    if (summary.get("privacy") or {}).get("private") is False:
        return f"{INSECURE_NOTE} Were its privacy randomness secret: {words}"
    return words


def _guarantee_in_words(summary: dict[str, Any]) -> str:
    """One plain sentence on what the run's guarantee means, from summary.json's privacy block."""
    p, mech = summary.get("privacy") or {}, summary["mechanism"]
    guarantee = guarantee_of(summary)
    bound, spent = fmt_number(p.get("attack_bound"), ".1%"), fmt_number(p.get("mi_spent"))
    attack = f"a membership attack on any one example succeeds with probability at most p* = {bound}"
    if guarantee is Guarantee.ZERO_MI:
        subsets = f"which of the M = {p['subsets']}" if p.get("subsets") else "which"
        return (
            "I(S*; transcript) = 0: the released model and transcript reveal nothing about "
            f"{subsets} candidate subsets was trained on, so no membership attack does better than a coin "
            "flip (50%)."
        )
    if guarantee is Guarantee.MI_BUDGET:
        return (
            f"I(S*; transcript) ≤ {fmt_number(p.get('mi_budget'))} nats (spent {spent}): the "
            "released model and transcript reveal at most that much about which candidate subset was trained "
            f"on, so {attack} (a coin flip: 50%)."
        )
    if guarantee is Guarantee.DP:
        eps, delta = fmt_number(p.get("epsilon")), fmt_number(p.get("delta"))
        return (
            f"(ε, δ) = ({eps}, {delta})-differential privacy for adding or removing one pool example "
            f"(spent ε = {fmt_number(p.get('epsilon_spent'))}), so {attack}."
        )
    if guarantee is Guarantee.UNBOUNDED_LEAK:
        return (
            f"No privacy guarantee: {mech} releases a function of the secret subset without noise (ablation)."
        )
    return (
        f"No privacy guarantee: {mech} is a non-private reference; its outputs may reveal any pool example."
    )


def utility_in_words(summary: dict[str, Any]) -> str:
    """The primary metric at the start (zero-shot), at the selected step and on test."""
    metric = summary.get("primary_metric", "accuracy")
    dev = summary.get("dev") or {}
    start, selected, test = dev.get("start") or {}, dev.get("selected") or {}, summary.get("test") or {}
    by = (summary.get("hyperparameters") or {}).get("select_by", "dev")
    parts = []
    if metric in start:
        parts.append(f"{fmt_metric(metric, start[metric])} at step 0 (zero-shot)")
    if metric in selected:
        parts.append(
            f"{fmt_metric(metric, selected[metric])} at step {summary.get('selected_step')}, selected by {by}"
        )
    text = f"Dev {metric}: " + " → ".join(parts) + "." if parts else "No dev evaluation."
    if metric in test:
        return text + f" Test {metric} of the selected model: {fmt_metric(metric, test[metric])}."
    return text + " No test set."


def run_in_words(summary: dict[str, Any]) -> str:
    """What was trained, how long, and with which public hyperparameters."""
    hp, p, track = (
        summary.get("hyperparameters") or {},
        summary.get("privacy") or {},
        summary.get("track", ""),
    )
    pool = f"; pool N = {p['pool_size']}" if p.get("pool_size") else ""
    subsets = (
        f", M = {p['subsets']} candidate subsets"
        if p.get("subsets") and not guarantee_of(summary).is_dp
        else ""
    )
    return (
        f"{summary['mechanism']} on {summary['task']}, {TRACKS.get(track, track)} fine-tuning of "
        f"{summary['model']} ({summary.get('trainable_parameters', 'n/a')} trainable parameters): "
        f"{summary.get('steps_run')} of {summary.get('steps_planned')} steps ({summary.get('stop_reason')}); "
        f"K = {hp.get('directions')}, lr {fmt_number(hp.get('lr'))} ({hp.get('schedule')}){pool}{subsets}."
    )
