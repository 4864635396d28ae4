"""Run library code that draws from torch's global RNG while leaving that RNG's state untouched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def preserve_global_rng(device: torch.device) -> Iterator[None]:
    """Run library code that draws from the global RNG without changing the global RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
