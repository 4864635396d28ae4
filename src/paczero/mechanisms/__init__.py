"""Release rules behind one interface, looked up by name."""

from paczero.mechanisms import dp, mi, reference, zpl  # noqa: F401  (registration side effects)
from paczero.mechanisms.base import (
    MECHANISMS,
    Guarantee,
    Mechanism,
    Release,
    StepEstimates,
    StepInput,
    StepRelease,
    register,
)
from paczero.mechanisms.mi import BudgetExhausted

__all__ = [
    "MECHANISMS",
    "BudgetExhausted",
    "Guarantee",
    "Mechanism",
    "Release",
    "StepEstimates",
    "StepInput",
    "StepRelease",
    "get_mechanism",
    "register",
]


def get_mechanism(name: str) -> type[Mechanism]:
    """The registered class for ``name``, with a clear error listing the known names."""
    try:
        return MECHANISMS[name]
    except KeyError:
        known = ", ".join(sorted(MECHANISMS))
        raise ValueError(f"unknown mechanism {name!r}; known mechanisms: {known}") from None
