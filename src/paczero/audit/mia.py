"""Membership inference against a finished run, scored against its secret and so kept private.

Membership here is membership of a pool example in the secret subset S* = S_J, the unit the PAC guarantee
protects (prior exactly 1/2); membership in the pool itself is public. ``membership_audit`` scores every pool
example with three attackers — the released model's loss, that loss calibrated against the base model (and,
optionally, LiRA-style against shadow runs on other candidate subsets), and the Bayesian posterior over the
candidate subsets that an attacker who replays the public transcript obtains — and compares their success
with the run's bound (p*(I) or the DP bound). The ground truth comes from the run's private secret file, so
everything the audit computes depends on the secret (|S*| and every attack score are scored against it): its
results are written to the run's private area and never exported or shown in a public report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paczero.audit.stats import AttackResult, attack_metrics
from paczero.config import RunConfig
from paczero.generators import public_subsets
from paczero.mechanisms.base import Mechanism, Release, StepInput
from paczero.mechanisms.registry import get_mechanism
from paczero.models.loaders import (
    LoadedModel,
    load_finetuned,
    load_model,
    load_trainable_state,
    trainable_state,
)
from paczero.models.trunk import forward_model
from paczero.privacy.ledger import Guarantee
from paczero.rundir import (
    AUDIT,
    CONFIG,
    MIA,
    MIA_NOTES,
    MODEL,
    SUMMARY,
    TRANSCRIPT,
    private_dir,
    public_run_config,
    read_secret,
    write_private,
)
from paczero.subsets import CandidateSubsets
from paczero.tasks.registry import build_objective, load_splits
from paczero.trainer import InsecurePrivacyWarning, Trainer

# ---------------------------------------------------------------------------------------------------------
# A finished run, as the auditor sees it


@dataclass
class AuditRun:
    """A finished run's public outputs plus what is needed to rebuild its pool and candidate subsets."""

    path: Path
    cfg: RunConfig
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    subsets: CandidateSubsets

    @classmethod
    def load(cls, path: str | Path) -> AuditRun:
        path = Path(path)
        for name in (CONFIG, SUMMARY, TRANSCRIPT):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a finished run: no {name}")
        cfg = public_run_config(path)  # J and the privacy seed are redacted; the ground truth is private
        lines = (path / TRANSCRIPT).read_text().splitlines()
        summary = json.loads((path / SUMMARY).read_text())
        subsets = public_subsets(cfg, summary["privacy"].get("pool_size") or cfg.task.pool_size)
        return cls(path, cfg, summary, [json.loads(x) for x in lines if x.strip()], subsets)

    def members(self) -> np.ndarray:
        """Ground truth: whether each pool example is in S*, from the private secret file (audits only)."""
        data = read_secret(self.path)
        if data["subsets"] != self.subsets.m:
            raise ValueError(
                f"the secret file is for M = {data['subsets']}, the config says M = {self.subsets.m}"
            )
        return self.subsets.membership[data["secret_index"]].astype(bool)


def _pool_losses(cfg: RunConfig, loaded: LoadedModel) -> np.ndarray:
    """Per-example loss of every pool example under ``loaded``, through the cached trunk where it applies."""
    objective = build_objective(cfg.task, loaded.tokenizer, cfg.train.micro_batch_size)
    pool = objective.prepare(load_splits(cfg.task).pool, loaded.device)
    return objective.losses(forward_model(loaded, objective, cfg.model), pool).double().cpu().numpy()


def _logit_confidence(losses: np.ndarray) -> np.ndarray:
    """log(p/(1−p)) with p = e^{−loss}: the roughly Gaussian statistic LiRA models."""
    losses = np.maximum(losses, 1e-12)
    return -losses - np.log(-np.expm1(-losses))


