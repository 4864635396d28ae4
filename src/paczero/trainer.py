"""The one training loop: seed → perturb ± → per-example scalars → release → charge → fused restore+update.

Setup happens in dependency order: generators, data, model, objective, public subsets, secret and
mechanism, ledger. Nothing outside ``mechanism.release`` reads the secret index; logging, evaluation,
learning rate, early stopping and checkpoint selection depend only on public state.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from paczero.autobatch import resolve_micro_batch_size
from paczero.checkpoint import Checkpointer, CheckpointError, Snapshot
from paczero.config import RunConfig
from paczero.distributed import assemble, broadcast_object, init_from_env, per_rank_device
from paczero.generators import (
    data_generator,
    direction_generator,
    generator_states,
    load_generator_states,
    public_minibatch,
    public_subsets,
)
from paczero.mechanisms import Mechanism, StepEstimates, get_mechanism
from paczero.models.loaders import LoadedModel, load_model, load_trainable_state, trainable_state
from paczero.models.trunk import forward_model as trunk_forward_model
from paczero.outputs import RunOutputs, public_summary
from paczero.privacy.ledger import BudgetExhausted, Ledger
from paczero.resume import ResumePoint, refuse_changes, resume_point
from paczero.rundir import INSECURE_NOTE, hold_run_dir
from paczero.selection import DevSelection
from paczero.subsets import CandidateSubsets, Secret, draw_secret, privacy_entropy, privacy_generators
from paczero.tasks.data import Splits
from paczero.tasks.registry import Objective, Prepared, build_objective, load_splits
from paczero.transcript import StepRecord, bound_config
from paczero.zo import Directions, Estimate, StepWalk, replay_step, two_point_estimate


class InsecurePrivacyWarning(UserWarning):
    """A run with deterministic privacy randomness: its outputs carry no privacy guarantee."""


class Trainer:
    """Runs one configured fine-tuning job and writes its outputs."""

    def __init__(
        self,
        cfg: RunConfig,
        output_dir: str | Path | None = None,
        resume: bool = False,
        loaded: LoadedModel | None = None,  # reuse a model already loaded from cfg.model (benchmarks)
        splits: Splits | None = None,  # pool/dev/test already drawn (paczero.api: examples in memory)
        mechanism: Mechanism | None = None,  # instead of the configured one (the audit's attackers)
    ):
        # 0. data parallelism (torchrun): every rank runs this loop; rank 0 alone writes
        device = per_rank_device(cfg.model.device)  # this rank's GPU under torchrun; else unchanged
        self.dist = init_from_env(cfg.train.dist_timeout, torch.device(device) if "cuda" in device else None)
        if self.dist.active:
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, device=device))
            output_dir = output_dir if self.dist.is_main else None
        self.cfg = cfg
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # what the run writes (public and private), and crash safety: checkpoints and resume
        self.outputs = RunOutputs(self.output_dir, cfg) if self.output_dir else None
        self.checkpoints = (
            Checkpointer(self.output_dir, cfg.train.checkpoint_every, resume) if self.output_dir else None
        )
        # 1. the three generators: public directions, data (sampling and public subsets), privacy
        self.public_rng = direction_generator(cfg)
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
        self.pool: Prepared = self.objective.prepare(self.splits.pool, device)
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
        self.mechanism = mechanism if mechanism is not None else self.mechanism_class(self.secret, noise_rng)
        self.ledger: Ledger = self.mechanism_class.new_ledger(cfg.privacy, cfg.train, len(self.splits.pool))
        self.records: list[StepRecord] = []
        self.step_seconds: list[float] = []  # private: wall-clock of each step this process ran
        self.timing: dict[str, Any] = {}

    @property
    def mechanism_class(self) -> type[Mechanism]:
        """The configured mechanism's registered class (its step size drives training and replay alike)."""
        return get_mechanism(self.cfg.privacy.mechanism)

    def step_batch(self) -> tuple[np.ndarray | None, Prepared]:
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
        rows = public_minibatch(self.data_rng, self.subsets, size)
        return rows, self.objective.prepare([self.splits.pool[i] for i in rows], self.pool_device)

    def lr_at(self, t: int) -> float:
        tc = self.cfg.train
        return tc.lr * (1.0 - t / tc.steps) if tc.schedule == "linear" else tc.lr

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

    def _estimate(self, walk: StepWalk, seed: int, rows: np.ndarray | None, batch: Prepared) -> Estimate:
        """Per-example losses at θ+εz and θ−εz over the batch (an empty Poisson batch has none)."""

        def losses() -> torch.Tensor:
            if rows is not None and rows.size == 0:
                return torch.zeros(0)
            return self._on_shards(lambda part: self.objective.losses(self.forward_model, part), batch)

        walk.plus(seed)  # fused with restoring the previous direction
        plus = losses()
        walk.minus(seed)
        return two_point_estimate(plus, losses(), self.cfg.train.zo_eps)

    def replay(self, record: StepRecord) -> None:
        """Apply a released step's update again without computing it (resume, rewind)."""
        step_size = self.mechanism_class.step_size(record.lr, len(record.seeds))
        replay_step(self.directions, self.cfg.train.zo_eps, record.seeds, record.update, step_size)

    def evaluate(self, data: Prepared | None) -> dict[str, float] | None:
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
        """Train, select the best dev state, test, write outputs (the run directory locked); the summary."""
        if self.output_dir is None:
            return self._run()
        with hold_run_dir(self.output_dir, "train", create=True):
            return self._run()

    def _run(self) -> dict[str, Any]:
        tc = self.cfg.train
        if not self.cfg.private and self.dist.is_main:
            warnings.warn(INSECURE_NOTE, InsecurePrivacyWarning, stacklevel=3)
        began = time.perf_counter()
        selection = self._resume()  # --resume: every released step re-applied
        if selection is None:
            if self.outputs is not None:
                self.outputs.start(self.secret, self.entropy)
            start = {"step": 0, **(self.evaluate(self.dev) or {})}
            if self.outputs is not None and self.dev is not None:
                self.outputs.log_dev(start)
            selection = DevSelection.start(tc.select_by, start, trainable_state(self.loaded))
            self._checkpoint(selection)  # step 0: the privacy generators' start state
        stop_reason = "completed"
        bar = tqdm(
            range(len(self.records), tc.steps), desc=self.cfg.privacy.mechanism, disable=not tc.progress
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
                self._rewind()
                stop_reason = "budget exhausted"
                break
            self._append_record(record, time.perf_counter() - started)
            loss = "private" if record.loss is None else f"{record.loss:.4f}"
            bar.set_postfix(loss=loss, unanimous=f"{self._unanimity_rate():.2f}")
            self._after_release(record, selection, bar.write)
            if self.checkpoints is not None:  # cadence, or SIGINT/SIGTERM: save and stop
                self.checkpoints.after_step(len(self.records), partial(self._checkpoint, selection))
        bar.close()
        self._checkpoint(selection)  # at exit: a resume then only redoes the outputs
        summary = self._summary(selection, self._select(selection), stop_reason)
        self.timing = {"wall_time_s": time.perf_counter() - began, "step_seconds": self.step_seconds}
        if self.outputs is not None:
            summary["transcript"] = self.outputs.head_info()  # replay verifies against this head
            self.outputs.finish(self.loaded, summary, self.timing)
        return summary

    def _select(self, selection: DevSelection) -> int:
        """Evaluate the final state on dev, load the selected state's weights; returns the selected step."""
        final = len(self.records)
        if self.dev is not None and selection.history[-1]["step"] != final:
            selection.history.append({"step": final, **self.evaluate(self.dev)})
        selected = selection.selected_step(final)
        if selected != final:
            load_trainable_state(self.loaded, selection.best.weights)
        return selected

    def _after_release(self, record: StepRecord, selection: DevSelection, say=print) -> None:
        """Dev evaluation on the cadence after a released step, and best-state tracking."""
        tc = self.cfg.train
        due = record.step == tc.steps or (tc.eval_every and record.step % tc.eval_every == 0)
        if self.dev is None or not due:
            return
        metrics = {"step": record.step, **self.evaluate(self.dev)}
        if self.outputs is not None:
            self.outputs.log_dev(metrics)
        primary = self.objective.primary_metric
        say(f"step {record.step}: dev loss {metrics['loss']:.4f} {primary} {metrics[primary]:.4f}")
        selection.observe(metrics, partial(trainable_state, self.loaded))

    def public_state(self) -> dict[str, Any]:
        """The public generators' (directions, data) and the ledger's state: what a checkpoint shows."""
        generators = generator_states(self._generators(public=True))
        return {"generators": generators, "ledger": self.ledger.state_dict()}

    def load_public_state(self, state: dict[str, Any]) -> None:
        """Restore ``public_state``'s output (or a per-step state that also holds the privacy generators)."""
        load_generator_states(self._generators(public=True), state["generators"])
        self.ledger.load_state_dict(state["ledger"])

    def private_state(self) -> dict[str, Any]:
        """The privacy generators' (sampling, mechanism) state: it predicts every secret-dependent draw."""
        return {"generators": generator_states(self._generators(public=False))}

    def load_private_state(self, state: dict[str, Any]) -> None:
        """Restore ``private_state``'s output (or a per-step state that also holds the public generators)."""
        load_generator_states(self._generators(public=False), state["generators"])

    def _checkpoint(self, selection: DevSelection) -> Path | None:
        """Save the full state (public, private, weights) and the transcript head; None without a run dir."""
        if self.checkpoints is None:
            return None
        step = len(self.records)
        transcript = self.outputs.lines if self.outputs is not None else [asdict(r) for r in self.records]
        config = bound_config(self.cfg.to_dict())
        state = {"config": config, **self.public_state(), "transcript": transcript, **selection.to_state()}
        best = selection.best.weights if selection.best.step != step else None
        weights = trainable_state(self.loaded)
        path = self.checkpoints.save(Snapshot(step, state, self.private_state(), weights, best))
        self.outputs.write_head()
        return path

    def _resume(self) -> DevSelection | None:
        """On --resume: the newest checkpoint loaded, then every step released after it re-applied."""
        resuming = self.checkpoints is not None and self.checkpoints.resume
        point = resume_point(self.checkpoints) if resuming else None
        if self.dist.active:  # rank 0 read the run directory; every rank resumes from the same point
            point = broadcast_object(point, self.dist)
        if point is None:
            return None
        selection = self._load_checkpoint(point)
        if self.outputs is not None:
            self.outputs.reopen(point.released)
        for record in point.pending:
            self.replay(record)
            self.records.append(record)
            self._after_release(record, selection)
        if point.step_state is not None:
            self.load_public_state(point.step_state)
            self.load_private_state(point.step_state)
        return selection

    def _load_checkpoint(self, point: ResumePoint) -> DevSelection:
        """Weights, generators, ledger, records and dev selection from the checkpoint ``point`` starts at."""
        snapshot = point.snapshot
        try:
            refuse_changes(snapshot.state["config"], bound_config(self.cfg.to_dict()))
            load_trainable_state(self.loaded, snapshot.weights)
            self.load_public_state(snapshot.state)
            self.load_private_state(snapshot.private)
            self.records = [StepRecord.from_line(line) for line in snapshot.state["transcript"]]
            best = snapshot.weights if snapshot.best is None else snapshot.best
            return DevSelection.from_state(self.cfg.train.select_by, snapshot.state, best)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"the newest checkpoint in {point.run_dir} does not fit this run: {err}"
            ) from None

    def _rewind(self) -> None:
        """Set the weights exactly to θ after the last recorded step, after a refused (dropped) step.

        A refused step's perturbation round trip θ + εz − 2εz + εz is not bitwise θ, so the weights are
        rebuilt: the newest checkpoint's, then the records after it replayed (bitwise equal to training).
        Without a run directory there is no checkpoint, and θ_t is kept up to rounding.
        """
        snapshot = self.checkpoints.load() if self.checkpoints is not None else None
        if snapshot is None:
            return
        load_trainable_state(self.loaded, snapshot.weights)
        for record in self.records[snapshot.step :]:
            self.replay(record)

    def _generators(self, public: bool) -> dict[str, np.random.Generator]:
        """The run's public generators (directions, data) or its privacy generators (sampling, mechanism)."""
        if public:
            return {"public": self.public_rng, "data": self.data_rng}
        return {"sampling": self.sampling_rng, "mechanism": self.mechanism.rng}

    def _unanimity_rate(self) -> float:
        flags = [u for r in self.records for u in r.unanimous]
        return float(np.mean(flags)) if flags else 0.0

    def _summary(self, selection: DevSelection, selected_step: int, stop_reason: str) -> dict[str, Any]:
        guarantee = self.mechanism.guarantee
        history = selection.history
        facts = {
            "pool_size": len(self.splits.pool),
            "unanimity_rate": self._unanimity_rate(),
            "primary_metric": self.objective.primary_metric,
            "trainable_parameters": self.loaded.num_trainable(),
        }
        results = {
            "steps_run": len(self.records),
            "stop_reason": stop_reason,
            "selected_step": selected_step,
            "history": history,
            "selected_dev": next((h for h in history if h["step"] == selected_step), history[-1]),
            "test": self.evaluate(self.test),
        }
        return public_summary(self.cfg, guarantee, asdict(self.ledger.summary(guarantee)), facts, results)

    def _append_record(self, record: StepRecord, seconds: float) -> None:
        """Record a released step: its private state first, then the public line (both fsynced)."""
        self.records.append(record)
        self.step_seconds.append(seconds)
        if self.outputs is not None:
            public, private = self.public_state(), self.private_state()
            step_state = {**public, "generators": {**public["generators"], **private["generators"]}}
            self.outputs.append(record, {"seconds": seconds, **step_state})
