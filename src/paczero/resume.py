"""Resume: load the newest checkpoint into a trainer, then re-apply the steps released after it.

A released step is never computed again: its update is replayed from ``steps.jsonl`` (no forward pass) and
the generators and ledger are set to the private state saved with the last released step, so the next step
draws exactly what an uninterrupted run would have. A step that was computed but whose line was never
written was never released, so it is simply computed afresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paczero.checkpoint import CheckpointError, private_state_at, released_lines
from paczero.models.loaders import load_trainable_state, trainable_state
from paczero.transcript import StepRecord

if TYPE_CHECKING:
    from paczero.trainer import Trainer

# (dev history, best, lines released after the checkpoint, private state saved with the last of them)
Restored = tuple[list[dict], Any, list[str], dict[str, Any] | None]


def restore(trainer: Trainer) -> tuple[list[dict[str, Any]], Any] | None:
    """On --resume: (dev history, best) with every released step re-applied; None when not resuming."""
    checkpoints = trainer.checkpoints
    restored = _load_checkpoint(trainer) if checkpoints is not None and checkpoints.resume else None
    if trainer.dist.active:
        restored = _sync_from_main(trainer, restored)
    if restored is None:
        return None
    history, best, pending, state = restored
    for line in pending:
        record = StepRecord.from_line(line)
        trainer.replay(record)
        trainer.records.append(record)
        best = trainer.after_release(record, history, best)
    if pending:
        trainer.load_private_state(state)
    return history, best


def _load_checkpoint(trainer: Trainer) -> Restored | None:
    """The newest checkpoint loaded into ``trainer``; None when there is none (the run starts afresh)."""
    snapshot = trainer.checkpoints.load()
    if snapshot is None:
        return None
    state, run_dir = snapshot.state, trainer.checkpoints.run_dir
    try:
        load_trainable_state(trainer.loaded, snapshot.weights)
        trainer.load_state_dict(state, snapshot.private)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"the newest checkpoint in {run_dir} does not fit this run: {err}") from None
    if len(trainer.records) != snapshot.step:
        raise CheckpointError(f"the newest checkpoint in {run_dir} is inconsistent: step {snapshot.step}")
    released = released_lines(run_dir, state["transcript"])
    pending = released[snapshot.step :]
    last_state = private_state_at(run_dir, len(released)) if pending else None
    trainer.outputs.reopen(released)
    best_weights = trainable_state(trainer.loaded) if snapshot.best is None else snapshot.best
    return state["history"], (state["best"]["key"], state["best"]["step"], best_weights), pending, last_state


def _sync_from_main(trainer: Trainer, restored: Restored | None) -> Restored | None:
    """Rank 0 read the checkpoint; every other rank takes the same state from it (weights, generators,
    ledger, records), so a run resumes under any number of ranks."""
    from paczero.distributed import broadcast_object

    payload = None
    if trainer.dist.is_main and restored is not None:
        payload = {
            "restored": restored,
            "weights": trainable_state(trainer.loaded),
            "state": trainer.state_dict(),
            "private": trainer.private_state_dict(),
        }
    payload = broadcast_object(payload, trainer.dist)
    if payload is None or trainer.dist.is_main:
        return restored
    load_trainable_state(trainer.loaded, payload["weights"])
    trainer.load_state_dict(payload["state"], payload["private"])
    return payload["restored"]


__all__ = ["restore"]
