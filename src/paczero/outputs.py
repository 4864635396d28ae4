"""What a run writes into its directory: the private secret and per-step state, the public transcript,
summary, privacy statement, model and model card, and the private timing.

Every public file is a function of public inputs and released values; anything that depends on the secret,
the privacy randomness or timing goes to the private area (``paczero.rundir``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from paczero import __version__
from paczero.config import RunConfig
from paczero.models.loaders import LoadedModel, save_model
from paczero.privacy.ledger import Guarantee
from paczero.report.card import model_card, privacy_context, privacy_statement
from paczero.rundir import (
    CONFIG,
    INSECURE_NOTE,
    MODEL,
    MODEL_CARD,
    STATE,
    STATEMENT,
    SUMMARY,
    append_private_line,
    atomic_write,
    private_dir,
    write_secret,
    write_timing,
    writing,
)
from paczero.subsets import Secret
from paczero.tracking import Trackers, open_trackers
from paczero.transcript import StepRecord, TranscriptWriter, genesis_hash


class RunOutputs:
    """The writer of one run directory; the trainer hands it records and results, it decides where they go."""

    def __init__(self, run_dir: Path, cfg: RunConfig):
        self.run_dir = run_dir
        self.cfg = cfg
        self.transcript: TranscriptWriter | None = None
        self.trackers = Trackers([])

    def start(self, secret: Secret, entropy: int) -> None:
        """A fresh run: the private secret first (a run that dies after this can be resumed), the public
        config, an empty transcript and the trackers. The one writer that reads J."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_secret(self.run_dir, secret.reveal(), secret.m, entropy, self.cfg.privacy.secure)
        atomic_write(self.run_dir / CONFIG, yaml.safe_dump(self.cfg.to_dict(), sort_keys=False).encode())
        self.reopen([])

    def reopen(self, released: list[str]) -> None:
        """Continue the transcript after its ``released`` lines (resume), and open the trackers."""
        self.transcript = TranscriptWriter(self.run_dir, genesis_hash(self.cfg.to_dict()), released)
        self.trackers = open_trackers(
            self.cfg.train.report_to, lambda name: private_dir(self.run_dir, name), self.cfg.to_dict()
        )

    @property
    def lines(self) -> list[str]:
        """The transcript lines written so far (what a checkpoint holds)."""
        return self.transcript.lines if self.transcript is not None else []

    def append(self, record: StepRecord, step_state: dict[str, Any]) -> None:
        """Record a released step: its private state first (resume's), then the public line (both fsynced)."""
        append_private_line(self.run_dir / STATE, {"step": record.step, **step_state})
        self.transcript.append(asdict(record))  # hash-chained, fsynced
        self.trackers.log_step(record)

    def log_dev(self, metrics: dict[str, float]) -> None:
        """A dev evaluation (public: it scores the released weights on public data), to the trackers."""
        self.trackers.log_dev(metrics)

    def write_head(self) -> None:
        if self.transcript is not None:
            self.transcript.write_head()

    def head_info(self) -> dict[str, Any]:
        return self.transcript.head_info()

    def finish(self, loaded: LoadedModel, summary: dict[str, Any], timing: dict[str, Any]) -> None:
        """The selected model with its card, the summary and the privacy statement; timing privately."""
        with writing(self.run_dir / MODEL):
            save_model(loaded, self.run_dir / MODEL)
        atomic_write(self.run_dir / MODEL_CARD, model_card(summary).encode())
        self.trackers.close()
        atomic_write(self.run_dir / SUMMARY, json.dumps(summary, indent=2).encode())
        atomic_write(self.run_dir / STATEMENT, privacy_statement(summary).encode())
        write_timing(self.run_dir, timing["wall_time_s"], timing["step_seconds"])


def public_summary(
    cfg: RunConfig,
    guarantee: Guarantee,
    accounting: dict[str, Any],
    facts: dict[str, Any],
    results: dict[str, Any],
) -> dict[str, Any]:
    """The public summary: public inputs and released values only (no timing, nothing secret).

    ``accounting`` is the ledger's summary, ``facts`` the run's public facts (pool size, unanimity rate,
    primary metric, trainable parameters) and ``results`` its outcome (steps, stop reason, dev, test).
    """
    privacy = dict(accounting)
    privacy.update(
        mechanism=cfg.privacy.mechanism,
        pool_size=facts["pool_size"],
        subsets=cfg.privacy.subsets,
        prior=0.5,
        unanimity_rate=facts["unanimity_rate"],
        budget_schedule=cfg.privacy.budget_schedule if guarantee is Guarantee.MI_BUDGET else None,
        private=cfg.private,
        privacy_randomness="OS CSPRNG" if cfg.private else INSECURE_NOTE,
    )
    privacy.update(privacy_context(dp=guarantee.is_dp))
    history = results["history"]
    return {
        "paczero_version": __version__,
        "task": cfg.task.name,
        "primary_metric": facts["primary_metric"],
        "model": cfg.model.name,
        "track": cfg.model.track,
        "trainable_parameters": facts["trainable_parameters"],
        "mechanism": cfg.privacy.mechanism,
        "hyperparameters": {k: v for k, v in asdict(cfg.train).items() if k not in ("progress", "report_to")},
        "steps_planned": cfg.train.steps,
        "steps_run": results["steps_run"],
        "stop_reason": results["stop_reason"],
        "selected_step": results["selected_step"],
        "dev": {
            "start": history[0] if len(history[0]) > 1 else None,
            "selected": results["selected_dev"],
            "history": history,
        },
        "test": results["test"],
        "privacy": privacy,
    }
