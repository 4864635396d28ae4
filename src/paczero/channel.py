"""Privacy arithmetic for one binary release: the leakage of a noised sign and what it means for attacks.

A secret bit X ∈ {+1, −1} with P(X = +1) = q released as Y = X + N(0, σ²) leaks (γ = 1/σ, Z ~ N(0, 1))
I(X; Y) = −q·E[log(q + (1−q)·e^{−2γ²−2γZ})] − (1−q)·E[log((1−q) + q·e^{−2γ²−2γZ})] nats,
at most h(q), the binary entropy; a binary symmetric channel with flip rate ρ leaks h(q(1−ρ)+(1−q)ρ) − h(ρ).
Mutual information matters because it bounds every membership attack: by data processing an attacker who
guesses the secret with success p against a prior π must have KL(Bern(p) ‖ Bern(π)) ≤ I, so p ≤ p*(I).
(ε, δ)-DP bounds the same success (prior 1/2) by (e^ε + δ)/(1 + e^ε); an MI budget and a DP ε are called
"matched" when these two attack-success bounds are equal. All functions take and return Python floats (nats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "attack_bound_from_dp",
    "attack_bound_from_mi",
    "binary_entropy",
    "binary_gaussian_mi",
    "binary_gaussian_sigma",
    "bsc_mi",
    "epsilon_from_attack_bound",
    "epsilon_matching_mi",
    "gaussian_sigma_bound",
    "mi_from_attack_bound",
    "mi_matching_epsilon",
]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)

# Quadrature rules, built once: probabilists' Gauss–Hermite (weights normalised to the N(0, 1) density)
# for smooth integrands, Gauss–Legendre on [−1, 1] for the windowed pieces of the split method.
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(80)
_GH_W = _GH_W / math.sqrt(2.0 * math.pi)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)

# Regimes in γ = 1/σ: a two-term series below _GAMMA_SERIES (relative error ~ (2γ²)²), Gauss–Hermite up
# to _GAMMA_SPLIT (the integrand's kink has width 1/(2γ) and Hermite loses accuracy beyond γ ≈ 1), the
# split method above it, and saturation at h(q) beyond _GAMMA_SATURATED (remainder below e^{−γ²/2}).
_GAMMA_SERIES = 1e-4
_GAMMA_SPLIT = 0.7
_GAMMA_SATURATED = 1e4
# The split pieces are integrated over the window where the integrand is within e^{−_WINDOW} of its peak.
_WINDOW = 40.0


def _require_probability(name: str, value: float, *, open_interval: bool = False) -> float:
    """Return ``value`` as a float after checking it lies in [0, 1] (or (0, 1)); ValueError otherwise."""
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must be a probability, got NaN")
    if open_interval and not 0.0 < x < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {x}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {x}")
    return x


def _require_nonnegative(name: str, value: float, *, allow_inf: bool = True) -> float:
    """Return ``value`` as a float after checking it is ≥ 0 and not NaN (and finite unless allowed)."""
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must be a number, got NaN")
    if x < 0.0:
        raise ValueError(f"{name} must be non-negative, got {x}")
    if not allow_inf and math.isinf(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def binary_entropy(p: float) -> float:
    """h(p) = −p·log p − (1−p)·log(1−p) in nats, with h(0) = h(1) = 0."""
    p = _require_probability("p", p)
    if p == 0.0 or p == 1.0:
        return 0.0
    if p > 0.5:  # 1 − p is exact here, so log(p) = log1p(−(1 − p)) keeps full precision near 1.
        p = 1.0 - p
    return -p * math.log(p) - (1.0 - p) * math.log1p(-p)


def _phi(z: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * z * z) * _INV_SQRT_2PI


def _normal_cdf(z: float) -> float:
    """Standard normal CDF via erfc, accurate in both tails."""
    return 0.5 * math.erfc(-z * _SQRT_HALF)


def _mean_log_mixture_hermite(log_s: float, log_o: float, gamma: float) -> float:
    """E[log(s + o·e^w)], w = −2γ² − 2γZ, s + o = 1, by Gauss–Hermite (accurate for γ ≲ 1).

    Where o·(e^w − 1) is small the integrand is log1p(o·expm1(w)), which keeps relative precision as γ → 0;
    elsewhere logaddexp avoids overflow.
    """
    w = (-2.0 * gamma * gamma) - (2.0 * gamma) * _GH_X
    u = math.exp(log_o) * np.expm1(w)
    small = np.abs(u) < 0.5
    values = np.where(small, np.log1p(np.where(small, u, 0.0)), np.logaddexp(log_s, log_o + w))
    return float(np.dot(_GH_W, values))


def _split_windows(kinks: list[float], c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integration windows for P(k) = ∫_k^∞ φ(z)·log1p(e^{−c(z−k)}) dz at each kink k.

    The integrand behaves like exp(F(z)) with F(z) = −z²/2 − c(z − k), peaked at max(k, −c); the window keeps
    the part within e^{−_WINDOW} of that peak. Returns (lower, upper, kink, log-peak) arrays.
    """
    span = math.sqrt(2.0 * _WINDOW)
    lower, upper, log_peak = [], [], []
    for k in kinks:
        peak = max(k, -c)
        log_peak.append(-0.5 * peak * peak - c * (peak - k))
        lower.append(k if k >= -c else max(k, -c - span))
        upper.append(-c + math.sqrt((peak + c) ** 2 + 2.0 * _WINDOW))
    return np.array(lower), np.array(upper), np.array(kinks), np.array(log_peak)


