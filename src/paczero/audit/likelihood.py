"""The likelihood of a recorded release under every candidate subset, shared by both audits' attackers."""

from __future__ import annotations

import numpy as np

from paczero.mechanisms.base import StepInput

EXACT_ON_MEANS = ("raw_half",)  # mechanisms whose exact release is the subset mean, not its sign


class TranscriptNotApplicable(ValueError):
    """The run's releases are not of a kind the transcript attacker models (e.g. DP baselines)."""


def release_log_likelihood(
    kind: str, observed: float, sigma: float | None, step: StepInput, on_means: bool
) -> np.ndarray:
    """log P(Y_t = observed | J = k, public history), up to a constant, for every candidate k.

    unanimous/exact: the noiseless value each candidate would release (its sign, or its mean for raw_half)
    must equal Y; noisy: Gaussian around each candidate's sign; coin/public: the same for every k.
    """
    values = step.means if on_means else step.signs
    if kind in ("unanimous", "exact"):
        if on_means:
            return np.where(np.isclose(values, observed, rtol=1e-12, atol=0.0), 0.0, -np.inf)
        return np.where(values == observed, 0.0, -np.inf)
    if kind == "noisy":
        return -((observed - values) ** 2) / (2.0 * sigma**2)
    if kind in ("coin", "public"):
        return np.zeros(step.signs.shape)
    raise TranscriptNotApplicable(f"release kind {kind!r} is not modelled by the transcript attack")
