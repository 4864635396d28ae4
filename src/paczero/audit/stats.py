"""Attack statistics: success of a membership attack with exact binomial intervals, not point estimates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import beta, binomtest, mannwhitneyu

FPR_LEVELS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


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