def _mi_split(q: float, gamma: float) -> float:
    """I(X; Y) for γ ≳ 1 through logaddexp(a, b − cz) = max(a, b − cz) + log1p(e^{−|a − b + cz|}).

    The max part has a closed form in Φ and φ; the remainder is two smooth one-sided pieces around the kink
    z₀ = (b − a)/c, each integrated by Gauss–Legendre over a window that follows its own mass, so tiny
    contributions (q near 0 or 1) keep their relative precision.
    """
    c = 2.0 * gamma
    log_q, log_r = math.log(q), math.log1p(-q)
    half_c2 = 2.0 * gamma * gamma
    # T(s, o) = E[log(s + o·e^w)] for (s, o) = (q, 1−q) and (1−q, q): a = log s, b = log o − 2γ².
    params = ((log_q, log_r - half_c2), (log_r, log_q - half_c2))
    kinks = []
    closed = []
    for a, b in params:
        z0 = (b - a) / c
        kinks.extend((z0, -z0))
        closed.append(a * _normal_cdf(-z0) + b * _normal_cdf(z0) + c * _phi(z0))
    lower, upper, kink, log_peak = _split_windows(kinks, c)
    half = 0.5 * (upper - lower)
    z = (0.5 * (upper + lower))[:, None] + half[:, None] * _GL_X[None, :]
    x = c * (z - kink[:, None])
    e = np.maximum(np.exp(-x), 1e-300)
    # φ(z)·log1p(e^{−x}) = exp(F(z) − F_peak)·(log1p(e)/e)·e^{F_peak}/√(2π), computed without under/overflow.
    f = np.exp(-0.5 * z * z - x - log_peak[:, None]) * (np.log1p(e) / e)
    pieces = half * (f @ _GL_W) * np.exp(log_peak) * _INV_SQRT_2PI
    t_q = closed[0] + float(pieces[0] + pieces[1])
    t_r = closed[1] + float(pieces[2] + pieces[3])
    return -q * t_q - (1.0 - q) * t_r


