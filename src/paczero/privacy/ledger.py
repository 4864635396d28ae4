"""What every ledger offers the trainer and the mechanisms, the guarantees a run can claim, and the errors
a refused release raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

import numpy as np


class Guarantee(str, Enum):
    """What a mechanism promises about the secret; its value is the name written in summaries."""

    NONE = "none"  # non-private reference
    ZERO_MI = "zero-mi"  # I(S*; Y_1:T) = 0
    MI_BUDGET = "mi-budget"  # I(S*; Y_1:T) <= B nats
    UNBOUNDED_LEAK = "unbounded-leak"  # reads J without noise (ablations, negative controls)
    DP = "dp"  # (ε, δ)-DP of every pool example

    def __str__(self) -> str:
        return self.value

    @property
    def bounds_mi(self) -> bool:
        """Whether the ledger's MI total bounds what the run reveals about J."""
        return self in (Guarantee.ZERO_MI, Guarantee.MI_BUDGET)

    @property
    def is_dp(self) -> bool:
        return self is Guarantee.DP

    @property
    def spends_budget(self) -> bool:
        """Whether releases are noisy and charged against a budget (MI or ε)."""
        return self in (Guarantee.MI_BUDGET, Guarantee.DP)


class BudgetExhausted(RuntimeError):
    """A release would need privacy budget (MI or ε) that the run no longer has."""


class BudgetExceeded(BudgetExhausted):
    """A release whose charge would take the ledger past its budget: refused, nothing counted."""


class Ledger(ABC):
    """Accounts for a run's releases, each exactly once; checkpointed through ``state_dict``."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True when no further release fits the budget."""

    @abstractmethod
    def secret_batch(self, rng: np.random.Generator, n: int) -> np.ndarray | None:
        """The step's secret batch of pool rows (DP Poisson sampling), or None when the batch is public."""

    @abstractmethod
    def step_fields(self, guarantee: Guarantee, cost: float | None) -> dict[str, float | None]:
        """The accounting fields a step record publishes (``mi_step``, ``mi_spent``, ``epsilon_spent``)."""

    @abstractmethod
    def charge(self, release: Any) -> None:
        """Account for one release; raise ``BudgetExhausted`` (and count nothing) when it does not fit."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything accumulated so far, JSON-safe."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s output; refuse one planned for a different run."""

    @abstractmethod
    def summary(self, guarantee: Guarantee) -> Any:
        """The dataclass a user reads in ``summary.json``."""
