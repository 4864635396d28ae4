"""PACZero-MI: the secret subset's sign plus Gaussian noise calibrated exactly to a per-step MI budget."""

from __future__ import annotations

import numpy as np

from paczero.channel import binary_entropy, binary_gaussian_mi, binary_gaussian_sigma
from paczero.mechanisms.base import Mechanism, Release, StepInput, sign
from paczero.privacy.ledger import BudgetExhausted, Guarantee

NEAR_UNANIMOUS = 1e-12
ENTROPY_CAP = 0.999


class PACZeroMI(Mechanism):
    """Reads s_J (the secret subset's sign), the public signs s_k and the ledger's posterior p_k.

    q₊ = Σ_k p_k·1[s_k = +1]. If q₊ ∈ {0, 1} every plausible subset agrees: release that sign, cost 0.
    If q₊ is within 1e-12 of 0 or 1, release s_J without noise and charge its exact cost h(q₊).
    Otherwise β_t = min(ledger budget for this release, 0.999·h(q₊)); σ_t solves I(q₊, σ_t) = β_t
    conservatively; release Y_t = s_J + N(0, σ_t²) and charge the exact leakage I(q₊, σ_t) ≤ β_t.
    The update uses sign(Y_t). σ_t, β_t and q₊ depend only on public history, so the charges compose.
    """

    name = "paczero-mi"
    reads_secret = True
    guarantee = Guarantee.MI_BUDGET

    def release(self, step: StepInput, ledger) -> Release:
        p = ledger.posterior()
        q = float(np.sum(p[step.signs > 0]))
        if q <= 0.0 or q >= 1.0:
            common = 1.0 if q >= 1.0 else -1.0
            return Release(value=common, observed=common, kind="unanimous", cost=0.0, q_plus=q)
        s_j = step.signs[self._secret.reveal()]
        h = binary_entropy(q)
        allowance = ledger.next_budget()
        if min(q, 1.0 - q) < NEAR_UNANIMOUS and h <= allowance:
            return Release(
                value=s_j,
                observed=s_j,
                kind="exact",
                cost=h,
                q_plus=q,
                log_likelihood=self.log_likelihood("exact", s_j, None, step),
            )
        beta = min(allowance, ENTROPY_CAP * h)
        if beta <= 0.0:
            raise BudgetExhausted("the MI budget is spent: no noisy release is possible")
        sigma = binary_gaussian_sigma(q, beta)
        y = s_j + sigma * float(self.rng.standard_normal())
        return Release(
            value=sign(y),
            observed=y,
            kind="noisy",
            cost=binary_gaussian_mi(q, sigma),
            sigma=sigma,
            q_plus=q,
            log_likelihood=self.log_likelihood("noisy", y, sigma, step),
        )