def binary_gaussian_mi(q: float, sigma: float) -> float:
    """I(X; X + N(0, σ²)) in nats for X ∈ {+1, −1} with P(X = +1) = q.

    Symmetric in q ↔ 1 − q, non-increasing in σ, between 0 and h(q); σ = 0 gives h(q) and σ = ∞ gives 0.
    Accurate to ~1e-12 relative (a series keeps the large-σ limit 2q(1−q)/σ² exact to rounding).
    """
    q = _require_probability("q", q)
    sigma = _require_nonnegative("sigma", sigma)
    q = min(q, 1.0 - q)
    if q == 0.0 or math.isinf(sigma):
        return 0.0
    entropy = binary_entropy(q)
    if sigma == 0.0:
        return entropy
    gamma = 1.0 / sigma
    if gamma >= _GAMMA_SATURATED:
        return entropy
    if gamma < _GAMMA_SERIES:
        # I = p·t − p²·t² + O(t³) with p = q(1−q), t = 2γ².
        p = q * (1.0 - q)
        t = 2.0 * gamma * gamma
        mi = p * t * (1.0 - p * t)
    elif gamma < _GAMMA_SPLIT:
        log_q, log_r = math.log(q), math.log1p(-q)
        mi = -q * _mean_log_mixture_hermite(log_q, log_r, gamma) - (1.0 - q) * _mean_log_mixture_hermite(
            log_r, log_q, gamma
        )
    else:
        mi = _mi_split(q, gamma)
    return min(max(mi, 0.0), entropy)


def gaussian_sigma_bound(q: float, beta: float) -> float:
    """σ_G = sqrt(4q(1−q)/(e^{2β} − 1)), where ½·log(1 + Var(X)/σ²) = β: always enough noise for budget β."""
    q = _require_probability("q", q)
    beta = _require_nonnegative("beta", beta)
    if beta == 0.0:
        raise ValueError("beta must be positive: zero leakage needs infinite noise")
    return math.sqrt(4.0 * q * (1.0 - q) / math.expm1(2.0 * beta))


def binary_gaussian_sigma(q: float, beta: float, rel_tol: float = 1e-3) -> float:
    """The σ whose leakage I(q, σ) lies in [β·(1 − rel_tol), β]: conservative calibration to an MI budget β.

    Brackets log σ below σ_G (which always suffices; the root lies within [σ_G·1e-3, σ_G]) and refines by
    Illinois regula falsi; it only ever returns a σ whose computed leakage is at most β.
    """
    target = _LeakageTarget.checked(q, beta, rel_tol)
    bracket, mi_hi = _above_gaussian_bound(target, rel_tol)
    if mi_hi >= target.floor:
        return math.exp(bracket.hi)
    found = _walk_down(target, bracket)
    return math.exp(found if found is not None else _illinois(target, bracket))


@dataclass(frozen=True)
class _LeakageTarget:
    """σ calibration's aim: a leakage in [floor, beta], measured as a logit of I/h(q) around ``aim_logit``."""

    q: float
    beta: float
    floor: float
    entropy: float
    aim_logit: float

    @classmethod
    def checked(cls, q: float, beta: float, rel_tol: float) -> _LeakageTarget:
        q = _require_probability("q", q, open_interval=True)
        beta = _require_nonnegative("beta", beta, allow_inf=False)
        rel_tol = float(rel_tol)
        if not 0.0 < rel_tol < 1.0:
            raise ValueError(f"rel_tol must lie strictly between 0 and 1, got {rel_tol}")
        if beta == 0.0:
            raise ValueError("beta must be positive: zero leakage needs infinite noise")
        entropy = binary_entropy(q)
        if beta >= entropy:
            raise ValueError(
                f"beta = {beta} is at least h(q) = {entropy}: even a noiseless release leaks no more, "
                "so there is nothing to calibrate"
            )
        aim = beta * (1.0 - 0.5 * rel_tol)
        return cls(q, beta, beta * (1.0 - rel_tol), entropy, math.log(aim) - math.log(entropy - aim))

    def leakage(self, log_sigma: float) -> tuple[float, float]:
        """(I, logit(I/h) − logit(aim/h)) at σ = e^log_sigma: near-linear in log σ at both ends."""
        mi = binary_gaussian_mi(self.q, math.exp(log_sigma))
        if mi <= 0.0:
            return mi, -math.inf
        if mi >= self.entropy:
            return mi, math.inf
        return mi, math.log(mi) - math.log(self.entropy - mi) - self.aim_logit


