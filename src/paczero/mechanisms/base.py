"""The mechanism interface and the release records.

A mechanism sees per-example scalars, the public candidate subsets and the ledger's public state (posterior,
budget); never the model. The trainer calls one method, ``release_step``, with the step's (batch × K)
projected gradients; mechanisms that release each direction on its own implement ``release`` and inherit the
per-direction loop. A release is the only place the secret index J may be read.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from paczero.mechanisms.clipping import clip
from paczero.privacy.ledger import Guarantee, Ledger
from paczero.privacy.pac import PacLedger
from paczero.subsets import CandidateSubsets, Secret


@dataclass(frozen=True)
class StepEstimates:
    """A step's public release inputs: per-example projected gradients of each direction and the subsets.

    ``g`` is (batch × K), after the non-finite rule and before clipping: per-direction mechanisms clip each
    column and aggregate it over the candidate subsets; the DP baselines clip each example's row jointly.
    """

    g: np.ndarray
    subsets: CandidateSubsets
    rows: np.ndarray | None  # the batch's pool rows; None = the whole pool
    clip: float | None  # train.clip: per-example bound (None or 0: off)


@dataclass
class StepRelease:
    """Everything a step published, one entry per direction, and what it cost.

    ``update`` multiplies z_k in θ ← θ − step_size·Σ_k update_k·z_k. ``cost`` is the step's MI charge (None
    when some release is unbounded or the guarantee is not an MI one). ``clip_fraction`` is None when the
    batch is secret (DP), and so are the loss diagnostics the trainer would otherwise publish.
    """

    released: list[float] = field(default_factory=list)
    update: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    unanimous: list[bool] = field(default_factory=list)
    positive_fraction: list[float] = field(default_factory=list)
    q_plus: list[float | None] = field(default_factory=list)
    sigma: list[float | None] = field(default_factory=list)
    cost: float | None = 0.0
    clip_fraction: float | None = None
    batch_public: bool = True

    def add(self, release: Release, step: StepInput) -> None:
        """Append one direction's release and its public subset diagnostics."""
        self.released.append(float(release.observed))
        self.update.append(float(release.value))
        self.kinds.append(release.kind)
        self.unanimous.append(step.unanimous)
        self.positive_fraction.append(float((step.signs > 0).mean()))
        self.q_plus.append(release.q_plus)
        self.sigma.append(release.sigma)
        self.cost = None if release.cost is None or self.cost is None else self.cost + release.cost

    def to_record(self) -> dict[str, Any]:
        """The transcript fields of ``steps.jsonl`` that this release fills."""
        return {
            "released": self.released,
            "update": self.update,
            "kinds": self.kinds,
            "unanimous": self.unanimous,
            "positive_fraction": self.positive_fraction,
            "q_plus": self.q_plus,
            "sigma": self.sigma,
        }


@dataclass(frozen=True)
class StepInput:
    """Public per-direction inputs of a release: clipped estimates and their subset aggregates."""

    g: np.ndarray  # clipped per-example estimates over the step's batch (the pool by default)
    subsets: CandidateSubsets
    means: np.ndarray  # m_k, shape (M,)
    signs: np.ndarray  # s_k ∈ {−1, +1}, shape (M,)

    @classmethod
    def from_estimates(
        cls, g: np.ndarray, subsets: CandidateSubsets, rows: np.ndarray | None = None
    ) -> StepInput:
        """Aggregate g over each subset; with ``rows`` (a public minibatch), over the subset ∩ batch."""
        means = subsets.means(g, rows)
        return cls(g=g, subsets=subsets, means=means, signs=np.where(means >= 0, 1.0, -1.0))

    @property
    def unanimous(self) -> bool:
        return bool(np.all(self.signs == self.signs[0]))


@dataclass
class Release:
    """One published value Y_t and what it costs.

    ``value`` multiplies z in the update θ ← θ − η·value·z. ``cost`` is the MI charged in nats: 0 when Y_t is
    independent of J, None when the mechanism gives no bound (non-private references, leaky ablations).
    ``log_likelihood[k]`` = log P(Y_t | J = k) up to a constant, for the posterior; None when Y_t carries no
    information about J.
    """

    value: float
    observed: float
    kind: str  # "unanimous", "coin", "noisy", "exact", "public"
    cost: float | None
    sigma: float | None = None
    q_plus: float | None = None
    log_likelihood: np.ndarray | None = field(default=None, repr=False)
    charged: bool = field(default=False, repr=False)


