"""Non-private references and the paper's ablations (mechanism decomposition and a negative control)."""

from __future__ import annotations

from paczero.mechanisms.base import Mechanism, Release, StepInput, sign
from paczero.privacy.ledger import Guarantee


class MeZO(Mechanism):
    """Reads every clipped per-example estimate; releases their mean over the whole pool (MeZO's update).
    Keeps nothing secret and gives no guarantee: the utility reference."""

    name = "mezo"
    reads_secret = False
    guarantee = Guarantee.NONE

    def release(self, step: StepInput, ledger) -> Release:
        value = float(step.g.mean())
        return Release(value=value, observed=value, kind="public", cost=None)


class QuantFull(Mechanism):
    """Releases sign(mean of g over the whole pool): quantisation alone, no subsets. No guarantee."""

    name = "quant_full"
    reads_secret = False
    guarantee = Guarantee.NONE

    def release(self, step: StepInput, ledger) -> Release:
        value = sign(float(step.g.mean()))
        return Release(value=value, observed=value, kind="public", cost=None)


class SecretHalf(Mechanism):
    """Reads J; releases the secret subset's noiseless value (its sign, or its mean with ``releases_means``).
    Leaks J without bound."""

    reads_secret = True
    guarantee = Guarantee.UNBOUNDED_LEAK

    def release(self, step: StepInput, ledger) -> Release:
        value = float(self.released_values(step)[self._secret.reveal()])
        likelihood = self.log_likelihood("exact", value, None, step)
        return Release(value=value, observed=value, kind="exact", cost=None, log_likelihood=likelihood)


class RawHalf(SecretHalf):
    """Reads J; releases the raw secret-subset mean m_J. Leaks J without bound (ablation only)."""

    name = "raw_half"
    releases_means = True


class QuantHalf(SecretHalf):
    """Reads J; releases sign(m_J) with no noise. Leaks J without bound: the negative control of ZPL's
    secret-independence test."""

    name = "quant_half"
    negative_control = True


class RandomSign(Mechanism):
    """Releases a uniform ±1 from the privacy generator every step: no signal, cost 0 (negative control
    for utility)."""

    name = "random_sign"
    reads_secret = False
    guarantee = Guarantee.ZERO_MI

    def release(self, step: StepInput, ledger) -> Release:
        value = 1.0 if self.rng.random() < 0.5 else -1.0
        return Release(value=value, observed=value, kind="coin", cost=0.0)
