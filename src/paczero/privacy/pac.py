"""The PAC privacy ledger: MI spent against the budget, and the posterior an optimal attacker tracks.

The ledger consumes releases; it never touches tensors and never reads J. By the chain rule
I(S*; Y_1:T) = Σ_t I(S*; Y_t | Y_<t) ≤ Σ_t cost_t, valid because each cost is fixed by public history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from paczero.channel import attack_bound_from_mi, epsilon_matching_mi
from paczero.privacy.ledger import BudgetExceeded, Guarantee, Ledger

SCHEDULES = ("adaptive", "uniform")


@dataclass
class LedgerSummary:
    """What a user reads: MI spent, the attack-success bound it implies and the matched DP ε (δ = 0)."""

    guarantee: str
    mi_spent: float | None
    mi_budget: float | None
    attack_bound: float | None
    matched_epsilon: float | None
    releases: int
    unanimous: int
    coins: int
    noisy: int
    exact: int


class PacLedger(Ledger):
    """MI accounting over ``releases`` planned releases (T·K) with an optional budget B in nats."""

    def __init__(self, m: int, releases: int, budget: float | None = None, schedule: str = "adaptive"):
        if schedule not in SCHEDULES:
            raise ValueError(f"budget schedule must be one of {SCHEDULES}, got {schedule!r}")
        if budget is not None and budget <= 0:
            raise ValueError(f"the MI budget must be positive, got {budget}")
        if releases < 1:
            raise ValueError("at least one release must be planned")
        self.m = m
        self.planned = releases
        self.budget = budget
        self.schedule = schedule
        self.log_post = np.full(m, -np.log(m))
        self.spent = 0.0
        self.unbounded = False
        self.count = {"unanimous": 0, "coin": 0, "noisy": 0, "exact": 0, "public": 0}

    @property
    def releases(self) -> int:
        return sum(self.count.values())

    def posterior(self) -> np.ndarray:
        """p_k over the candidate subsets (sums to 1)."""
        return np.exp(self.log_post - logsumexp(self.log_post))

    @property
    def remaining(self) -> float:
        return np.inf if self.budget is None else max(self.budget - self.spent, 0.0)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.remaining <= 1e-12 * self.budget

    def next_budget(self) -> float:
        """β for the next release: (B − spent)/(releases left), or B/(T·K) under the uniform schedule."""
        if self.budget is None:
            raise ValueError("this run has no MI budget: set privacy.budget for paczero-mi")
        left = max(self.planned - self.releases, 1)
        if self.schedule == "uniform":
            return min(self.budget / self.planned, self.remaining)
        return self.remaining / left

    def secret_batch(self, rng: np.random.Generator, n: int) -> None:
        """PAC runs sample no secret batch: the step uses the pool or a public minibatch."""
        return None

    def step_fields(self, guarantee: Guarantee | str, cost: float | None) -> dict[str, float | None]:
        """What a step record publishes about the accounting: the step's MI and the total, when bounded."""
        bounded = Guarantee(guarantee).bounds_mi and not self.unbounded
        return {
            "mi_step": cost if bounded else None,
            "mi_spent": self.spent if bounded else None,
            "epsilon_spent": None,
        }

    def charge(self, release: Any) -> None:
        """Account for one release exactly once: add its cost and update the posterior by Bayes' rule."""
        if release.charged:
            raise RuntimeError("this release was already charged")
        if (  # the budget guard, independent of the mechanism: refuse before anything is counted
            release.cost is not None
            and self.budget is not None
            and self.spent + release.cost > self.budget * (1 + 1e-12)
        ):
            raise BudgetExceeded(
                f"release refused: its cost {release.cost:.6g} nats would take MI spent from "
                f"{self.spent:.6g} past the budget {self.budget:.6g}"
            )
        release.charged = True
        self.count[release.kind] += 1
        if release.cost is None:
            self.unbounded = True
        else:
            self.spent += release.cost
        self.observe(release.log_likelihood)

    def observe(self, log_likelihood: np.ndarray | None) -> None:
        """Bayes' rule over the candidates for one release (None: the release says nothing about J)."""
        if log_likelihood is not None:
            self.log_post = self.log_post + log_likelihood
            self.log_post -= logsumexp(self.log_post)

    def state_dict(self) -> dict[str, Any]:
        """Everything the ledger has accumulated (JSON-safe), for checkpoints; the plan is checked on load."""
        return {
            "kind": "pac",
            "m": self.m,
            "planned": self.planned,
            "budget": self.budget,
            "log_post": self.log_post.tolist(),
            "spent": self.spent,
            "unbounded": self.unbounded,
            "count": dict(self.count),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        plan = {"kind": "pac", "m": self.m, "planned": self.planned, "budget": self.budget}
        saved = {key: state.get(key) for key in plan}
        if saved != plan:
            raise ValueError(f"the saved ledger was planned as {saved}, this run as {plan}")
        self.log_post = np.asarray(state["log_post"], dtype=float)
        self.spent = float(state["spent"])
        self.unbounded = bool(state["unbounded"])
        self.count = dict(state["count"])

    def summary(self, guarantee: Guarantee | str) -> LedgerSummary:
        guarantee = Guarantee(guarantee)
        bounded = guarantee.bounds_mi and not self.unbounded
        mi = self.spent if bounded else None
        budgets = {Guarantee.MI_BUDGET: self.budget, Guarantee.ZERO_MI: 0.0}
        return LedgerSummary(
            guarantee=guarantee.value,
            mi_spent=mi,
            mi_budget=budgets.get(guarantee),
            attack_bound=attack_bound_from_mi(mi) if mi is not None else None,
            matched_epsilon=epsilon_matching_mi(mi) if mi is not None else None,
            releases=self.releases,
            unanimous=self.count["unanimous"],
            coins=self.count["coin"],
            noisy=self.count["noisy"],
            exact=self.count["exact"],
        )
