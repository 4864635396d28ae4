"""Release rules behind one interface, looked up by name."""

from paczero.mechanisms import dp, mi, reference, zpl  # noqa: F401  (registration side effects)
from paczero.mechanisms.base import (
    MECHANISMS,
    Mechanism,
    Release,
    StepEstimates,
    StepInput,
    StepRelease,
    get_mechanism,
    negative_control,
    register,
)
from paczero.privacy.ledger import Guarantee

__all__ = [
    "MECHANISMS",
    "Guarantee",
    "Mechanism",
    "Release",
    "StepEstimates",
    "StepInput",
    "StepRelease",
    "get_mechanism",
    "negative_control",
    "register",
]
