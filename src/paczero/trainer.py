"""The one training loop: seed → perturb ± → per-example scalars → release → charge → fused restore+update.

Setup happens in dependency order: generators, data, model, objective, public subsets, secret and
mechanism, ledger. Nothing outside ``mechanism.release`` reads the secret index; logging, evaluation,
learning rate, early stopping and checkpoint selection depend only on public state.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from paczero import __version__
from paczero.accounting import PacLedger
from paczero.config import RunConfig
from paczero.mechanisms import BudgetExhausted, Mechanism, get_mechanism
from paczero.mechanisms.base import StepInput
from paczero.models import LoadedModel, load_model, load_trainable_state, save_model, trainable_state
from paczero.report import privacy_statement
from paczero.subsets import CandidateSubsets, Secret, build_subsets, draw_secret, privacy_generators
from paczero.tasks import Classifier, PreparedSet, build_objective, load_splits
from paczero.zo import Directions, clip, two_point_estimate


@dataclass
class StepRecord:
    """One line of ``steps.jsonl``: the public transcript of a step and its diagnostics."""

    step: int
    lr: float
    seeds: list[int]
    released: list[float]  # Y_t per direction, as published (bit or noisy value)
    update: list[float]  # b_t per direction: θ ← θ − (lr/K)·Σ b·z
    kinds: list[str]
    unanimous: list[bool]
    positive_fraction: list[float]  # fraction of candidate subsets whose mean is >= 0
    q_plus: list[float | None]
    sigma: list[float | None]
    mi_step: float | None
    mi_spent: float | None
    loss: float  # mean of (l+ + l−)/2 over the pool: no extra forward pass
    clip_fraction: float
    nonfinite: int
    seconds: float


def _public_generator(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


class Trainer:
    """Runs one configured fine-tuning job and writes its outputs."""

    def __init__(self, cfg: RunConfig, output_dir: str | Path | None = None):
        self.cfg = cfg
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # 1. the three generators: public directions, data (sampling and public subsets), privacy
        self.public_rng = _public_generator(cfg.train.seed, 0)
        self.data_rng = _public_generator(cfg.task.data_seed, 1)
        secret_rng, noise_rng = privacy_generators(cfg.privacy.seed, cfg.privacy.secure)
        # 2. data, 3. model, 4. objective over tokenized sets
        self.splits = load_splits(cfg.task)
        self.loaded: LoadedModel = load_model(cfg.model)
        self.objective: Classifier = build_objective(
            cfg.task, self.loaded.tokenizer, cfg.train.micro_batch_size
        )
        device = self.pool_device = self.loaded.device
        self.pool: PreparedSet = self.objective.prepare(self.splits.pool, device)
        self.dev = self.objective.prepare(self.splits.dev, device) if self.splits.dev else None
        self.test = self.objective.prepare(self.splits.test, device) if self.splits.test else None
        self.directions = Directions([p for _, p in self.loaded.trainable])
        # 5. public candidate subsets, 6. secret and mechanism, 7. ledger
        self.subsets: CandidateSubsets = build_subsets(
            len(self.splits.pool), cfg.privacy.subsets, self.data_rng
        )
        fixed = cfg.privacy.secret_index
        self.secret: Secret = (
            Secret(fixed, cfg.privacy.subsets)
            if fixed is not None
            else draw_secret(cfg.privacy.subsets, secret_rng)
        )
        mech_cls = get_mechanism(cfg.privacy.mechanism)
        self.mechanism: Mechanism = mech_cls(self.secret, noise_rng)
        k = cfg.train.directions
        self.ledger = PacLedger(
            cfg.privacy.subsets, cfg.train.steps * k, cfg.privacy.budget, cfg.privacy.budget_schedule
        )
        self.records: list[StepRecord] = []

    def step_batch(self) -> tuple[np.ndarray | None, PreparedSet]:
        """The pool rows this step uses (None = all) and their prepared batch.

        A public minibatch (``train.batch_size``) is drawn from the data generator, never from anything
        secret, so it changes no privacy accounting; a draw that leaves a candidate subset empty is redrawn
        (a public rule: it depends only on the public membership).
        """
        size = self.cfg.train.batch_size
        if size is None or size >= self.subsets.n:
            return None, self.pool
        while True:
            rows = np.sort(self.data_rng.choice(self.subsets.n, size=size, replace=False))
            if np.all(self.subsets.membership[:, rows].sum(axis=1) > 0):
                break
        return rows, self.objective.prepare([self.splits.pool[i] for i in rows], self.pool_device)

    def lr_at(self, t: int) -> float:
        tc = self.cfg.train
        return tc.lr * (1.0 - t / tc.steps) if tc.schedule == "linear" else tc.lr

    def step(self, t: int) -> StepRecord:
        """One ZO step over the whole pool with K directions; returns its public record."""
        tc = self.cfg.train
        start = time.perf_counter()
        lr, k_dirs = self.lr_at(t), tc.directions
        seeds = [int(self.public_rng.integers(0, 2**63 - 1)) for _ in range(k_dirs)]
        pending: list[tuple[int, float]] = []
        updates: list[tuple[int, float]] = []
        fields: dict[str, list[Any]] = {
            n: [] for n in ("released", "update", "kinds", "unanimous", "pos", "q", "sigma")
        }
        losses, clip_fracs, nonfinite, mi_step = [], [], 0, 0.0
        rows, batch = self.step_batch()

        def batch_losses() -> torch.Tensor:
            return self.objective.losses(self.loaded.model, batch)

        try:
            for seed in seeds:
                # pending: what brings the weights back to θ; fused into the next pass over the tensors
                self.directions.apply([*pending, (seed, tc.zo_eps)])
                pending = [(seed, -tc.zo_eps)]
                plus = batch_losses()
                self.directions.apply([(seed, -2.0 * tc.zo_eps)])
                pending = [(seed, tc.zo_eps)]
                est = two_point_estimate(plus, batch_losses(), tc.zo_eps)
                g, clipped = clip(est.g, tc.clip)
                step_in = StepInput.from_estimates(g, self.subsets, rows)
                release = self.mechanism.release(step_in, self.ledger)
                self.ledger.charge(release)
                updates.append((seed, -lr / k_dirs * release.value))
                losses.append(est.loss)
                clip_fracs.append(clipped)
                nonfinite += est.n_nonfinite
                mi_step = None if release.cost is None or mi_step is None else mi_step + release.cost
                for name, value in (
                    ("released", release.observed),
                    ("update", release.value),
                    ("kinds", release.kind),
                    ("unanimous", step_in.unanimous),
                    ("pos", float((step_in.signs > 0).mean())),
                    ("q", release.q_plus),
                    ("sigma", release.sigma),
                ):
                    fields[name].append(value)
        finally:
            self.directions.apply([*pending, *updates])  # restore fused with every released update
        bounded = self.mechanism.guarantee in ("zero-mi", "mi-budget") and not self.ledger.unbounded
        return StepRecord(
            step=t + 1,
            lr=lr,
            seeds=seeds,
            released=[float(v) for v in fields["released"]],
            update=[float(v) for v in fields["update"]],
            kinds=fields["kinds"],
            unanimous=fields["unanimous"],
            positive_fraction=fields["pos"],
            q_plus=fields["q"],
            sigma=fields["sigma"],
            mi_step=mi_step if bounded else None,
            mi_spent=self.ledger.spent if bounded else None,
            loss=float(np.mean(losses)),
            clip_fraction=float(np.mean(clip_fracs)),
            nonfinite=nonfinite,
            seconds=time.perf_counter() - start,
        )

    def evaluate(self, data: PreparedSet | None) -> dict[str, float] | None:
        return None if data is None else self.objective.evaluate(self.loaded.model, data)

    def run(self) -> dict[str, Any]:
        """Train, select the best dev state, evaluate on test, write outputs; returns the summary."""
        tc = self.cfg.train
        began = time.perf_counter()
        self._prepare_output()
        history = [{"step": 0, **(self.evaluate(self.dev) or {})}]
        best = (self._selection_key(history[0]), 0, trainable_state(self.loaded))
        stop_reason = "completed"
        bar = tqdm(range(tc.steps), desc=self.cfg.privacy.mechanism, disable=not tc.progress, unit="step")
        for t in bar:
            if self.ledger.exhausted:
                stop_reason = "budget exhausted"
                break
            try:
                record = self.step(t)
            except BudgetExhausted:
                stop_reason = "budget exhausted"
                break
            self.records.append(record)
            self._append_record(record)
            bar.set_postfix(loss=f"{record.loss:.4f}", unanimous=f"{self._unanimity_rate():.2f}")
            if self.dev is not None and (
                record.step == tc.steps or (tc.eval_every and record.step % tc.eval_every == 0)
            ):
                metrics = {"step": record.step, **self.evaluate(self.dev)}
                history.append(metrics)
                bar.write(
                    f"step {record.step}: dev loss {metrics['loss']:.4f} accuracy {metrics['accuracy']:.4f}"
                )
                key = self._selection_key(metrics)
                if key < best[0]:
                    best = (key, record.step, trainable_state(self.loaded))
        bar.close()
        if self.dev is not None and history[-1]["step"] != len(self.records):
            history.append({"step": len(self.records), **self.evaluate(self.dev)})
        last_key = self._selection_key(history[-1])
        if self.dev is not None and best[0] < last_key:
            load_trainable_state(self.loaded, best[2])
            selected_step = best[1]
        else:
            selected_step = len(self.records)
        selected_dev = next((h for h in history if h["step"] == selected_step), history[-1])
        summary = self._summary(
            history, selected_step, selected_dev, stop_reason, time.perf_counter() - began
        )
        self._write_outputs(summary)
        return summary

    def _selection_key(self, metrics: dict[str, float]) -> float:
        if "loss" not in metrics:
            return 0.0
        return metrics["loss"] if self.cfg.train.select_by == "dev_loss" else -metrics["accuracy"]

    def _unanimity_rate(self) -> float:
        flags = [u for r in self.records for u in r.unanimous]
        return float(np.mean(flags)) if flags else 0.0

    def _summary(self, history, selected_step, selected_dev, stop_reason, wall) -> dict[str, Any]:
        cfg = self.cfg
        privacy = asdict(self.ledger.summary(self.mechanism.guarantee))
        privacy.update(
            mechanism=cfg.privacy.mechanism,
            pool_size=len(self.splits.pool),
            subsets=cfg.privacy.subsets,
            prior=0.5,
            unanimity_rate=self._unanimity_rate(),
            budget_schedule=cfg.privacy.budget_schedule if cfg.privacy.mechanism == "paczero-mi" else None,
        )
        return {
            "paczero_version": __version__,
            "task": cfg.task.name,
            "model": cfg.model.name,
            "track": cfg.model.track,
            "trainable_parameters": self.loaded.num_trainable(),
            "mechanism": cfg.privacy.mechanism,
            "hyperparameters": {k: v for k, v in asdict(cfg.train).items() if k != "progress"},
            "steps_planned": cfg.train.steps,
            "steps_run": len(self.records),
            "stop_reason": stop_reason,
            "selected_step": selected_step,
            "dev": {
                "start": history[0] if len(history[0]) > 1 else None,
                "selected": selected_dev,
                "history": history,
            },
            "test": self.evaluate(self.test),
            "privacy": privacy,
            "wall_time_s": wall,
            "seconds_per_step": float(np.mean([r.seconds for r in self.records])) if self.records else None,
        }

    def _prepare_output(self) -> None:
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        (self.output_dir / "steps.jsonl").write_text("")
        self._write_secret()

    def _write_secret(self) -> None:
        """J, alone in a 0600 file: kept for resume and audits (ground truth), never in any other output."""
        path = self.output_dir / "secret.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"secret_index": self.secret.reveal(), "subsets": self.secret.m}, fh)
        os.chmod(path, 0o600)

    def _append_record(self, record: StepRecord) -> None:
        if self.output_dir is None:
            return
        with (self.output_dir / "steps.jsonl").open("a") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")

    def _write_outputs(self, summary: dict[str, Any]) -> None:
        if self.output_dir is None:
            return
        save_model(self.loaded, self.output_dir / "model")
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        (self.output_dir / "privacy.md").write_text(privacy_statement(summary))
