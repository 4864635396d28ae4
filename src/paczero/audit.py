"""Empirical privacy audits: membership inference against a finished run, and secret independence.

Membership here is membership of a pool example in the secret subset S* = S_J, the unit the PAC guarantee
protects (prior exactly 1/2); membership in the pool itself is public. ``membership_audit`` scores every pool
example with three attackers — the released model's loss, that loss calibrated against the base model (and,
optionally, LiRA-style against shadow runs on other candidate subsets), and the Bayesian posterior over the
candidate subsets that an attacker who replays the public transcript obtains — and compares their success
with the run's bound (p*(I) or the DP bound). The ground truth comes from the run's private secret file, so
everything the audit computes depends on the secret (|S*| and every attack score are scored against it): its
results are written to the run's private area and never exported or shown in a public report.

``transcript_audit`` re-runs a short training under several secret indices with the same seeds and checks
that what is released agrees with the ledger: identical transcripts as long as nothing leaks, and per-release
information, measured exactly from the public transcript, never above what the ledger charged. A built-in
negative control (``quant_half`` under the same claim) must be caught, or the audit itself is not trusted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp
from scipy.stats import beta, binomtest, mannwhitneyu

from paczero.channel import binary_gaussian_mi
from paczero.config import RunConfig
from paczero.mechanisms.base import Guarantee, Mechanism, Release, StepInput
from paczero.models.loaders import load_finetuned, load_model
from paczero.rundir import private_dir, public_run_config, read_secret, write_private
from paczero.subsets import CandidateSubsets
from paczero.tasks.registry import build_objective, load_splits
from paczero.trainer import InsecurePrivacyWarning, Trainer, public_subsets

__all__ = [
    "AttackResult",
    "MiaAudit",
    "TranscriptAudit",
    "attack_metrics",
    "clopper_pearson",
    "membership_audit",
    "transcript_audit",
    "transcript_posterior",
]

NEGATIVE_CONTROL = "quant_half"
EXACT_ON_MEANS = ("raw_half",)  # mechanisms whose exact release is the subset mean, not its sign
FPR_LEVELS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


# ---------------------------------------------------------------------------------------------------------
# Statistics


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


@dataclass
class AttackResult:
    """Aggregate success of one membership attack (higher score = guessed member)."""

    attack: str
    n: int
    accuracy: float  # the top half of scores guessed members (ties broken by a public random order)
    accuracy_ci: tuple[float, float]
    p_value: float  # one-sided binomial test of accuracy > 1/2
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_1pct_fpr_ci: tuple[float, float]
    tpr_at_01pct_fpr: float  # written as tpr_at_0.1pct_fpr
    tpr_at_01pct_fpr_ci: tuple[float, float]

    def significant(self, level: float = 0.05) -> bool:
        return self.p_value < level

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tpr_at_0.1pct_fpr"] = out.pop("tpr_at_01pct_fpr")
        out["tpr_at_0.1pct_fpr_ci"] = out.pop("tpr_at_01pct_fpr_ci")
        return out


def _tpr_at_fpr(scores: np.ndarray, members: np.ndarray, fpr: float) -> tuple[int, int]:
    """(members above the threshold, members): the threshold lets at most ⌊fpr·n_out⌋ non-members above it."""
    outside = np.sort(scores[~members])[::-1]
    allowed = int(math.floor(fpr * len(outside)))
    threshold = outside[allowed] if allowed < len(outside) else -np.inf
    return int(np.sum(scores[members] > threshold)), int(members.sum())


def attack_metrics(
    name: str, scores: np.ndarray, members: np.ndarray, rng: np.random.Generator, confidence: float = 0.95
) -> AttackResult:
    """Accuracy (with a label-free threshold), AUC and TPR at 1% / 0.1% FPR with Clopper–Pearson intervals."""
    scores, members = np.asarray(scores, float), np.asarray(members, bool)
    n = len(scores)
    if members.all() or not members.any():
        raise ValueError("membership must contain both members and non-members")
    # Guess the top half as members; a public random order breaks ties (equal scores: a coin's accuracy).
    order = np.lexsort((rng.permutation(n), -scores))
    guess = np.zeros(n, bool)
    guess[order[: n // 2]] = True
    correct = int(np.sum(guess == members))
    auc = mannwhitneyu(scores[members], scores[~members]).statistic / (members.sum() * (~members).sum())
    tprs = [_tpr_at_fpr(scores, members, level) for level in FPR_LEVELS.values()]
    return AttackResult(
        attack=name,
        n=n,
        accuracy=correct / n,
        accuracy_ci=clopper_pearson(correct, n, confidence),
        p_value=float(binomtest(correct, n, 0.5, alternative="greater").pvalue),
        auc=float(auc),
        tpr_at_1pct_fpr=tprs[0][0] / tprs[0][1],
        tpr_at_1pct_fpr_ci=clopper_pearson(*tprs[0], confidence),
        tpr_at_01pct_fpr=tprs[1][0] / tprs[1][1],
        tpr_at_01pct_fpr_ci=clopper_pearson(*tprs[1], confidence),
    )


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
        for name in ("config.yaml", "summary.json", "steps.jsonl"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a finished run: no {name}")
        cfg = public_run_config(path)  # J and the privacy seed are redacted; the ground truth is private
        lines = (path / "steps.jsonl").read_text().splitlines()
        summary = json.loads((path / "summary.json").read_text())
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


def _pool_losses(cfg: RunConfig, model_dir: Path | None) -> np.ndarray:
    """Per-example loss of every pool example under the saved model (or the base model θ_0 when None)."""
    loaded = load_model(cfg.model) if model_dir is None else load_finetuned(cfg.model, model_dir)
    objective = build_objective(cfg.task, loaded.tokenizer, cfg.train.micro_batch_size)
    pool = objective.prepare(load_splits(cfg.task).pool, loaded.device)
    return objective.losses(loaded.model, pool).double().cpu().numpy()


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


def release_log_likelihood(
    kind: str, observed: float, sigma: float | None, step: StepInput, on_means: bool
) -> np.ndarray:
    """log P(Y_t = observed | J = k, public history), up to a constant, for every candidate k.

    unanimous/exact: the noiseless value each candidate would release (its sign, or its mean for raw_half)
    must equal Y; noisy: Gaussian around each candidate's sign; coin/public: the same for every k.
    """
    values = step.means if on_means else step.signs
    if kind in ("unanimous", "exact"):
        if on_means:
            return np.where(np.isclose(values, observed, rtol=1e-12, atol=0.0), 0.0, -np.inf)
        return np.where(values == observed, 0.0, -np.inf)
    if kind == "noisy":
        return -((observed - values) ** 2) / (2.0 * sigma**2)
    if kind in ("coin", "public"):
        return np.zeros(step.signs.shape)
    raise TranscriptNotApplicable(f"release kind {kind!r} is not modelled by the transcript attack")


class _Replay(Mechanism):
    """The attacker's stand-in mechanism: publishes the recorded releases again, reading no secret.

    Each release carries the likelihood of the recorded value under every candidate, so the trainer's own
    ledger turns the replayed transcript into the attacker's posterior.
    """

    name = "transcript-replay"
    reads_secret = False
    guarantee = Guarantee.NONE

    def __init__(self, records: Sequence[dict[str, Any]], on_means: bool):
        super().__init__(None, np.random.Generator(np.random.PCG64(0)))
        self._releases: Iterator[tuple[float, float, str, float | None]] = (
            item
            for r in records
            for item in zip(r["released"], r["update"], r["kinds"], r["sigma"], strict=True)
        )
        self.on_means = on_means

    def release(self, step: StepInput, ledger) -> Release:
        observed, value, kind, sigma = next(self._releases)
        likelihood = release_log_likelihood(kind, observed, sigma, step, self.on_means)
        if not np.isfinite(ledger.log_post + likelihood).any():
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
    trainer = Trainer(cfg)
    trainer.mechanism = _Replay(run.records, run.summary["mechanism"] in EXACT_ON_MEANS)
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
    target = _pool_losses(run.cfg, run.path / "model")
    base = _pool_losses(run.cfg, None)
    scored = {"loss": -target, "loss − base loss": base - target}
    if shadows > 0:
        scored["LiRA (shadows)"] = _lira_scores(*_shadow_statistics(run, target, shadows, rng))
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
    run: AuditRun, target: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target statistic, shadow statistics S × N, shadow membership S × N) from ``count`` shadow runs."""
    chosen = rng.choice(run.subsets.m, size=count, replace=count > run.subsets.m)
    stats = []
    for k in chosen:
        privacy = dataclasses.replace(
            run.cfg.privacy, secret_index=int(k), seed=int(rng.integers(2**31)), secure=False
        )
        cfg = dataclasses.replace(
            run.cfg, privacy=privacy, train=dataclasses.replace(run.cfg.train, progress=False)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecurePrivacyWarning)
            trainer = Trainer(cfg)
            trainer.run()
        stats.append(trainer.objective.losses(trainer.loaded.model, trainer.pool).double().cpu().numpy())
    inside = run.subsets.membership[chosen].astype(bool)
    return _logit_confidence(target), _logit_confidence(np.array(stats)), inside


