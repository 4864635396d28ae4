"""The one training loop: seed → perturb ± → per-example scalars → release → charge → fused restore+update.

Setup happens in dependency order: generators, data, model, objective, public subsets, secret and
mechanism, ledger. Nothing outside ``mechanism.release`` reads the secret index; logging, evaluation,
learning rate, early stopping and checkpoint selection depend only on public state.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from paczero import __version__
from paczero.accountants import DpLedger, DpPlan
from paczero.accounting import PacLedger
from paczero.autobatch import resolve_micro_batch_size
from paczero.checkpoint import Checkpointer
from paczero.config import RunConfig
from paczero.distributed import assemble, broadcast_object, init_from_env, per_rank_device
from paczero.mechanisms import BudgetExhausted, Guarantee, Mechanism, get_mechanism
from paczero.mechanisms.base import StepEstimates
from paczero.models.loaders import LoadedModel, load_model, load_trainable_state, save_model, trainable_state
from paczero.models.trunk import forward_model as trunk_forward_model
from paczero.plots import open_tensorboard
from paczero.report import model_card, privacy_context, privacy_statement
from paczero.rundir import (
    INSECURE_NOTE,
    STATE,
    append_private_line,
    private_dir,
    write_secret,
    write_timing,
)
from paczero.subsets import (
    CandidateSubsets,
    Secret,
    build_subsets,
    draw_secret,
    privacy_entropy,
    privacy_generators,
)
from paczero.tasks.classification import PreparedSet
from paczero.tasks.data import Splits
from paczero.tasks.registry import Objective, build_objective, load_splits
from paczero.transcript import StepWalk, TranscriptWriter, genesis_hash, replay_step
from paczero.zo import Directions, Estimate, two_point_estimate


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
    loss: float | None  # mean of (l+ + l−)/2 over the pool: no extra forward pass; None for DP (private)
    clip_fraction: float | None  # None for DP: it depends on the private batch
    nonfinite: int | None
    epsilon_spent: float | None = None  # DP: ε after this step at the run's δ


class InsecurePrivacyWarning(UserWarning):
    """A run with deterministic privacy randomness: its outputs carry no privacy guarantee."""


MAX_MINIBATCH_DRAWS = 100_000  # a backstop: RunConfig refuses settings that would need about this many


def _public_generator(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


def data_generator(cfg: RunConfig) -> np.random.Generator:
    """The public data generator: candidate subsets first, then the public minibatches."""
    return _public_generator(cfg.task.data_seed, 1)


def public_subsets(
    cfg: RunConfig, pool_size: int, data_rng: np.random.Generator | None = None
) -> CandidateSubsets:
    """A run's candidate subsets: the first draws of its data generator, so audits rebuild them exactly."""
    rng = data_generator(cfg) if data_rng is None else data_rng
    return build_subsets(pool_size, cfg.privacy.subsets, rng)


def new_ledger(cfg: RunConfig, guarantee: Guarantee, pool_size: int) -> PacLedger | DpLedger:
    """The accountant of a run: (ε, δ) composition for DP mechanisms, the MI ledger for every other one."""
    if guarantee.is_dp:
        return DpLedger(DpPlan.for_run(cfg, pool_size))
    releases = cfg.train.steps * cfg.train.directions
    return PacLedger(cfg.privacy.subsets, releases, cfg.privacy.budget, cfg.privacy.budget_schedule)


