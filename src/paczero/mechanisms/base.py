"""The mechanism interface, the release record and the name registry.

A mechanism sees per-example scalars, the public candidate subsets and the ledger's public state (posterior,
budget); never the model. ``release`` is the only place the secret index J may be read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from paczero.subsets import CandidateSubsets, Secret

if TYPE_CHECKING:
    from paczero.accounting import PacLedger


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
    guarantee: ClassVar[str]  # "none", "zero-mi", "mi-budget", "unbounded-leak", "dp"
    joint: ClassVar[bool] = False  # True: releases a step's K directions at once (``release_step``; DP)

    def __init__(self, secret: Secret | None, rng: np.random.Generator):
        if self.reads_secret and secret is None:
            raise ValueError(f"mechanism {self.name!r} needs a secret index")
        self._secret = secret
        self.rng = rng

    @abstractmethod
    def release(self, step: StepInput, ledger: PacLedger) -> Release:
        """Publish Y_t for one direction."""


MECHANISMS: dict[str, type[Mechanism]] = {}


def register(cls: type[Mechanism]) -> type[Mechanism]:
    """Class decorator adding a mechanism to the registry under its ``name``."""
    if cls.name in MECHANISMS:
        raise ValueError(f"mechanism {cls.name!r} is registered twice")
    MECHANISMS[cls.name] = cls
    return cls


def sign(x: float) -> float:
    """+1 for x >= 0, else −1 (the convention of s_k)."""
    return 1.0 if x >= 0 else -1.0
