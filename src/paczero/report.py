"""Human-readable privacy statement written with every run (``privacy.md``) and printed by the CLI."""

from __future__ import annotations

from typing import Any

GUARANTEES = {
    "zero-mi": "PAC privacy with zero mutual information: I(S*; Y_1:T) = 0 exactly",
    "mi-budget": "PAC privacy with a mutual-information budget: I(S*; Y_1:T) ≤ B nats",
    "none": "no privacy guarantee (non-private reference)",
    "unbounded-leak": "no privacy guarantee: the release reads the secret subset without noise (ablation)",
}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def privacy_statement(summary: dict[str, Any]) -> str:
    """A short markdown statement of what the run's privacy numbers mean; it never names the secret."""
    p = summary["privacy"]
    lines = [
        "# Privacy statement",
        "",
        f"- Mechanism: `{p['mechanism']}` — {GUARANTEES[p['guarantee']]}.",
        "- Unit of privacy: one training example's membership in the secret subset S*.",
        f"- Secret model: pool of N = {p['pool_size']} examples, M = {p['subsets']} candidate subsets, "
        "each example in exactly M/2 of them, so the prior probability that an example is in S* is "
        f"{p['prior']}.",
        f"- Releases: {p['releases']} ({p['unanimous']} unanimous, {p['coins']} coin flips, "
        f"{p['noisy']} noisy, {p['exact']} exact); unanimity rate of the subset signs "
        f"{p['unanimity_rate']:.3f}.",
        f"- MI spent: {_fmt(p['mi_spent'])} nats (budget {_fmt(p['mi_budget'])}).",
        f"- Membership-attack success bound p*: {_fmt(p['attack_bound'])} "
        "(largest p with KL(Bern(p) ‖ Bern(1/2)) ≤ I; 0.5 means no better than a coin).",
        f"- Matched DP ε (δ = 0, same attack bound, p = e^ε/(1+e^ε)): {_fmt(p['matched_epsilon'])}.",
        "- Not covered: membership in the pool itself (the pool and the candidate subsets are public), "
        "and any choice of hyperparameters made by looking at private data.",
    ]
    return "\n".join(lines) + "\n"
