"""DP zeroth-order baselines: DPZero (K = 1), DP-AggZO (K directions) and DP-ZO (Laplace or Gaussian).

These release all K directions of a step at once: an example's K estimates are clipped together, so they
override ``release_step`` and work on the (batch × K) matrix. They read no secret index; the privacy unit is
one example of the pool under add/remove-one neighbours (see ``accountants.py``).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from paczero.mechanisms.base import Guarantee, Mechanism, StepEstimates, StepRelease, register

if TYPE_CHECKING:
    from paczero.accountants import DpLedger, DpPlan


@dataclass
class JointRelease:
    """One DP step's published K-vector g̃ (θ ← θ − η·Σ_k g̃_k z_k) and its public noise scale.

    ``clip_fraction`` (the fraction of sampled examples that were clipped) depends on private data: it is for
    tests and local diagnostics and is never written to a released artefact.
    """

    values: np.ndarray
    noise_scale: float
    clip_fraction: float = field(repr=False)
    charged: bool = field(default=False, repr=False)


def clip_rows(v: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Scale each row v_i by min(1, C/‖v_i‖₂); returns the clipped rows and the fraction that were scaled."""
    if v.shape[0] == 0:
        return v, 0.0
    norms = np.linalg.norm(v, axis=1)
    scale = c / np.maximum(norms, c)
    return v * scale[:, None], float((norms > c).mean())


class JointMechanism(Mechanism):
    """Base of the DP baselines: per-example vectors v_i, clipped in L2 to C, summed over the Poisson batch,
    noised, divided by the expected batch q·N. Reads no secret; the guarantee is (ε, δ)-DP from the ledger."""

    reads_secret = False
    guarantee = Guarantee.DP
    noises: ClassVar[tuple[str, ...]] = ("gaussian",)
    max_directions: ClassVar[int | None] = None
    clips_loss_difference: ClassVar[bool] = False

    @classmethod
    def step_size(cls, lr: float, directions: int) -> float:
        """η: the released g̃ is already a per-direction average over the batch."""
        return lr

    def release_step(self, step: StepEstimates, ledger: DpLedger) -> StepRelease:
        """Release the step's K-vector and charge one DP event; the batch and its diagnostics stay secret."""
        joint = self.release_joint(step.g, ledger)
        ledger.charge(joint)
        k = len(joint.values)
        values = [float(v) for v in joint.values]
        return StepRelease(
            released=values,
            update=list(values),
            kinds=["noisy"] * k,
            q_plus=[None] * k,
            sigma=[joint.noise_scale] * k,
            cost=None,
            clip_fraction=None,
            batch_public=False,
        )

    @abstractmethod
    def contributions(self, g: np.ndarray) -> np.ndarray:
        """Per-example vectors v_i (rows) from the (batch × K) matrix of projected gradients g."""

    def release_joint(self, g: np.ndarray, ledger: DpLedger) -> JointRelease:
        """g̃ = (Σ_i clip_C(v_i) + noise)/(q·N), noise i.i.d. per direction from the privacy generator."""
        plan: DpPlan = ledger.plan
        clipped, fraction = clip_rows(self.contributions(g), plan.clip)
        total = clipped.sum(axis=0)
        scale = plan.noise_multiplier * plan.sensitivity
        if plan.noise == "gaussian":
            noise = self.rng.normal(0.0, scale, size=total.shape)
        else:
            noise = self.rng.laplace(0.0, scale, size=total.shape)
        return JointRelease(
            values=(total + noise) / plan.expected_batch, noise_scale=plan.noise_scale, clip_fraction=fraction
        )


@register
class DPZero(JointMechanism):
    """DPZero (K = 1). Reads the projected gradients g_i of a Poisson-sampled batch (rate q); clips each to
    |g_i| ≤ C; releases g̃ = (Σ_i clip(g_i) + N(0, σ²C²))/(q·N). Keeps no secret index; costs one
    Poisson-subsampled Gaussian event per step, (ε, δ)-DP over T steps by the accountant (add/remove-one)."""

    name = "dpzero"
    max_directions = 1

    def contributions(self, g: np.ndarray) -> np.ndarray:
        return g


@register
class DPAggZO(JointMechanism):
    """DP-AggZO (K directions, 64 in the paper). Reads the (batch × K) projected gradients of a Poisson batch;
    each example's vector (g_i1..g_iK)/K is clipped in L2 to C; releases per direction
    g̃_k = (Σ_i clip(g_i/K)_k + N(0, σ²C²))/(q·N). Keeps no secret index; one Poisson-subsampled Gaussian event
    per step (L2 sensitivity C), (ε, δ)-DP over T steps by the accountant."""

    name = "dp-aggzo"

    def contributions(self, g: np.ndarray) -> np.ndarray:
        return g / g.shape[1]


@register
class DPZO(JointMechanism):
    """DP-ZO (K = 1). Reads the per-example loss differences l⁺_i − l⁻_i = 2ε_zo·g_i of a Poisson batch, clips
    them to |·| ≤ C (``train.clip`` bounds the loss difference, not g), sums, adds Laplace noise of scale C/ε₀
    (pure ε-DP) or Gaussian noise N(0, σ²C²) ((ε, δ)-DP), divides by q·N and releases it in gradient units
    (÷ 2ε_zo). Keeps no secret index; one Poisson-subsampled noise event per step."""

    name = "dp-zo"
    noises = ("gaussian", "laplace")
    max_directions = 1
    clips_loss_difference = True

    def contributions(self, g: np.ndarray) -> np.ndarray:
        # the ledger's C is already in g units (C / 2ε_zo): clipping g there clips the loss difference at C
        return g
