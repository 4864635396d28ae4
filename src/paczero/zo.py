"""Zeroth-order engine: seeded Gaussian directions, in-place perturbation and per-example estimates.

A direction z ~ N(0, I_d) is never stored: it is regenerated tensor by tensor from its public seed with a
dedicated ``torch.Generator``, so K directions cost no parameter-sized buffer. Every change to the weights
is a list of ``(seed, coefficient)`` pairs applied in one pass, which is how restore and update are fused:
after the minus perturbation, θ ← θ + (ε − η·b)·z is a single regeneration of z. :class:`StepWalk` is the
one place that decides which ``apply`` calls a step makes; training and replay both go through it, so a
replay of the released transcript reproduces the trained weights bitwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


class Directions:
    """Regenerates the Gaussian direction of a seed over a fixed, ordered list of trainable tensors."""

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        if not params:
            raise ValueError("no trainable parameters: nothing for zeroth-order optimisation to perturb")
        self.params = list(params)
        self.numel = sum(p.numel() for p in self.params)

    def _generator(self, seed: int, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        return gen

    @torch.no_grad()
    def apply(self, terms: Sequence[tuple[int, float]]) -> None:
        """θ ← θ + Σ_j c_j·z(seed_j), one tensor at a time, each z regenerated (fp32) and never kept."""
        merged: dict[int, float] = {}
        for seed, coeff in terms:  # one regeneration per distinct seed: restore and update fuse here
            merged[int(seed)] = merged.get(int(seed), 0.0) + float(coeff)
        terms = [(s, c) for s, c in merged.items() if c != 0.0]
        if not terms:
            return
        gens = {}
        for p in self.params:
            for seed, coeff in terms:
                key = (seed, p.device)
                if key not in gens:
                    gens[key] = self._generator(seed, p.device)
                z = torch.randn(p.shape, generator=gens[key], device=p.device, dtype=torch.float32)
                if p.dtype in (torch.float32, torch.float64):
                    p.add_(z.to(p.dtype), alpha=coeff)
                else:  # half precision: add in fp32, round once
                    p.copy_((p.float() + coeff * z).to(p.dtype))

    def materialise(self, seed: int) -> list[torch.Tensor]:
        """The direction as tensors, for tests and diagnostics only (costs a parameter-sized buffer)."""
        gens: dict = {}
        out = []
        for p in self.params:
            if p.device not in gens:
                gens[p.device] = self._generator(seed, p.device)
            out.append(torch.randn(p.shape, generator=gens[p.device], device=p.device, dtype=torch.float32))
        return out


@dataclass
class Estimate:
    """Per-example two-point estimates for one direction, plus the free training-loss estimate."""

    g: np.ndarray  # (l+ - l-) / (2ε) per example, after the non-finite rule, before clipping
    loss: float  # mean of (l+ + l-)/2: the training loss at θ, without a third forward pass
    n_nonfinite: int


def two_point_estimate(plus: torch.Tensor, minus: torch.Tensor, eps: float) -> Estimate:
    """g_i = (l+_i − l−_i)/(2ε) from the losses at θ+εz and θ−εz.

    Non-finite per-example values are set to 0 by a rule that reads no secret (counted in ``n_nonfinite``).
    """
    plus_np = plus.double().cpu().numpy()
    minus_np = minus.double().cpu().numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        g = (plus_np - minus_np) / (2.0 * eps)
        mid = (plus_np + minus_np) / 2.0
    bad = ~np.isfinite(g)
    g[bad] = 0.0
    finite_mid = mid[np.isfinite(mid)]
    loss = float(finite_mid.mean()) if finite_mid.size else float("nan")
    return Estimate(g=g, loss=loss, n_nonfinite=int(bad.sum()))


class StepWalk:
    """The exact sequence of weight changes in one step, shared by training and replay.

    ``plus(seed)`` moves θ to θ+εz (fused with restoring the previous direction), ``minus(seed)`` to θ−εz,
    ``update(seed, value)`` queues θ ← θ − step_size·value·z (the mechanism's step size), ``commit()``
    marks the step complete, and ``finish()`` restores θ and applies the queued updates in one fused pass, or
    only restores θ if the step never committed.
    """

    def __init__(self, directions: Directions, eps: float, step_size: float):
        self.directions, self.eps = directions, eps
        self.scale = step_size
        self.pending: list[tuple[int, float]] = []  # what brings the weights back to θ
        self.updates: list[tuple[int, float]] = []
        self.committed = False

    def plus(self, seed: int) -> None:
        self.directions.apply([*self.pending, (seed, self.eps)])
        self.pending = [(seed, -self.eps)]

    def minus(self, seed: int) -> None:
        self.directions.apply([(seed, -2.0 * self.eps)])
        self.pending = [(seed, self.eps)]

    def update(self, seed: int, value: float) -> None:
        self.updates.append((seed, -self.scale * value))

    def commit(self) -> None:
        self.committed = True

    def finish(self) -> None:
        self.directions.apply([*self.pending, *(self.updates if self.committed else [])])
        self.pending, self.updates = [], []


def replay_step(
    directions: Directions, eps: float, seeds: Sequence[int], values: Sequence[float], step_size: float
) -> None:
    """Apply one released step (its seeds and update values) to the weights, exactly as training did."""
    walk = StepWalk(directions, eps, step_size)
    for seed, value in zip(seeds, values, strict=True):
        walk.plus(seed)
        walk.minus(seed)
        walk.update(seed, value)
    walk.commit()
    walk.finish()