def _lira_scores(target: np.ndarray, shadows: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Likelihood ratio of the target's statistic under per-example 'in' vs 'out' Gaussians (shared variance).

    ``shadows`` (S × N) are the shadow models' statistics, ``inside`` (S × N) whether each example was in the
    shadow's secret subset; an example never in (or never out of) a shadow falls back to the global mean.
    """

    def fit(mask: np.ndarray) -> tuple[np.ndarray, float]:
        count = mask.sum(axis=0)
        total = np.where(mask, shadows, 0.0).sum(axis=0)
        overall = shadows[mask].mean() if mask.any() else shadows.mean()
        mean = np.where(count > 0, total / np.maximum(count, 1), overall)
        resid = (shadows - mean)[mask]
        return mean, float(resid.var()) if resid.size > 1 else 1.0

    mu_in, var_in = fit(inside)
    mu_out, var_out = fit(~inside)
    var = max(0.5 * (var_in + var_out), 1e-12)
    return ((target - mu_out) ** 2 - (target - mu_in) ** 2) / (2.0 * var)


# ---------------------------------------------------------------------------------------------------------
# The transcript attacker: replay the public transcript and update a posterior over the candidates


class TranscriptNotApplicable(ValueError):
    """The run's releases are not of a kind the transcript attacker models (e.g. DP baselines)."""


class _Replay(Mechanism):
    """The attacker's stand-in mechanism: publishes the recorded releases again, reading no secret.

    Each release carries the likelihood of the recorded value under every candidate, so the trainer's own
    ledger turns the replayed transcript into the attacker's posterior.
    """

    name = "transcript-replay"
    reads_secret = False
    guarantee = Guarantee.NONE

    def __init__(self, records: Sequence[dict[str, Any]], source: type[Mechanism]):
        super().__init__(None, np.random.Generator(np.random.PCG64(0)))
        self._releases: Iterator[tuple[float, float, str, float | None]] = (
            item
            for r in records
            for item in zip(r["released"], r["update"], r["kinds"], r["sigma"], strict=True)
        )
        self.source = source  # the run's mechanism: its likelihood model of what it released

    def release(self, step: StepInput, ledger) -> Release:
        observed, value, kind, sigma = next(self._releases)
        likelihood = self.source.log_likelihood(kind, observed, sigma, step)
        if likelihood is not None and not np.isfinite(ledger.log_post + likelihood).any():
            raise RuntimeError("no candidate subset is consistent with a recorded release")
        return Release(
            value=value, observed=observed, kind=kind, cost=0.0, sigma=sigma, log_likelihood=likelihood
        )


def transcript_posterior(run: AuditRun) -> np.ndarray:
    """The posterior over the M candidate subsets of an attacker who replays the run's public transcript.

    The replay starts from θ_0, regenerates every public direction and minibatch, recomputes the subset signs
    and applies the released updates; a mismatch with the recorded public diagnostics is an error.
    """
    if Guarantee(run.summary["privacy"]["guarantee"]).is_dp:
        raise TranscriptNotApplicable(
            f"the transcript attack models PAC releases; {run.summary['mechanism']} is not one"
        )
    cfg = dataclasses.replace(run.cfg, train=dataclasses.replace(run.cfg.train, progress=False))
    trainer = Trainer(cfg, mechanism=_Replay(run.records, get_mechanism(cfg.privacy.mechanism)))
    for t, recorded in enumerate(run.records):
        replayed = trainer.step(t)
        if replayed.unanimous != recorded["unanimous"] or not np.allclose(
            replayed.positive_fraction, recorded["positive_fraction"], rtol=0, atol=1e-12
        ):
            raise RuntimeError(f"the replay diverged from the recorded transcript at step {t + 1}")
    return trainer.ledger.posterior()


# ---------------------------------------------------------------------------------------------------------
# The membership-inference audit


@dataclass
class MiaAudit:
    """Aggregate results of the membership attacks on one run, next to its theoretical bound."""

    run: str
    mechanism: str
    guarantee: str
    pool_size: int
    members: int
    bound: float | None  # p*(I) or the DP bound on attack success; None when the run has none
    attacks: list[AttackResult]
    posterior: dict[str, Any] | None  # uniformity of the transcript posterior (aggregate only)
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["attacks"] = [a.to_dict() for a in self.attacks]
        return out

    def to_markdown(self) -> str:
        bound = "none (no guarantee)" if self.bound is None else f"{self.bound:.4f}"
        lines = [
            f"# Membership-inference audit: `{self.mechanism}`",
            "",
            f"Membership in the secret subset S* of a pool of {self.pool_size} examples "
            f"({self.members} members, prior 1/2). Bound on any attack's accuracy: {bound}.",
            "",
            "| attack | accuracy | 95% CI | p (acc > 1/2) | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in self.attacks:
            lines.append(
                f"| {a.attack} | {a.accuracy:.3f} | [{a.accuracy_ci[0]:.3f}, {a.accuracy_ci[1]:.3f}] | "
                f"{a.p_value:.3g} | {a.auc:.3f} | {a.tpr_at_1pct_fpr:.3f} | {a.tpr_at_01pct_fpr:.3f} |"
            )
        if self.posterior is not None:
            p = self.posterior
            lines += [
                "",
                f"Transcript posterior over the M = {p['m']} candidates: exactly uniform: "
                f"{p['uniform']}; max p_k = {p['max']:.4g}; entropy {p['entropy']:.4g} of log M = "
                f"{math.log(p['m']):.4g} nats.",
            ]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def membership_audit(
    run_dir: str | Path, *, shadows: int = 0, transcript: bool = True, seed: int = 0, confidence: float = 0.95
) -> MiaAudit:
    """Run the membership attacks on a finished run and return aggregate metrics (the secret stays inside).

    ``shadows`` > 0 adds a LiRA-style attack: that many shadow trainings of the same config on candidate
    subsets drawn by the auditor (the attacker does not know J), costing a full training each.
    """
    run = AuditRun.load(run_dir)
    members = run.members()
    rng = np.random.Generator(np.random.PCG64(seed))
    notes: list[str] = []
    target = _pool_losses(run.cfg, load_finetuned(run.cfg.model, run.path / MODEL))
    base_model = load_model(run.cfg.model)  # θ_0; the shadow runs train it too, sharing its trunk cache
    base = _pool_losses(run.cfg, base_model)
    scored = {"loss": -target, "loss − base loss": base - target}
    if shadows > 0:
        statistics = _shadow_statistics(run, base_model, target, shadows, rng)
        scored["LiRA (shadows)"] = _lira_scores(*statistics)
        notes.append(
            f"LiRA: {shadows} shadow runs on candidate subsets drawn by the auditor, shared variance."
        )
    posterior_info = None
    if transcript:
        try:
            posterior = transcript_posterior(run)
        except TranscriptNotApplicable as err:
            notes.append(f"transcript attack skipped: {err}")
        else:
            scored["transcript posterior"] = posterior @ run.subsets.membership
            positive = posterior[posterior > 0]
            posterior_info = {
                "m": run.subsets.m,
                "uniform": bool(np.all(posterior == posterior[0])),
                "max": float(posterior.max()),
                "entropy": float(-np.sum(positive * np.log(positive))),
            }
    attacks = [attack_metrics(name, s, members, rng, confidence) for name, s in scored.items()]
    privacy = run.summary["privacy"]
    return MiaAudit(
        run=run.path.name,
        mechanism=run.summary["mechanism"],
        guarantee=privacy["guarantee"],
        pool_size=len(members),
        members=int(members.sum()),
        bound=privacy.get("attack_bound"),
        attacks=attacks,
        posterior=posterior_info,
        notes=notes,
    )


def _shadow_statistics(
    run: AuditRun, base_model: LoadedModel, target: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target statistic, shadow statistics S × N, shadow membership S × N) from ``count`` shadow runs."""
    chosen = rng.choice(run.subsets.m, size=count, replace=count > run.subsets.m)
    start = trainable_state(base_model)
    stats = []
    for k in chosen:
        load_trainable_state(base_model, start)
        privacy = dataclasses.replace(
            run.cfg.privacy, secret_index=int(k), seed=int(rng.integers(2**31)), secure=False
        )
        cfg = dataclasses.replace(
            run.cfg, privacy=privacy, train=dataclasses.replace(run.cfg.train, progress=False)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecurePrivacyWarning)
            trainer = Trainer(cfg, loaded=base_model)
            trainer.run()
        stats.append(trainer.objective.losses(trainer.forward_model, trainer.pool).double().cpu().numpy())
    inside = run.subsets.membership[chosen].astype(bool)
    return _logit_confidence(target), _logit_confidence(np.array(stats)), inside


def write_membership_audit(audit: MiaAudit, run_dir: str | Path) -> Path:
    """Write ``private/audit/mia.json`` and ``mia.md`` (0600: scored against the secret); returns the dir."""
    out = private_dir(run_dir, AUDIT)
    write_private(Path(run_dir) / MIA, json.dumps(audit.to_dict(), indent=2))
    write_private(Path(run_dir) / MIA_NOTES, audit.to_markdown())
    return out
