"""Empirical privacy audits, membership inference (``mia``) and secret independence (``transcript``)."""

from paczero.audit.mia import MiaAudit, membership_audit, transcript_posterior
from paczero.audit.stats import AttackResult, attack_metrics, clopper_pearson
from paczero.audit.transcript import TranscriptAudit, transcript_audit

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