def write_membership_audit(audit: MiaAudit, run_dir: str | Path) -> Path:
    """Write ``private/audit/mia.json`` and ``mia.md`` (0600: scored against the secret); returns the dir."""
    out = private_dir(run_dir, "audit")
    write_private(out / "mia.json", json.dumps(audit.to_dict(), indent=2))
    write_private(out / "mia.md", audit.to_markdown())
    return out


# ---------------------------------------------------------------------------------------------------------
# The transcript (secret-independence) audit


@dataclass
class _Trace:
    """One release as seen by the audit: the public subset aggregates and what was published and charged."""

    kind: str
    observed: float
    value: float
    sigma: float | None
    cost: float | None
    step: StepInput


class _Recorder(Mechanism):
    """Wraps the configured mechanism, keeping each release with its public inputs; reads no secret itself."""

    name = "transcript-recorder"
    reads_secret = False
    guarantee = Guarantee.NONE

    def __init__(self, inner: Mechanism):
        super().__init__(None, inner.rng)
        self.inner = inner
        self.guarantee = inner.guarantee
        self.traces: list[_Trace] = []

    def release(self, step: StepInput, ledger) -> Release:
        out = self.inner.release(step, ledger)
        self.traces.append(_Trace(out.kind, out.observed, out.value, out.sigma, out.cost, step))
        return out


