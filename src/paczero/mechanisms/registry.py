"""The mechanism registry: each release rule under its ``name``, the one place names map to classes.

The library's mechanisms are registered here, explicitly and in this order (the order of the docs). Code
outside the library adds its own with :func:`register`, and a test adds one for its duration only with
:func:`registered`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from paczero.mechanisms.base import Mechanism
from paczero.mechanisms.dp import DPZO, DPAggZO, DPZero
from paczero.mechanisms.mi import PACZeroMI
from paczero.mechanisms.reference import MeZO, QuantFull, QuantHalf, RandomSign, RawHalf
from paczero.mechanisms.zpl import ZPL

BUILT_IN: tuple[type[Mechanism], ...] = (
    DPZero,
    DPAggZO,
    DPZO,
    PACZeroMI,
    MeZO,
    QuantFull,
    RawHalf,
    QuantHalf,
    RandomSign,
    ZPL,
)
MECHANISMS: dict[str, type[Mechanism]] = {}


def register(cls: type[Mechanism]) -> type[Mechanism]:
    """Add a mechanism under its ``name`` (usable as a class decorator); refuse a name already taken."""
    if cls.name in MECHANISMS:
        raise ValueError(f"mechanism {cls.name!r} is registered twice")
    MECHANISMS[cls.name] = cls
    return cls


def unregister(cls: type[Mechanism]) -> None:
    """Remove a mechanism that :func:`register` added; the library's own stay."""
    if cls in BUILT_IN:
        raise ValueError(f"mechanism {cls.name!r} is built in and cannot be removed")
    if MECHANISMS.get(cls.name) is not cls:
        raise KeyError(f"mechanism {cls.name!r} is not registered")
    del MECHANISMS[cls.name]


@contextmanager
def registered(*classes: type[Mechanism]) -> Iterator[None]:
    """``classes`` registered for the duration of a ``with`` block (tests, experiments), then removed."""
    added: list[type[Mechanism]] = []
    try:
        for cls in classes:
            added.append(register(cls))
        yield
    finally:
        for cls in reversed(added):
            unregister(cls)


def get_mechanism(name: str) -> type[Mechanism]:
    """The registered class for ``name``, with a clear error listing the known names."""
    try:
        return MECHANISMS[name]
    except KeyError:
        known = ", ".join(sorted(MECHANISMS))
        raise ValueError(f"unknown mechanism {name!r}; known mechanisms: {known}") from None


def negative_control() -> type[Mechanism]:
    """The leak the secret-independence audit runs to show it catches one: the first registered control."""
    controls = [cls for cls in MECHANISMS.values() if cls.negative_control]
    if not controls:
        raise LookupError("no negative control is registered")
    return controls[0]


for _mechanism in BUILT_IN:
    register(_mechanism)