class Trainer:
    """Runs one configured fine-tuning job and writes its outputs."""

    def __init__(
        self,
        cfg: RunConfig,
        output_dir: str | Path | None = None,
        resume: bool = False,
        loaded: LoadedModel | None = None,  # reuse a model already loaded from cfg.model (benchmarks)
        splits: Splits | None = None,  # pool/dev/test already drawn (paczero.api: examples in memory)
    ):
        # 0. data parallelism (torchrun): every rank runs this loop; rank 0 alone writes
        device = per_rank_device(cfg.model.device)  # this rank's GPU under torchrun; else unchanged
        self.dist = init_from_env(cfg.train.dist_timeout, torch.device(device) if "cuda" in device else None)
        if self.dist.active:
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, device=device))
            output_dir = output_dir if self.dist.is_main else None
        self.cfg = cfg
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # crash safety (paczero.checkpoint): full-state checkpoints, resume, the hash-chained transcript
        self.checkpoints = (
            Checkpointer(self.output_dir, cfg.train.checkpoint_every, resume) if self.output_dir else None
        )
        self.transcript: TranscriptWriter | None = None
        # 1. the three generators: public directions, data (sampling and public subsets), privacy
        self.public_rng = _public_generator(cfg.train.seed, 0)
        self.data_rng = data_generator(cfg)
        self.entropy = privacy_entropy(cfg.privacy.seed, cfg.privacy.secure)
        if self.dist.active:  # one draw on rank 0, shared: every rank needs the same privacy streams
            self.entropy = broadcast_object(self.entropy, self.dist)
        secret_rng, noise_rng, self.sampling_rng = privacy_generators(self.entropy)
        # 2. data, 3. model, 4. objective over tokenized sets
        self.splits = splits if splits is not None else load_splits(cfg.task)
        self.loaded: LoadedModel = loaded if loaded is not None else load_model(cfg.model)
        micro_batch = resolve_micro_batch_size(
            cfg.train.micro_batch_size, self.loaded.model, cfg.task.max_length
        )
        self.objective: Objective = build_objective(cfg.task, self.loaded.tokenizer, micro_batch)
        self.forward_model = trunk_forward_model(self.loaded, self.objective, cfg.model)  # model.cache_trunk
        metric = cfg.train.select_by.removeprefix("dev_")
        if metric != "loss" and metric not in self.objective.metrics:
            known = ", ".join(f"dev_{m}" for m in ("loss", *self.objective.metrics))
            raise ValueError(f"train.select_by={cfg.train.select_by!r}: task {cfg.task.name} offers {known}")
        device = self.pool_device = self.loaded.device
        self.pool: PreparedSet = self.objective.prepare(self.splits.pool, device)
        self.dev = self.objective.prepare(self.splits.dev, device) if self.splits.dev else None
        self.test = self.objective.prepare(self.splits.test, device) if self.splits.test else None
        self.directions = Directions([p for _, p in self.loaded.trainable])
        # 5. public candidate subsets, 6. secret and mechanism, 7. ledger
        self.subsets: CandidateSubsets = public_subsets(cfg, len(self.splits.pool), self.data_rng)
        fixed = cfg.privacy.secret_index
        self.secret: Secret = (
            Secret(fixed, cfg.privacy.subsets)
            if fixed is not None
            else draw_secret(cfg.privacy.subsets, secret_rng)
        )
        self.mechanism: Mechanism = self.mechanism_class(self.secret, noise_rng)
        self.ledger: PacLedger | DpLedger = new_ledger(cfg, self.mechanism.guarantee, len(self.splits.pool))
        self.records: list[StepRecord] = []
        self.step_seconds: list[float] = []  # private: wall-clock of each step this process ran
        self.timing: dict[str, Any] = {}

    def step_batch(self) -> tuple[np.ndarray | None, PreparedSet]:
        """The pool rows this step uses (None = all) and their prepared batch.

        A public minibatch (``train.batch_size``) is drawn from the data generator, never from anything
        secret, so it changes no privacy accounting; a draw that leaves a candidate subset empty is redrawn
        (a public rule: it depends only on the public membership). A DP ledger instead draws a Poisson sample
        at its accountant's rate from the secret sampling generator; it may be empty.
        """
        rows = self.ledger.secret_batch(self.sampling_rng, self.subsets.n)
        if rows is not None:
            return rows, self.objective.prepare([self.splits.pool[i] for i in rows], self.pool_device)
        size = self.cfg.train.batch_size
        if size is None or size >= self.subsets.n:
            return None, self.pool
        for _ in range(MAX_MINIBATCH_DRAWS):
            rows = np.sort(self.data_rng.choice(self.subsets.n, size=size, replace=False))
            if np.all(self.subsets.membership[:, rows].sum(axis=1) > 0):
                return rows, self.objective.prepare([self.splits.pool[i] for i in rows], self.pool_device)
        raise RuntimeError(
            f"no public minibatch of {size} examples met every one of the {self.subsets.m} candidate subsets "
            f"in {MAX_MINIBATCH_DRAWS} draws: use fewer subsets or a larger train.batch_size"
        )

    def lr_at(self, t: int) -> float:
        tc = self.cfg.train
        return tc.lr * (1.0 - t / tc.steps) if tc.schedule == "linear" else tc.lr

    @property
    def mechanism_class(self) -> type[Mechanism]:
        """The configured mechanism's registered class (its step size drives training and replay alike)."""
        return get_mechanism(self.cfg.privacy.mechanism)

    def step(self, t: int) -> StepRecord:
        """One ZO step: K two-point estimates over the step's batch, one release, one fused update."""
        tc = self.cfg.train
        lr = self.lr_at(t)
        seeds = [int(self.public_rng.integers(0, 2**63 - 1)) for _ in range(tc.directions)]
        rows, batch = self.step_batch()
        walk = StepWalk(self.directions, tc.zo_eps, self.mechanism_class.step_size(lr, len(seeds)))
        try:
            estimates = [self._estimate(walk, seed, rows, batch) for seed in seeds]
            g = np.stack([est.g for est in estimates], axis=1)
            release = self.mechanism.release_step(StepEstimates(g, self.subsets, rows, tc.clip), self.ledger)
            for seed, value in zip(seeds, release.update, strict=True):
                walk.update(seed, value)
            walk.commit()
        finally:
            walk.finish()  # restore fused with every released update; only restore if a release was refused
        public = release.batch_public  # a DP batch is secret: so are its loss and non-finite count
        return StepRecord(
            step=t + 1,
            lr=lr,
            seeds=seeds,
            **release.to_record(),
            **self.ledger.step_fields(self.mechanism.guarantee, release.cost),
            loss=float(np.mean([est.loss for est in estimates])) if public else None,
            clip_fraction=release.clip_fraction,
            nonfinite=sum(est.n_nonfinite for est in estimates) if public else None,
        )

    def _estimate(self, walk: StepWalk, seed: int, rows: np.ndarray | None, batch: PreparedSet) -> Estimate:
        """Per-example losses at θ+εz and θ−εz over the batch (an empty Poisson batch has none)."""

        def losses() -> torch.Tensor:
            if rows is not None and rows.size == 0:
                return torch.zeros(0)
            return self._on_shards(lambda part: self.objective.losses(self.forward_model, part), batch)

        walk.plus(seed)  # fused with restoring the previous direction
        plus = losses()
        walk.minus(seed)
        return two_point_estimate(plus, losses(), self.cfg.train.zo_eps)

    def evaluate(self, data: PreparedSet | None) -> dict[str, float] | None:
        """Dev/test metrics: means of per-example values (computed on this rank's shard, then assembled)."""
        if data is None:
            return None
        per_example = self._on_shards(lambda part: self.objective.per_example(self.forward_model, part), data)
        return {name: 0.0 + float(values.mean()) for name, values in per_example.items()}

    def _on_shards(self, fn, prepared):
        """``fn`` over this rank's micro-batches; per-example results assembled in order on every rank."""
        if not self.dist.active:
            return fn(prepared)
        local, rows = self.objective.shard(prepared, self.dist.rank, self.dist.world_size)
        out = fn(local)
        if isinstance(out, dict):
            return {name: assemble(values, rows, self.dist) for name, values in out.items()}
        return assemble(out, rows, self.dist)

    def run(self) -> dict[str, Any]:
        """Train, select the best dev state, evaluate on test, write outputs; returns the (public) summary."""
        tc = self.cfg.train
        if not self.cfg.private and self.dist.is_main:
            warnings.warn(INSECURE_NOTE, InsecurePrivacyWarning, stacklevel=2)
        began = time.perf_counter()
        restored = self._restore()  # --resume: (history, best) with every released step re-applied
        if restored is None:
            self._prepare_output()
            history = [{"step": 0, **(self.evaluate(self.dev) or {})}]
            best = (self._selection_key(history[0]), 0, trainable_state(self.loaded))
            if self.checkpoints is not None:
                self.checkpoints.save(self, history, best)  # step 0: the privacy generators' start state
        else:
            history, best = restored
        stop_reason = "completed"
        bar = tqdm(
            range(len(self.records), tc.steps),
            desc=self.cfg.privacy.mechanism,
            disable=not tc.progress,
            unit="step",
        )
        for t in bar:
            if self.ledger.exhausted:
                stop_reason = "budget exhausted"
                break
            ledger_before = self.ledger.state_dict()
            started = time.perf_counter()
            try:
                record = self.step(t)
            except BudgetExhausted:  # a refused release: the step is dropped whole, weights and ledger
                self.ledger.load_state_dict(ledger_before)
                if self.checkpoints is not None:
                    self.checkpoints.rewind(self)  # exact θ_t; without an output dir it is θ_t ± rounding
                stop_reason = "budget exhausted"
                break
            self._append_record(record, time.perf_counter() - started)
            loss = "private" if record.loss is None else f"{record.loss:.4f}"
            bar.set_postfix(loss=loss, unanimous=f"{self._unanimity_rate():.2f}")
            best = self._after_release(record, history, best, bar.write)
            if self.checkpoints is not None:
                self.checkpoints.after_step(self, history, best)  # cadence, or SIGINT/SIGTERM: save and stop
        bar.close()
        if self.checkpoints is not None:
            self.checkpoints.save(self, history, best)  # at exit: a resume then only redoes the outputs
        if self.dev is not None and history[-1]["step"] != len(self.records):
            history.append({"step": len(self.records), **self.evaluate(self.dev)})
        last_key = self._selection_key(history[-1])
        if self.dev is not None and best[0] < last_key:
            load_trainable_state(self.loaded, best[2])
            selected_step = best[1]
        else:
            selected_step = len(self.records)
        selected_dev = next((h for h in history if h["step"] == selected_step), history[-1])
        summary = self._summary(history, selected_step, selected_dev, stop_reason)
        if self.transcript is not None:
            summary["transcript"] = self.transcript.head_info()  # replay verifies against this head
        self.timing = {"wall_time_s": time.perf_counter() - began, "step_seconds": self.step_seconds}
        self._write_outputs(summary)
        return summary

    def _after_release(self, record: StepRecord, history: list[dict], best: Any, say=print) -> Any:
        """Dev evaluation on the cadence and best-state tracking after a released step; returns ``best``."""
        tc = self.cfg.train
        due = record.step == tc.steps or (tc.eval_every and record.step % tc.eval_every == 0)
        if self.dev is None or not due:
            return best
        metrics = {"step": record.step, **self.evaluate(self.dev)}
        history.append(metrics)
        primary = self.objective.primary_metric
        say(f"step {record.step}: dev loss {metrics['loss']:.4f} {primary} {metrics[primary]:.4f}")
        key = self._selection_key(metrics)
        return (key, record.step, trainable_state(self.loaded)) if key < best[0] else best

    def _restore(self) -> tuple[list[dict[str, Any]], Any] | None:
        """On --resume: the newest checkpoint, then the steps released after it re-applied from steps.jsonl.

        A released step is never computed again: its update is replayed from ``steps.jsonl`` (no forward pass)
        and the generators and ledger are set to the private state saved with that step, so the next step
        draws exactly what an uninterrupted run would have. None when not resuming.
        """
        resuming = self.checkpoints is not None and self.checkpoints.resume
        restored = self.checkpoints.restore(self) if resuming else None
        if restored is not None:
            self.tensorboard = open_tensorboard(private_dir(self.output_dir, "tensorboard"))
        if self.dist.active:
            restored = self._sync_from_main(restored)
        if restored is None:
            return None
        history, best, pending, state = restored
        for raw in pending:
            record = StepRecord(**{k: v for k, v in raw.items() if k != "prev_hash"})
            replay_step(self.directions, self.cfg.train.zo_eps, asdict(record), self.mechanism_class)
            self.records.append(record)
            best = self._after_release(record, history, best)
        if pending:
            for name, rng in self._generators().items():
                rng.bit_generator.state = state["generators"][name]
            self.ledger.load_state_dict(state["ledger"])
        return history, best

    def _sync_from_main(self, restored):
        """Rank 0 read the checkpoint; every other rank takes the same state from it (weights, generators,
        ledger, records), so a run resumes under any number of ranks."""
        payload = None
        if self.dist.is_main and restored is not None:
            payload = {
                "restored": restored,
                "weights": trainable_state(self.loaded),
                "generators": {name: rng.bit_generator.state for name, rng in self._generators().items()},
                "ledger": self.ledger.state_dict(),
                "records": [asdict(r) for r in self.records],
            }
        payload = broadcast_object(payload, self.dist)
        if payload is None or self.dist.is_main:
            return restored
        load_trainable_state(self.loaded, payload["weights"])
        for name, rng in self._generators().items():
            rng.bit_generator.state = payload["generators"][name]
        self.ledger.load_state_dict(payload["ledger"])
        self.records = [StepRecord(**r) for r in payload["records"]]
        return payload["restored"]

    def _generators(self) -> dict[str, np.random.Generator]:
        return {
            "public": self.public_rng,
            "data": self.data_rng,
            "sampling": self.sampling_rng,
            "mechanism": self.mechanism.rng,
        }

    def _selection_key(self, metrics: dict[str, float]) -> float:
        if "loss" not in metrics:
            return 0.0
        metric = self.cfg.train.select_by.removeprefix("dev_")
        return metrics["loss"] if metric == "loss" else -metrics[metric]  # metrics: higher is better

    def _unanimity_rate(self) -> float:
        flags = [u for r in self.records for u in r.unanimous]
        return float(np.mean(flags)) if flags else 0.0

    def _summary(self, history, selected_step, selected_dev, stop_reason) -> dict[str, Any]:
        """The public summary: public inputs and released values only (no timing, nothing secret)."""
        cfg = self.cfg
        guarantee = self.mechanism.guarantee
        privacy = asdict(self.ledger.summary(guarantee))
        privacy.update(
            mechanism=cfg.privacy.mechanism,
            pool_size=len(self.splits.pool),
            subsets=cfg.privacy.subsets,
            prior=0.5,
            unanimity_rate=self._unanimity_rate(),
            budget_schedule=cfg.privacy.budget_schedule if cfg.privacy.mechanism == "paczero-mi" else None,
            private=cfg.private,
            privacy_randomness="OS CSPRNG" if cfg.private else INSECURE_NOTE,
        )
        privacy.update(privacy_context(dp=guarantee.is_dp))
        return {
            "paczero_version": __version__,
            "task": cfg.task.name,
            "primary_metric": self.objective.primary_metric,
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
        }

    def _prepare_output(self) -> None:
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # first: a run that dies anywhere after this can be resumed
        write_secret(
            self.output_dir, self.secret.reveal(), self.secret.m, self.entropy, self.cfg.privacy.secure
        )
        (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        self.transcript = TranscriptWriter(self.output_dir, genesis_hash(self.cfg.to_dict()))
        self.tensorboard = open_tensorboard(private_dir(self.output_dir, "tensorboard"))  # None if absent

    def private_state(self) -> dict[str, Any]:
        """What resume needs after a released step: every generator's state and the ledger (kept private)."""
        return {
            "generators": {name: rng.bit_generator.state for name, rng in self._generators().items()},
            "ledger": self.ledger.state_dict(),
        }

    def _append_record(self, record: StepRecord, seconds: float) -> None:
        """Record a released step: its private state first, then the public line (both fsynced)."""
        self.records.append(record)
        self.step_seconds.append(seconds)
        if self.output_dir is None:
            return
        state = {"step": record.step, "seconds": seconds, **self.private_state()}
        append_private_line(self.output_dir / STATE, state)
        self.transcript.append(asdict(record))  # hash-chained, fsynced
        if self.tensorboard is not None:
            self.tensorboard.log(record)

    def _write_outputs(self, summary: dict[str, Any]) -> None:
        if self.output_dir is None:
            return
        save_model(self.loaded, self.output_dir / "model")
        (self.output_dir / "model" / "README.md").write_text(model_card(summary))
        if self.tensorboard is not None:
            self.tensorboard.close()
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        (self.output_dir / "privacy.md").write_text(privacy_statement(summary))
        write_timing(self.output_dir, self.timing["wall_time_s"], self.timing["step_seconds"])
