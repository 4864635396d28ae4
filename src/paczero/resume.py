"""Resume: where a stopped run continues, and which config it may continue under.

A released step is never computed again: the steps released after the newest checkpoint are re-applied from
their released values in ``steps.jsonl`` (no forward pass), and the generators and ledger are set to the
private state saved with the last released step, so the next step draws exactly what an uninterrupted run
would have. A step that was computed but whose line was never written was never released, so it is simply
computed afresh. This module reads the run directory; the trainer applies what it returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paczero.checkpoint import Checkpointer, CheckpointError, Snapshot
from paczero.config import RunConfig, apply_override, build_config, load_yaml_tree
from paczero.rundir import (
    CONFIG,
    STATE,
    TRANSCRIPT,
    check_run_dir,
    public_run_config,
    read_private_lines,
    read_secret,
    write_private,
)
from paczero.transcript import StepRecord, bound_config

RESUMABLE_KEYS = ("train.progress", "train.checkpoint_every", "train.report_to")


@dataclass
class ResumePoint:
    """Where a resumed run continues: the newest checkpoint, and the steps released after it."""

    run_dir: Path
    snapshot: Snapshot
    released: list[str]  # every released line of steps.jsonl: the checkpoint's first, then ``pending``
    pending: list[StepRecord]  # released after the checkpoint: re-applied, never computed again
    step_state: dict[str, Any] | None  # the private state saved with the last of ``pending`` (None if none)


def resume_point(checkpoints: Checkpointer) -> ResumePoint | None:
    """The newest checkpoint and the steps released after it; None when there is none (a fresh start)."""
    snapshot = checkpoints.load()
    if snapshot is None:
        return None
    run_dir = checkpoints.run_dir
    checkpointed = snapshot.state.get("transcript")
    if not isinstance(checkpointed, list) or len(checkpointed) != snapshot.step:
        raise CheckpointError(f"the newest checkpoint in {run_dir} is inconsistent: step {snapshot.step}")
    released = released_lines(run_dir, checkpointed)
    pending = [StepRecord.from_line(line) for line in released[snapshot.step :]]
    step_state = private_state_at(run_dir, len(released)) if pending else None
    return ResumePoint(run_dir, snapshot, released, pending, step_state)


def released_lines(run_dir: Path, checkpointed: list[str]) -> list[str]:
    """Every complete line of ``steps.jsonl``; those a checkpoint holds must be its first lines.

    On resume, the lines after the checkpoint's are re-applied from their released values, never computed
    again; a torn last line was never released.
    """
    path = run_dir / TRANSCRIPT
    raw = path.read_text() if path.is_file() else ""
    lines = raw[: raw.rfind("\n") + 1].splitlines()
    if lines[: len(checkpointed)] != checkpointed:
        raise CheckpointError(
            f"cannot resume {run_dir}: {TRANSCRIPT} does not begin with the "
            f"{len(checkpointed)} lines of the newest checkpoint"
        )
    return lines


def private_state_at(run_dir: Path, step: int) -> dict[str, Any]:
    """The private state saved with released step ``step``; later lines (never released) are dropped."""
    path = run_dir / STATE
    lines = [line for line in read_private_lines(path) if line["step"] <= step]
    if not lines or lines[-1]["step"] != step:
        raise CheckpointError(f"cannot resume {run_dir}: {STATE} has no state for released step {step}")
    write_private(path, "".join(json.dumps(line) + "\n" for line in lines))
    return lines[-1]


def resume_config(run_dir: str | Path, config: str | Path | None, overrides: list[str]) -> RunConfig:
    """The config to resume a run with: its ``config.yaml`` plus J and the privacy seed from the secret file.

    Overrides may only change keys that alter neither the transcript nor the accounting (RESUMABLE_KEYS); a
    ``config`` file, when given, must describe the same run.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume=True)
    tree = load_yaml_tree(run_dir / CONFIG)
    saved = bound_config(public_run_config(run_dir).to_dict())
    if config is not None:
        tree = load_yaml_tree(config)
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        secret = read_secret(run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(f"cannot resume: {err}") from None
    privacy = tree.setdefault("privacy", {})
    privacy.update(secret_index=secret["secret_index"], seed=None if secret["secure"] else secret["entropy"])
    cfg = build_config(tree)
    refuse_changes(saved, bound_config(cfg.to_dict()))
    return cfg


def refuse_changes(saved: dict[str, Any], new: dict[str, Any]) -> None:
    """CheckpointError unless the bound config ``new`` equals the ``saved`` one a run was accounted under."""
    changed = [
        f"{section}.{key} ({value!r} -> {new.get(section, {}).get(key)!r})"
        for section, values in saved.items()
        for key, value in values.items()
        if new.get(section, {}).get(key) != value
    ]
    if changed:
        raise CheckpointError(
            "resume refused: the config differs from the run being resumed at "
            + ", ".join(changed)
            + "; the steps already released were accounted under the original config "
            f"(only {', '.join(RESUMABLE_KEYS)} may change on resume)"
        )


__all__ = [
    "RESUMABLE_KEYS",
    "ResumePoint",
    "private_state_at",
    "refuse_changes",
    "released_lines",
    "resume_config",
    "resume_point",
]