@dataclass
class _Bracket:
    """log σ bounds and their logit distances: ``lo`` leaks more than β (nan: none yet), ``hi`` at most β."""

    lo: float
    f_lo: float
    hi: float
    f_hi: float


def _above_gaussian_bound(target: _LeakageTarget, rel_tol: float) -> tuple[_Bracket, float]:
    """``hi`` = log σ_G, nudged up until it leaks at most β; returns the bracket and hi's leakage."""
    bracket = _Bracket(math.nan, math.nan, math.log(gaussian_sigma_bound(target.q, target.beta)), math.nan)
    mi_hi, bracket.f_hi = target.leakage(bracket.hi)
    for _ in range(64):
        # σ_G is exact to second order at q = 1/2, so rounding can put its leakage a hair above β: nudge up.
        if mi_hi <= target.beta:
            return bracket, mi_hi
        bracket.lo, bracket.f_lo = bracket.hi, bracket.f_hi
        bracket.hi += 0.25 * rel_tol
        mi_hi, bracket.f_hi = target.leakage(bracket.hi)
    raise RuntimeError(f"no σ above the Gaussian bound met beta = {target.beta} at q = {target.q}")


def _walk_down(target: _LeakageTarget, bracket: _Bracket) -> float | None:
    """Walk log σ down from ``hi`` (by 4×) until it leaks too much; a log σ in the band if one is met."""
    while math.isnan(bracket.lo):  # within a few steps of σ_G·1e-3
        x = bracket.hi - math.log(4.0)
        mi, f = target.leakage(x)
        if target.floor <= mi <= target.beta:
            return x
        if mi > target.beta:
            bracket.lo, bracket.f_lo = x, f
        elif x < bracket.hi - 60.0:
            raise RuntimeError(f"no σ leaks more than beta = {target.beta} at q = {target.q}")
        else:
            bracket.hi, bracket.f_hi = x, f
    return None


def _illinois(target: _LeakageTarget, b: _Bracket) -> float:
    """Illinois regula falsi on the bracket; a log σ in the band, else the last ``hi`` (which leaks ≤ β)."""
    side = 0
    for _ in range(200):
        finite = math.isfinite(b.f_lo) and math.isfinite(b.f_hi)
        x = b.hi - b.f_hi * (b.hi - b.lo) / (b.f_hi - b.f_lo) if finite else math.nan
        if not b.lo < x < b.hi:  # outside the bracket, or no secant (nan): bisect
            x = 0.5 * (b.lo + b.hi)
        mi, f = target.leakage(x)
        if target.floor <= mi <= target.beta:
            return x
        if mi > target.beta:
            b.lo, b.f_lo = x, f
            if side == -1:  # halve the stale endpoint's value so both ends of the bracket move
                b.f_hi *= 0.5
            side = -1
        else:
            b.hi, b.f_hi = x, f
            if side == 1:
                b.f_lo *= 0.5
            side = 1
        if b.hi - b.lo <= 4.0 * math.ulp(abs(b.hi) + 1.0):
            break
    return b.hi


def bsc_mi(q: float, rho: float) -> float:
    """Leakage of a binary symmetric channel with flip probability ρ: h(q(1−ρ) + (1−q)ρ) − h(ρ)."""
    q = _require_probability("q", q)
    rho = _require_probability("rho", rho)
    return max(binary_entropy(q * (1.0 - rho) + (1.0 - q) * rho) - binary_entropy(rho), 0.0)


def _log1p_minus(u: float) -> float:
    """log(1 + u) − u without cancellation for small |u| (u > −1)."""
    if abs(u) < 0.01:
        # −u²/2 + u³/3 − … ; the first omitted term is below 1e-17 relative.
        total = 0.0
        for k in range(9, 1, -1):
            total = total * u + (1.0 if k % 2 else -1.0) / k
        return total * u * u
    return math.log1p(u) - u