class Mechanism(ABC):
    """A release rule. Subclasses state in their docstring what they read, release, keep secret and cost."""

    name: ClassVar[str]
    reads_secret: ClassVar[bool]
    guarantee: ClassVar[Guarantee]
    releases_means: ClassVar[bool] = False  # an exact release is a subset's mean, not its sign (raw_half)
    negative_control: ClassVar[bool] = False  # the leak the secret-independence audit must catch
    max_directions: ClassVar[int | None] = None  # the most directions K a step can release (None: any)

    def __init__(self, secret: Secret | None, rng: np.random.Generator):
        if self.reads_secret and secret is None:
            raise ValueError(f"mechanism {self.name!r} needs a secret index")
        self._secret = secret
        self.rng = rng

    @classmethod
    def check_privacy(cls, privacy: Any) -> None:
        """Check (and complete) the run's ``privacy`` config section for this mechanism; ValueError if wrong.

        Keys that only DP mechanisms read must be unset, and an MI budget is needed exactly when the
        guarantee spends one. Mechanisms with keys of their own override this.
        """
        for key in ("epsilon", "sampling_rate", "accountant", "match_mi"):
            if getattr(privacy, key) is not None:
                raise ValueError(f"privacy.{key} applies to DP mechanisms only")
        if privacy.noise != "gaussian":
            raise ValueError("privacy.noise applies to DP mechanisms only")
        if privacy.match_epsilon is not None and cls.guarantee is not Guarantee.MI_BUDGET:
            raise ValueError(
                f"privacy.match_epsilon sets an MI budget, which {cls.name} does not spend "
                "(a zero-MI mechanism already has I = 0)"
            )
        if cls.guarantee is Guarantee.MI_BUDGET and privacy.budget is None and privacy.match_epsilon is None:
            raise ValueError(f"{cls.name} needs privacy.budget (MI in nats, e.g. 0.33)")

    @classmethod
    def new_ledger(cls, privacy: Any, train: Any, pool_size: int) -> Ledger:
        """The run's ledger, from its ``privacy`` and ``train`` config sections: MI over T·K releases."""
        budget = privacy.budget if cls.guarantee is Guarantee.MI_BUDGET else None
        return PacLedger(privacy.subsets, train.steps * train.directions, budget, privacy.budget_schedule)

    @classmethod
    def step_size(cls, lr: float, directions: int) -> float:
        """The factor of Σ_k update_k·z_k in the weight update: η/K, each direction released on its own."""
        return lr / directions

    @classmethod
    def released_values(cls, step: StepInput) -> np.ndarray:
        """What each candidate subset would release without noise: its sign (or mean, ``releases_means``)."""
        return step.means if cls.releases_means else step.signs

    @classmethod
    def log_likelihood(
        cls, kind: str, observed: float, sigma: float | None, step: StepInput
    ) -> np.ndarray | None:
        """log P(Y = observed | J = k) for every candidate k, up to a constant; None when Y says nothing of J.

        The one place release likelihoods are computed: the ledger's posterior and the audit's attacker both
        use it. exact: the candidate's noiseless value must equal Y; noisy: Gaussian around its sign.
        """
        if kind in ("unanimous", "coin", "public"):
            return None
        values = cls.released_values(step)
        if kind == "exact":
            same = (
                np.isclose(values, observed, rtol=1e-12, atol=0.0)
                if cls.releases_means
                else values == observed
            )
            return np.where(same, 0.0, -np.inf)
        if kind == "noisy":
            return -((observed - values) ** 2) / (2.0 * sigma**2)
        raise ValueError(f"release kind {kind!r} has no likelihood model")

    def release_step(self, step: StepEstimates, ledger: Ledger) -> StepRelease:
        """Release every direction of a step in turn: clip, aggregate over the subsets, release, charge."""
        out = StepRelease()
        fractions = []
        for g in step.g.T:
            clipped, fraction = clip(g, step.clip)
            inputs = StepInput.from_estimates(clipped, step.subsets, step.rows)
            release = self.release(inputs, ledger)
            ledger.charge(release)
            out.add(release, inputs)
            fractions.append(fraction)
        out.clip_fraction = float(np.mean(fractions))
        return out

    def release(self, step: StepInput, ledger: Ledger) -> Release:
        """Publish Y_t for one direction (mechanisms that release directions one at a time)."""
        raise TypeError(f"{self.name} releases a step at once: call release_step")


def sign(x: float) -> float:
    """+1 for x >= 0, else −1 (the convention of s_k)."""
    return 1.0 if x >= 0 else -1.0
