"""The secret-independence audit: re-runs under several secrets checked against what the ledger charged.

``transcript_audit`` re-runs a short training under several secret indices with the same seeds and checks
that what is released agrees with the ledger: identical transcripts as long as nothing leaks, and per-release
information, measured exactly from the public transcript, never above what the ledger charged. The
registered negative control (``quant_half``) is audited under the same claim and must be caught, or the
audit itself is not trusted.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from paczero.channel import binary_gaussian_mi
from paczero.config import RunConfig
from paczero.mechanisms.base import Mechanism, Release, StepInput
from paczero.mechanisms.registry import get_mechanism, negative_control
from paczero.privacy.ledger import Guarantee
from paczero.privacy.pac import PacLedger
from paczero.subsets import Secret, privacy_entropy, privacy_generators
from paczero.trainer import InsecurePrivacyWarning, Trainer


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


def measured_information(traces: Sequence[_Trace], m: int, mechanism: type[Mechanism]) -> np.ndarray:
    """I(S*; Y_t | realised public history) for every release, computed exactly from the public transcript.

    The auditor keeps its own posterior over the candidates (Bayes on the public subset aggregates, with the
    mechanism's likelihood model). A release without noise leaks the entropy of the value it would take under
    the posterior; a noisy sign leaks the binary-input Gaussian MI at that posterior's q₊ and the published σ;
    coins and public values leak nothing by construction (which the identical-transcript check tests without
    any model).
    """
    auditor = PacLedger(m, max(len(traces), 1))
    info = np.zeros(len(traces))
    for t, tr in enumerate(traces):
        p = auditor.posterior()
        values = mechanism.released_values(tr.step)
        if tr.kind in ("unanimous", "exact"):
            _, inverse = np.unique(values, return_inverse=True)
            mass = np.bincount(inverse, weights=p)
            mass = mass[mass > 0]
            info[t] = float(-np.sum(mass * np.log(mass)))
        elif tr.kind == "noisy":
            info[t] = binary_gaussian_mi(min(max(float(np.sum(p[values > 0])), 0.0), 1.0), tr.sigma)
        auditor.observe(mechanism.log_likelihood(tr.kind, tr.observed, tr.sigma, tr.step))
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
    _, noise_rng, _ = privacy_generators(privacy_entropy(seed, secure=False))  # as each re-run draws it
    runs = []
    guarantee = claim
    for i, j in enumerate(secrets):
        recorder = _Recorder(get_mechanism(cfg.privacy.mechanism)(Secret(j, m), copy.deepcopy(noise_rng)))
        guarantee = Guarantee(guarantee or recorder.guarantee)
        runs.append(_secret_run(cfg, j, recorder, guarantee, f"secret #{i + 1}"))
    result = _verdict(cfg, guarantee, runs)
    if control:
        leaky = dataclasses.replace(
            cfg, privacy=dataclasses.replace(cfg.privacy, mechanism=negative_control().name)
        )
        result.control = transcript_audit(leaky, secrets, control=False, claim=guarantee)
    return result


def _secret_run(cfg: RunConfig, j: int, recorder: _Recorder, guarantee: Guarantee, label: str) -> SecretRun:
    """Train ``cfg`` with secret index ``j`` through ``recorder``; what it released, measured and charged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecurePrivacyWarning)
        rerun = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, secret_index=j))
        trainer = Trainer(rerun, mechanism=recorder)
        trainer.run()
    info = measured_information(recorder.traces, cfg.privacy.subsets, get_mechanism(cfg.privacy.mechanism))
    charges = np.array([0.0 if tr.cost is None else tr.cost for tr in recorder.traces])
    unbounded = any(tr.cost is None for tr in recorder.traces)
    if guarantee is Guarantee.ZERO_MI or unbounded:
        charges = np.zeros_like(charges)  # claimed zero, or no charge made: nothing may leak
    return SecretRun(
        secret_label=label,
        releases=len(info),
        measured=float(info.sum()),
        charged=None if unbounded else float(charges.sum()),
        worst_excess=float(np.max(info - charges * (1 + REL_TOL), initial=0.0)),
        transcript=[(tr.observed, tr.value, tr.kind) for tr in recorder.traces],
        weights=[p.detach().clone() for _, p in trainer.loaded.trainable],
        leaking=list(info > 0),
    )


def _verdict(cfg: RunConfig, guarantee: Guarantee, runs: list[SecretRun]) -> TranscriptAudit:
    """Whether the runs agree until a leak, keep within the ledger, and (if nothing leaks) end equal."""
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
    return TranscriptAudit(
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


def _agree_until_leak(a: SecretRun, b: SecretRun) -> bool:
    """Same releases before the first release that leaks in either run (all of them if none leaks)."""
    leaks = [t for t, flag in enumerate(a.leaking) if flag] + [t for t, flag in enumerate(b.leaking) if flag]
    until = min(leaks, default=None)
    if until is None:
        return a.transcript == b.transcript
    return a.transcript[:until] == b.transcript[:until]
