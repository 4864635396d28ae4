"""The run's public generators and their first draws: directions, then data (candidate subsets first, then
public minibatches). Audits rebuild the candidate subsets from here exactly as the trainer drew them. Also
the saving and restoring of generators' states, which checkpoints and resume use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from paczero.subsets import CandidateSubsets, build_subsets

if TYPE_CHECKING:
    from paczero.config import RunConfig


def public_generator(seed: int, stream: int) -> np.random.Generator:
    """Stream ``stream`` of the public seed ``seed``: independent of every other stream."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


def direction_generator(cfg: RunConfig) -> np.random.Generator:
    """The public generator of the direction seeds."""
    return public_generator(cfg.train.seed, 0)


def data_generator(cfg: RunConfig) -> np.random.Generator:
    """The public data generator: candidate subsets first, then the public minibatches."""
    return public_generator(cfg.task.data_seed, 1)


def public_subsets(
    cfg: RunConfig, pool_size: int, data_rng: np.random.Generator | None = None
) -> CandidateSubsets:
    """A run's candidate subsets: the first draws of its data generator, so audits rebuild them exactly."""
    rng = data_generator(cfg) if data_rng is None else data_rng
    return build_subsets(pool_size, cfg.privacy.subsets, rng)


MAX_MINIBATCH_DRAWS = 100_000  # a backstop: RunConfig refuses settings that would need about this many


def public_minibatch(data_rng: np.random.Generator, subsets: CandidateSubsets, size: int) -> np.ndarray:
    """Sorted pool rows of a public minibatch, from the data generator (never from anything secret).

    A draw that leaves a candidate subset empty is redrawn: a public rule, depending only on the public
    membership, so the minibatch changes no privacy accounting.
    """
    for _ in range(MAX_MINIBATCH_DRAWS):
        rows = np.sort(data_rng.choice(subsets.n, size=size, replace=False))
        if np.all(subsets.membership[:, rows].sum(axis=1) > 0):
            return rows
    raise RuntimeError(
        f"no public minibatch of {size} examples met every one of the {subsets.m} candidate subsets "
        f"in {MAX_MINIBATCH_DRAWS} draws: use fewer subsets or a larger train.batch_size"
    )


def generator_states(gens: dict[str, np.random.Generator]) -> dict[str, Any]:
    """Each generator's state by name (JSON-ready)."""
    return {name: rng.bit_generator.state for name, rng in gens.items()}


def load_generator_states(gens: dict[str, np.random.Generator], states: dict[str, Any]) -> None:
    """Set each generator of ``gens`` to its saved state; refuse states saved for other generators."""
    if not set(gens) <= set(states):
        raise ValueError(f"the saved generators {sorted(states)} are not this run's {sorted(gens)}")
    for name, rng in gens.items():
        rng.bit_generator.state = states[name]
