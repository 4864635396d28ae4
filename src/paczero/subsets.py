"""Candidate subsets of the pool, the secret index, and subset aggregation.

Every example joins exactly M/2 of the M candidate subsets, so each record's prior probability of being
in the secret subset S* = S_J is exactly 1/2. The subsets are public (the adversary knows them); only J
is secret. J lives in a :class:`Secret` whose value is read through :meth:`Secret.reveal`, which by
convention only a mechanism's ``release`` calls (a test scans the sources for that).
"""

from __future__ import annotations

import secrets as _os_secrets
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CandidateSubsets:
    """Membership matrix (M × N, 0/1) and the per-subset sizes; aggregation is one matrix product."""

    membership: np.ndarray  # float64 (M, N): 1 if example n is in subset m

    def __post_init__(self) -> None:
        sizes = self.membership.sum(axis=1)
        if np.any(sizes == 0):
            empty = np.flatnonzero(sizes == 0).tolist()
            raise ValueError(f"candidate subsets {empty[:5]} are empty: use a larger pool or fewer subsets")

    @property
    def m(self) -> int:
        return int(self.membership.shape[0])

    @property
    def n(self) -> int:
        return int(self.membership.shape[1])

    @property
    def sizes(self) -> np.ndarray:
        return self.membership.sum(axis=1)

    def means(self, g: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """m_k = mean of g over subset k, for every k at once; ``rows`` restricts to a batch of the pool."""
        membership = self.membership if rows is None else self.membership[:, rows]
        if g.shape != (membership.shape[1],):
            raise ValueError(f"expected {membership.shape[1]} per-example values, got shape {g.shape}")
        sizes = membership.sum(axis=1)
        if np.any(sizes == 0):
            raise ValueError("a candidate subset has no example in this batch")
        return (membership @ g) / sizes

    def signs(self, g: np.ndarray) -> np.ndarray:
        """s_k = +1 if m_k >= 0 else −1."""
        return np.where(self.means(g) >= 0, 1.0, -1.0)


def build_subsets(n: int, m: int, rng: np.random.Generator) -> CandidateSubsets:
    """Each of the n examples joins exactly m/2 subsets chosen uniformly at random (m even, ≥ 2)."""
    if m < 2 or m % 2:
        raise ValueError(f"the number of candidate subsets must be even and at least 2, got {m}")
    if n < 1:
        raise ValueError("the pool is empty")
    membership = np.zeros((m, n))
    for i in range(n):
        membership[rng.permutation(m)[: m // 2], i] = 1.0
    return CandidateSubsets(membership)


class Secret:
    """The secret index J. Its repr hides the value so it cannot slip into logs or exceptions."""

    __slots__ = ("_index", "_m")

    def __init__(self, index: int, m: int):
        if not 0 <= index < m:
            raise ValueError(f"secret index must lie in [0, {m}), got a value outside it")
        self._index = int(index)
        self._m = int(m)

    @property
    def m(self) -> int:
        return self._m

    def reveal(self) -> int:
        """J itself: call only inside a mechanism's release (and when writing the 0600 secret file)."""
        return self._index

    def __repr__(self) -> str:
        return f"Secret(<hidden>, m={self._m})"

    __str__ = __repr__


def privacy_entropy(seed: int | None, secure: bool) -> int:
    """The privacy root entropy: 128 bits from the OS CSPRNG, or the configured seed (insecure)."""
    if secure:
        return _os_secrets.randbits(128)
    if seed is None:
        raise ValueError("a privacy seed is required unless secure mode is on")
    return seed


def privacy_generators(entropy: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The privacy streams, independent children of one root: J, coins and noise, DP Poisson sampling.

    Splitting them keeps the coin/noise sequence the same whether J is drawn or fixed by the config. The
    sampling stream must be secret too: amplification by subsampling assumes the attacker cannot tell which
    records a step sampled.
    """
    children = np.random.SeedSequence(entropy).spawn(3)
    secret, noise, sampling = (np.random.Generator(np.random.PCG64DXSM(seq)) for seq in children)
    return secret, noise, sampling


def draw_secret(m: int, rng: np.random.Generator) -> Secret:
    """J uniform on [M] from the privacy generator."""
    return Secret(int(rng.integers(m)), m)
