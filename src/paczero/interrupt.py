"""Stopping a run cleanly: SIGINT/SIGTERM ask for a checkpoint after the current step, not a kill."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: the run saved a checkpoint after the current step and stopped."""

    def __init__(self, signum: int, step: int, path: Path):
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} after step {step}; checkpoint saved in {path}")


class StopListener(Protocol):
    """What a signal handler sets: the signal that asked for a stop (None while none has)."""

    stop_signal: int | None


@contextmanager
def graceful_stop(listener: StopListener | None) -> Iterator[None]:
    """While training, SIGINT/SIGTERM set ``listener.stop_signal``: checkpoint and stop after this step.

    A second signal restores the previous handler, so it then acts at once. Outside the main thread (where
    handlers cannot be set) this does nothing.
    """
    if listener is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if listener.stop_signal is not None:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        listener.stop_signal = signum
        print(f"paczero: {signal.Signals(signum).name} received; stopping after this step", flush=True)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["Interrupted", "StopListener", "graceful_stop"]