def _kl_bernoulli(p: float, prior: float) -> float:
    """KL(Bern(p) ‖ Bern(prior)) in nats, with 0·log 0 = 0 and cancellation-free evaluation near p = prior."""
    d = p - prior
    u1, u2 = d / prior, -d / (1.0 - prior)
    if max(abs(u1), abs(u2)) < 0.5:
        # p·u1 + (1−p)·u2 = d²/(prior(1−prior)); the rest is the second-order remainder of each log.
        return max(p * _log1p_minus(u1) + (1.0 - p) * _log1p_minus(u2) + d * d / (prior * (1.0 - prior)), 0.0)
    kl = 0.0
    if p > 0.0:
        kl += p * math.log(p / prior)
    if p < 1.0:
        kl += (1.0 - p) * math.log((1.0 - p) / (1.0 - prior))
    return max(kl, 0.0)


def mi_from_attack_bound(p: float, prior: float = 0.5) -> float:
    """KL(Bern(p) ‖ Bern(prior)): the MI an attack with success p against ``prior`` requires (p ≥ prior)."""
    p = _require_probability("p", p)
    prior = _require_probability("prior", prior, open_interval=True)
    return _kl_bernoulli(p, prior)


def attack_bound_from_mi(mi: float, prior: float = 0.5) -> float:
    """p*(I): the largest attack success p ≥ prior with KL(Bern(p) ‖ Bern(prior)) ≤ I; 1 if I ≥ −log prior."""
    mi = _require_nonnegative("mi", mi)
    prior = _require_probability("prior", prior, open_interval=True)
    if mi == 0.0:
        return prior
    if mi >= -math.log(prior):  # KL(1 ‖ prior) = −log prior: even certainty fits in the budget
        return 1.0
    return float(brentq(lambda p: _kl_bernoulli(p, prior) - mi, prior, 1.0, xtol=1e-300, maxiter=500))


def attack_bound_from_dp(epsilon: float, delta: float = 0.0) -> float:
    """(ε, δ)-DP bound on membership-attack success at prior 1/2: (e^ε + δ)/(1 + e^ε), capped at 1."""
    epsilon = _require_nonnegative("epsilon", epsilon)
    delta = _require_probability("delta", delta)
    damp = math.exp(-epsilon)  # (1 + δ·e^{−ε})/(1 + e^{−ε}) never overflows
    return min((1.0 + delta * damp) / (1.0 + damp), 1.0)


def epsilon_from_attack_bound(p: float, delta: float = 0.0) -> float:
    """The ε whose DP attack bound is p: log((p − δ)/(1 − p)), for 1/2 ≤ p.

    Returns ∞ at p = 1 and 0 when p is below the ε = 0 bound (1 + δ)/2 (then every (ε, δ) is weaker);
    raises ValueError for p < 1/2 or p ≤ δ, where no ε ≥ 0 corresponds.
    """
    p = _require_probability("p", p)
    delta = _require_probability("delta", delta)
    if p < 0.5:
        raise ValueError(f"an attack bound at prior 1/2 is at least 1/2, got p = {p}")
    if p <= delta:
        raise ValueError(f"the attack bound p = {p} must exceed delta = {delta}")
    if p == 1.0:
        return math.inf
    return max(math.log((p - delta) / (1.0 - p)), 0.0)


def epsilon_matching_mi(mi: float, delta: float = 0.0) -> float:
    """The DP ε with the same attack-success bound as an MI guarantee I (prior 1/2)."""
    return epsilon_from_attack_bound(attack_bound_from_mi(mi), delta)


def mi_matching_epsilon(epsilon: float, delta: float = 0.0) -> float:
    """The MI (nats) with the same attack-success bound as (ε, δ)-DP (prior 1/2)."""
    return mi_from_attack_bound(attack_bound_from_dp(epsilon, delta))