def measured_information(traces: Sequence[_Trace], m: int, on_means: bool) -> np.ndarray:
    """I(S*; Y_t | realised public history) for every release, computed exactly from the public transcript.

    The auditor keeps its own posterior over the candidates (Bayes on the public subset aggregates). A release
    without noise leaks the entropy of the value it would take under the posterior; a noisy sign leaks the
    binary-input Gaussian MI at that posterior's q₊ and the published σ; coins and public values leak nothing
    by construction (which the identical-transcript check tests without any model).
    """
    log_post = np.full(m, -math.log(m))
    info = np.zeros(len(traces))
    for t, tr in enumerate(traces):
        p = np.exp(log_post - logsumexp(log_post))
        values = tr.step.means if on_means else tr.step.signs
        if tr.kind in ("unanimous", "exact"):
            _, inverse = np.unique(values, return_inverse=True)
            mass = np.bincount(inverse, weights=p)
            mass = mass[mass > 0]
            info[t] = float(-np.sum(mass * np.log(mass)))
        elif tr.kind == "noisy":
            info[t] = binary_gaussian_mi(min(max(float(np.sum(p[values > 0])), 0.0), 1.0), tr.sigma)
        log_post = log_post + release_log_likelihood(tr.kind, tr.observed, tr.sigma, tr.step, on_means)
        log_post -= logsumexp(log_post)
    return info


@dataclass
class SecretRun:
    """One re-run under a given secret index: what the audit measured against what the ledger charged."""

    secret_label: str  # "secret #i" in the order given; the index itself is not reported
    releases: int
    measured: float  # Σ_t measured information (nats)
    charged: float | None  # Σ_t ledger charges; None when some release was charged nothing (unbounded)
    worst_excess: float  # max_t (measured_t − charged_t), charges of None counted as 0
    transcript: list[tuple[float, float, str]] = field(repr=False, default_factory=list)
    weights: list[torch.Tensor] = field(repr=False, default_factory=list)
    leaking: list[bool] = field(repr=False, default_factory=list)


@dataclass
class TranscriptAudit:
    """Verdict of the secret-independence audit for one mechanism (and of its negative control)."""

    mechanism: str
    guarantee: str
    budget: float | None
    steps: int
    runs: list[SecretRun]
    identical_until_leak: bool  # transcripts agree up to the first release that measurably leaks
    identical_weights: bool
    within_ledger: bool
    passed: bool
    control: TranscriptAudit | None = None

    @property
    def control_detected(self) -> bool | None:
        return None if self.control is None else not self.control.passed

    def to_dict(self) -> dict[str, Any]:
        runs = [
            {k: getattr(r, k) for k in ("secret_label", "releases", "measured", "charged", "worst_excess")}
            for r in self.runs
        ]
        out = {k: getattr(self, k) for k in ("mechanism", "guarantee", "budget", "steps", "passed")}
        out.update(
            identical_until_leak=self.identical_until_leak,
            identical_weights=self.identical_weights,
            within_ledger=self.within_ledger,
            runs=runs,
        )
        if self.control is not None:
            out["control"] = self.control.to_dict()
            out["control_detected"] = self.control_detected
        return out


