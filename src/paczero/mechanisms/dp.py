"""DP zeroth-order baselines: DPZero (K = 1), DP-AggZO (K directions) and DP-ZO (Laplace or Gaussian).

These release all K directions of a step at once: an example's K estimates are clipped together, so they
override ``release_step`` and work on the (batch × K) matrix. They read no secret index; the privacy unit is
one example of the pool under add/remove-one neighbours (see ``paczero.privacy.dp``).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from paczero.channel import epsilon_matching_mi
from paczero.mechanisms.base import Mechanism, StepEstimates, StepRelease
from paczero.mechanisms.clipping import clip_rows
from paczero.privacy.dp import ACCOUNTANTS, DpLedger, DpPlan, default_accountant
from paczero.privacy.ledger import Guarantee


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


class JointMechanism(Mechanism):
    """Base of the DP baselines: per-example vectors v_i, clipped in L2 to C, summed over the Poisson batch,
    noised, divided by the expected batch q·N. Reads no secret; the guarantee is (ε, δ)-DP from the ledger."""

    reads_secret = False
    guarantee = Guarantee.DP
    noises: ClassVar[tuple[str, ...]] = ("gaussian",)
    clips_loss_difference: ClassVar[bool] = False

    @classmethod
    def step_size(cls, lr: float, directions: int) -> float:
        """η: the released g̃ is already a per-direction average over the batch."""
        return lr

    @classmethod
    def check_privacy(cls, privacy: Any) -> None:
        """Check the DP keys; fill in the default accountant and the ε matched to ``match_mi``."""
        name, noise = cls.name, privacy.noise
        if noise not in cls.noises:
            raise ValueError(f"{name} adds {' or '.join(cls.noises)} noise, not {noise!r}")
        privacy.accountant = privacy.accountant or default_accountant(noise)
        if privacy.accountant not in ACCOUNTANTS[noise]:
            known = " or ".join(ACCOUNTANTS[noise])
            raise ValueError(f"{noise} noise is accounted with {known}, not {privacy.accountant!r}")
        if privacy.sampling_rate is None or not 0 < privacy.sampling_rate <= 1:
            raise ValueError(
                f"{name} needs privacy.sampling_rate in (0, 1]: the Poisson rate q (expected batch q·N)"
            )
        if privacy.accountant != "pure" and privacy.delta <= 0:
            raise ValueError(f"{name} with {noise} noise needs privacy.delta > 0")
        if privacy.match_epsilon is not None:
            raise ValueError(f"privacy.match_epsilon sets an MI budget, which {name} does not spend")
        if privacy.match_mi is not None:
            if privacy.match_mi <= 0:
                raise ValueError("privacy.match_mi must be positive (nats)")
            matched = epsilon_matching_mi(
                privacy.match_mi, 0.0 if privacy.accountant == "pure" else privacy.delta
            )
            if privacy.epsilon is not None and not math.isclose(privacy.epsilon, matched, rel_tol=1e-9):
                raise ValueError(
                    f"privacy.epsilon = {privacy.epsilon} disagrees with privacy.match_mi = "
                    f"{privacy.match_mi} (matched ε = {matched:.6g}); set only one"
                )
            privacy.epsilon = matched
        if privacy.epsilon is None or privacy.epsilon <= 0:
            raise ValueError(f"{name} needs privacy.epsilon > 0 (or privacy.match_mi, an MI budget to match)")

    @classmethod
    def new_ledger(cls, privacy: Any, train: Any, pool_size: int) -> DpLedger:
        """(ε, δ) composition of one Poisson-subsampled noise event per step; dp-zo's C bounds the loss
        difference l⁺ − l⁻ = 2ε_zo·g, so the ledger's C is in g units."""
        scale = 2.0 * train.zo_eps if cls.clips_loss_difference else 1.0
        plan = DpPlan.build(
            epsilon=privacy.epsilon,
            delta=privacy.delta,
            steps=train.steps,
            sampling_rate=privacy.sampling_rate,
            clip=train.clip / scale,
            pool_size=pool_size,
            noise=privacy.noise,
            accountant=privacy.accountant,
        )
        return DpLedger(plan)

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


class DPZero(JointMechanism):
    """DPZero (K = 1). Reads the projected gradients g_i of a Poisson-sampled batch (rate q); clips each to
    |g_i| ≤ C; releases g̃ = (Σ_i clip(g_i) + N(0, σ²C²))/(q·N). Keeps no secret index; costs one
    Poisson-subsampled Gaussian event per step, (ε, δ)-DP over T steps by the accountant (add/remove-one)."""

    name = "dpzero"
    max_directions = 1

    def contributions(self, g: np.ndarray) -> np.ndarray:
        return g


class DPAggZO(JointMechanism):
    """DP-AggZO (K directions, 64 in the paper). Reads the (batch × K) projected gradients of a Poisson batch;
    each example's vector (g_i1..g_iK)/K is clipped in L2 to C; releases per direction
    g̃_k = (Σ_i clip(g_i/K)_k + N(0, σ²C²))/(q·N). Keeps no secret index; one Poisson-subsampled Gaussian event
    per step (L2 sensitivity C), (ε, δ)-DP over T steps by the accountant."""

    name = "dp-aggzo"

    def contributions(self, g: np.ndarray) -> np.ndarray:
        return g / g.shape[1]


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
