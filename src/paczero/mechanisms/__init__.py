"""Release rules behind one interface, looked up by name."""

from paczero.mechanisms.base import Mechanism, Release, StepEstimates, StepInput, StepRelease
from paczero.mechanisms.registry import (
    MECHANISMS,
    get_mechanism,
    negative_control,
    register,
    registered,
    unregister,
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
    "registered",
    "unregister",
]