REL_TOL = 1e-6  # measured vs charged: both are the same exact formula, so only rounding may separate them


AUDIT_PRIVACY_SEED = 20260511  # the audit's re-runs share one deterministic privacy stream (audit only)


def transcript_audit(
    cfg: RunConfig, secrets: Sequence[int] | None = None, *, control: bool = True, claim: str | None = None
) -> TranscriptAudit:
    """Re-run ``cfg`` under several secret indices (same public, data and privacy seeds); audit the releases.

    The re-runs are the auditor's own experiment, never published: they use deterministic privacy randomness
    (the config's seed if it has one, else a fixed audit seed) so that only J differs between them.

    Passes when (a) transcripts are identical across secrets up to the first release that measurably depends
    on J (for ZPL: the whole transcript and the final weights), and (b) every release's measured information
    is at most its ledger charge and the total at most the budget (0 for zero-MI claims). ``claim`` is the
    guarantee audited (default: the mechanism's); with ``control``, ``quant_half`` is audited under the same
    claim and must fail.
    """
    m = cfg.privacy.subsets
    secrets = list(secrets) if secrets is not None else sorted({0, m // 2, m - 1})
    if len(secrets) < 2:
        raise ValueError("the transcript audit needs at least two secret indices")
    seed = AUDIT_PRIVACY_SEED if cfg.privacy.seed is None else cfg.privacy.seed
    privacy = dataclasses.replace(cfg.privacy, secure=False, seed=seed)
    cfg = dataclasses.replace(cfg, privacy=privacy, train=dataclasses.replace(cfg.train, progress=False))
    on_means = cfg.privacy.mechanism in EXACT_ON_MEANS
    runs = []
    guarantee = claim
    for i, j in enumerate(secrets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecurePrivacyWarning)
            trainer = Trainer(dataclasses.replace(cfg, privacy=dataclasses.replace(privacy, secret_index=j)))
        recorder = _Recorder(trainer.mechanism)
        trainer.mechanism = recorder
        guarantee = Guarantee(guarantee or recorder.guarantee)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecurePrivacyWarning)
            trainer.run()
        info = measured_information(recorder.traces, m, on_means)
        charges = np.array([0.0 if tr.cost is None else tr.cost for tr in recorder.traces])
        unbounded = any(tr.cost is None for tr in recorder.traces)
        if guarantee is Guarantee.ZERO_MI or unbounded:
            charges = np.zeros_like(charges)  # claimed zero, or no charge made: nothing may leak
        runs.append(
            SecretRun(
                secret_label=f"secret #{i + 1}",
                releases=len(info),
                measured=float(info.sum()),
                charged=None if unbounded else float(charges.sum()),
                worst_excess=float(np.max(info - charges * (1 + REL_TOL), initial=0.0)),
                transcript=[(tr.observed, tr.value, tr.kind) for tr in recorder.traces],
                weights=[p.detach().clone() for _, p in trainer.loaded.trainable],
                leaking=list(info > 0),
            )
        )
    budget = cfg.privacy.budget if guarantee is Guarantee.MI_BUDGET else 0.0
    within = all(r.worst_excess <= 1e-12 and r.measured <= budget * (1 + REL_TOL) + 1e-12 for r in runs)
    first, rest = runs[0], runs[1:]
    identical = all(_agree_until_leak(first, other) for other in rest)
    same_weights = all(
        len(first.weights) == len(o.weights)
        and all(torch.equal(a, b) for a, b in zip(first.weights, o.weights, strict=True))
        for o in rest
    )
    silent = all(r.measured == 0.0 for r in runs)
    result = TranscriptAudit(
        mechanism=cfg.privacy.mechanism,
        guarantee=guarantee,
        budget=budget,
        steps=cfg.train.steps,
        runs=runs,
        identical_until_leak=identical,
        identical_weights=same_weights,
        within_ledger=within,
        passed=identical and within and (same_weights or not silent),
    )
    if control:
        leaky = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, mechanism=NEGATIVE_CONTROL))
        result.control = transcript_audit(leaky, secrets, control=False, claim=guarantee)
    return result


def _agree_until_leak(a: SecretRun, b: SecretRun) -> bool:
    """Same releases before the first release that leaks in either run (all of them if none leaks)."""
    leaks = [t for t, flag in enumerate(a.leaking) if flag] + [t for t, flag in enumerate(b.leaking) if flag]
    until = min(leaks, default=None)
    if until is None:
        return a.transcript == b.transcript
    return a.transcript[:until] == b.transcript[:until]
