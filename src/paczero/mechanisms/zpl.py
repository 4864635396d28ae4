"""PACZero-ZPL: zero mutual information by releasing only what every candidate subset agrees on."""

from __future__ import annotations

from paczero.mechanisms.base import Mechanism, Release, StepInput
from paczero.privacy.ledger import Guarantee


class ZPL(Mechanism):
    """Reads the signs s_1..s_M of the subset means (never J). Releases their common sign when all agree,
    else a fair coin from the privacy generator. Either way Y_t is a function of public state or independent
    noise, so I(S*; Y_t | Y_<t) = 0 and the whole trajectory is identical for every J given the seeds.
    """

    name = "paczero-zpl"
    reads_secret = False
    guarantee = Guarantee.ZERO_MI

    def release(self, step: StepInput, ledger) -> Release:
        if step.unanimous:
            return Release(value=step.signs[0], observed=step.signs[0], kind="unanimous", cost=0.0)
        coin = 1.0 if self.rng.random() < 0.5 else -1.0
        return Release(value=coin, observed=coin, kind="coin", cost=0.0)
