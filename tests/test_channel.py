"""Tests for paczero.channel: binary Gaussian channel leakage, its inverse, and attack-success bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from paczero.channel import (
    attack_bound_from_dp,
    attack_bound_from_mi,
    binary_entropy,
    binary_gaussian_mi,
    binary_gaussian_sigma,
    bsc_mi,
    epsilon_from_attack_bound,
    epsilon_matching_mi,
    gaussian_sigma_bound,
    mi_from_attack_bound,
    mi_matching_epsilon,
)


def quad_mi(q: float, sigma: float) -> float:
    """Independent reference: I = h(Y) − h(noise), with h(Y) integrated by adaptive quadrature over y.

    The density of Y = X + N(0, σ²) is a two-component mixture; its log is taken with logaddexp so the tails
    stay finite, and the integral is split around each component so quad sees both spikes when σ is small.
    """
    log_norm = -0.5 * math.log(2.0 * math.pi) - math.log(sigma)

    def neg_p_log_p(y: float) -> float:
        log_p = np.logaddexp(
            math.log(q) - 0.5 * ((y - 1.0) / sigma) ** 2, math.log1p(-q) - 0.5 * ((y + 1.0) / sigma) ** 2
        )
        log_p += log_norm
        return 0.0 if log_p < -700.0 else -math.exp(log_p) * log_p

    reach = 40.0 * sigma
    if reach < 1.0:  # two separate spikes, nothing in between
        pieces = [(-1.0 - reach, -1.0 + reach), (1.0 - reach, 1.0 + reach)]
    else:
        pieces = [(-1.0 - reach, -1.0), (-1.0, 1.0), (1.0, 1.0 + reach)]
    h_y = sum(integrate.quad(neg_p_log_p, a, b, epsabs=1e-13, epsrel=1e-13, limit=400)[0] for a, b in pieces)
    h_noise = 0.5 * math.log(2.0 * math.pi * math.e * sigma * sigma)
    return h_y - h_noise


def quad_mi_defining_formula(q: float, sigma: float) -> float:
    """Second reference, relative-accurate for moderate σ: the defining expectation over Z by adaptive quad.

    I = −q·E[log(q + (1−q)e^{−2γ²−2γZ})] − (1−q)·E[log((1−q) + q·e^{−2γ²−2γZ})], with breakpoints at the
    integrand's kink so quad resolves it; unlike h(Y) − h(noise) this has no cancellation between large terms.
    """
    gamma = 1.0 / sigma

    def mean_log(s: float, o: float) -> float:
        kink = (math.log(o / s) - 2.0 * gamma * gamma) / (2.0 * gamma)

        def integrand(z: float) -> float:
            log_mix = np.logaddexp(math.log(s), math.log(o) - 2.0 * gamma * gamma - 2.0 * gamma * z)
            return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * float(log_mix)

        points = sorted({min(max(p, -39.0), 39.0) for p in (kink - 5 / gamma, kink, kink + 5 / gamma, 0.0)})
        return integrate.quad(integrand, -40.0, 40.0, points=points, epsabs=1e-14, epsrel=1e-12, limit=400)[0]

    return -q * mean_log(q, 1.0 - q) - (1.0 - q) * mean_log(1.0 - q, q)


# --------------------------------------------------------------------------------------------------------
# binary_entropy and the binary Gaussian channel


def test_binary_entropy_values() -> None:
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == pytest.approx(math.log(2.0), rel=1e-15)
    p = 0.2
    assert binary_entropy(p) == pytest.approx(-p * math.log(p) - (1 - p) * math.log(1 - p), rel=1e-14)
    # tiny p keeps relative precision: h(p) ≈ p·(1 − log p)
    assert binary_entropy(1e-15) == pytest.approx(1e-15 * (1.0 - math.log(1e-15)), rel=1e-12)


@pytest.mark.parametrize(
    ("q", "gamma", "expected"),
    [
        (0.5, 0.3, 4.308488e-2),
        (0.5, 1.0, 3.368308e-1),
        (0.9, 1.0, 1.420204e-1),
        (0.9, 3.0, 3.228801e-1),
        (0.99, 1.0, 1.865063e-2),
    ],
)
def test_mi_vectors(q: float, gamma: float, expected: float) -> None:
    assert binary_gaussian_mi(q, 1.0 / gamma) == pytest.approx(expected, abs=1e-7)


def test_mi_against_quadrature_oracle() -> None:
    rng = np.random.default_rng(20240611)
    worst = 0.0
    for i in range(30):
        if i % 3 == 0:  # extremes of q as well as the bulk
            q = float(10 ** rng.uniform(-6, -1))
            q = q if rng.random() < 0.5 else 1.0 - q
        else:
            q = float(rng.uniform(0.0, 1.0))
        sigma = float(10 ** rng.uniform(-3, 6))
        ours = binary_gaussian_mi(q, sigma)
        ref = quad_mi(q, sigma)
        worst = max(worst, abs(ours - ref))
        assert abs(ours - ref) <= 2e-6, (q, sigma, ours, ref)
    assert worst <= 2e-6


def test_mi_relative_accuracy_where_the_kink_is_sharp() -> None:
    # γ from 0.05 to 20 covers the sharp-kink regime where plain 64-node Gauss–Hermite is off by ~1e-7..1e-6.
    rng = np.random.default_rng(99)
    for _ in range(30):
        q = float(rng.uniform(0.01, 0.99))
        sigma = float(10 ** rng.uniform(-1.3, 1.3))
        ref = quad_mi_defining_formula(q, sigma)
        assert binary_gaussian_mi(q, sigma) == pytest.approx(ref, rel=1e-9), (q, sigma)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.3, 1e-6])
def test_mi_around_regime_boundaries(q: float) -> None:
    # The implementation switches method near γ = 1e-4 and γ = 0.7: values must join smoothly there.
    for gamma in (1e-4, 0.7):
        below = binary_gaussian_mi(q, 1.0 / (gamma * (1 - 1e-9)))
        above = binary_gaussian_mi(q, 1.0 / (gamma * (1 + 1e-9)))
        assert above == pytest.approx(below, rel=1e-8)
        assert above >= below


def test_mi_symmetric_in_q() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        q = float(rng.uniform(0.0, 1.0))
        sigma = float(10 ** rng.uniform(-3, 6))
        assert binary_gaussian_mi(q, sigma) == pytest.approx(binary_gaussian_mi(1.0 - q, sigma), rel=1e-12)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.01, 0.999, 1e-9])
def test_mi_monotone_in_sigma_and_below_entropy(q: float) -> None:
    sigmas = np.logspace(-3, 6, 500)
    values = np.array([binary_gaussian_mi(q, float(s)) for s in sigmas])
    # near saturation (I → h(q)) rounding can flicker by an ulp; anything larger is a real increase
    assert np.all(np.diff(values) <= 1e-15 * values[:-1])
    assert np.all(values <= binary_entropy(q))
    assert np.all(values >= 0.0)
    assert values[0] == pytest.approx(binary_entropy(q), rel=1e-12)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.01])
def test_mi_large_sigma_limit(q: float) -> None:
    limit = 2.0 * q * (1.0 - q)
    assert binary_gaussian_mi(q, 1e3) == pytest.approx(limit / 1e6, rel=1e-3)
    # Far out the value keeps full relative precision (I = p·t − p²·t² + …, p = q(1−q), t = 2/σ²).
    t = 2.0 / 1e12
    assert binary_gaussian_mi(q, 1e6) == pytest.approx(q * (1 - q) * t * (1 - q * (1 - q) * t), rel=1e-12)
    assert binary_gaussian_mi(q, 1e100) == pytest.approx(limit / 1e200, rel=1e-12)


def test_mi_edge_cases() -> None:
    assert binary_gaussian_mi(0.0, 1.0) == 0.0
    assert binary_gaussian_mi(1.0, 1.0) == 0.0
    assert binary_gaussian_mi(0.3, math.inf) == 0.0
    assert binary_gaussian_mi(0.3, 0.0) == binary_entropy(0.3)
    assert binary_gaussian_mi(0.3, 1e-300) == pytest.approx(binary_entropy(0.3), rel=1e-15)


# --------------------------------------------------------------------------------------------------------
# the inverse: calibrating σ to a budget


@pytest.mark.parametrize(
    ("q", "beta", "sigma_exact", "sigma_gauss"),
    [
        (0.50, 1 / 128, 7.9688, 7.9688),
        (0.75, 1 / 128, 6.9010, 6.9012),
        (0.90, 1 / 128, 4.7806, 4.7813),
        (0.90, 1e-4, 42.4243, 42.4243),
    ],
)
def test_sigma_vectors(q: float, beta: float, sigma_exact: float, sigma_gauss: float) -> None:
    assert round(gaussian_sigma_bound(q, beta), 4) == pytest.approx(sigma_gauss, abs=1e-9)
    # a tight tolerance pins the root itself; the default 1e-3 band leaves σ free to ~5e-4 relative
    assert round(binary_gaussian_sigma(q, beta, rel_tol=1e-9), 4) == pytest.approx(sigma_exact, abs=1e-9)
    sigma = binary_gaussian_sigma(q, beta)
    assert sigma_exact * (1 - 1e-3) <= sigma <= sigma_gauss * (1 + 1e-9)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.01, 0.999, 0.3, 1e-6])
def test_sigma_meets_budget_within_relative_band(q: float) -> None:
    top = 0.999 * binary_entropy(q)
    betas = [b for b in np.logspace(-9, math.log10(top), 25) if b <= top]
    for beta in [*betas, 1e-7]:
        if beta > top:
            continue
        sigma = binary_gaussian_sigma(q, float(beta))
        leak = binary_gaussian_mi(q, sigma)
        assert leak <= beta, (q, beta, leak)
        assert leak >= beta * (1 - 1e-3), (q, beta, leak)
        # σ_G suffices, so the answer never needs more noise than that (up to the rounding nudge)
        assert sigma <= gaussian_sigma_bound(q, float(beta)) * (1 + 1e-3)


def test_sigma_small_budget_is_relative_not_absolute() -> None:
    # With β = 1e-7 an absolute 1e-6 tolerance would accept σ leaking several times β.
    beta = 1e-7
    sigma = binary_gaussian_sigma(0.5, beta)
    leak = binary_gaussian_mi(0.5, sigma)
    assert beta * (1 - 1e-3) <= leak <= beta
    assert sigma == pytest.approx(math.sqrt(0.5 / beta), rel=1e-3)


def test_sigma_custom_tolerance() -> None:
    for rel_tol in (1e-1, 1e-6):
        sigma = binary_gaussian_sigma(0.8, 0.05, rel_tol=rel_tol)
        leak = binary_gaussian_mi(0.8, sigma)
        assert 0.05 * (1 - rel_tol) <= leak <= 0.05


def test_gaussian_bound_is_sufficient() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        q = float(rng.uniform(0.001, 0.999))
        beta = float(rng.uniform(0.001, 0.99)) * binary_entropy(q)
        assert binary_gaussian_mi(q, gaussian_sigma_bound(q, beta)) <= beta * (1 + 1e-12)


# --------------------------------------------------------------------------------------------------------
# binary symmetric channel


def test_bsc_mi() -> None:
    assert bsc_mi(0.3, 0.0) == pytest.approx(binary_entropy(0.3), rel=1e-15)
    assert bsc_mi(0.3, 0.5) == 0.0
    assert bsc_mi(0.5, 0.1) == pytest.approx(math.log(2.0) - binary_entropy(0.1), rel=1e-14)
    assert bsc_mi(0.3, 0.1) == pytest.approx(bsc_mi(0.3, 0.9), rel=1e-12)
    assert bsc_mi(0.3, 0.05) > bsc_mi(0.3, 0.2)


# --------------------------------------------------------------------------------------------------------
# attack-success bounds and matching


def kl(p: float, prior: float) -> float:
    """Direct KL(Bern(p) ‖ Bern(prior)) for the tests."""
    out = 0.0
    if p > 0:
        out += p * math.log(p / prior)
    if p < 1:
        out += (1 - p) * math.log((1 - p) / (1 - prior))
    return out


def test_attack_bound_from_mi_basics() -> None:
    assert attack_bound_from_mi(0.0) == 0.5
    assert attack_bound_from_mi(math.log(2.0)) == 1.0
    assert attack_bound_from_mi(5.0) == 1.0
    grid = np.linspace(0.0, 0.69, 200)  # below log 2, where the bound is still short of 1
    bounds = np.array([attack_bound_from_mi(float(m)) for m in grid])
    assert np.all(np.diff(bounds) > 0.0)
    assert np.all((bounds >= 0.5) & (bounds < 1.0))


def test_attack_bound_inverts_kl() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        mi = float(10 ** rng.uniform(-6, math.log10(0.69)))
        p = attack_bound_from_mi(mi)
        assert p > 0.5
        assert kl(p, 0.5) == pytest.approx(mi, rel=1e-9)
        assert mi_from_attack_bound(p) == pytest.approx(mi, rel=1e-9)


def test_attack_bound_general_prior() -> None:
    prior = 0.1
    assert attack_bound_from_mi(0.0, prior) == prior
    assert attack_bound_from_mi(-math.log(prior), prior) == 1.0
    for mi in (1e-4, 0.05, 0.5, 2.0):
        p = attack_bound_from_mi(mi, prior)
        assert prior < p < 1.0
        assert kl(p, prior) == pytest.approx(mi, rel=1e-9)
    assert mi_from_attack_bound(1.0, prior) == pytest.approx(-math.log(prior), rel=1e-15)
    assert mi_from_attack_bound(prior, prior) == 0.0


def test_mi_from_attack_bound_matches_direct_kl() -> None:
    for p in (0.5 + 1e-3, 0.6, 0.73, 0.95, 0.999999):
        assert mi_from_attack_bound(p) == pytest.approx(kl(p, 0.5), rel=1e-11)


def test_dp_attack_bound() -> None:
    assert attack_bound_from_dp(0.0) == 0.5
    assert attack_bound_from_dp(0.0, 0.2) == pytest.approx(0.6, rel=1e-15)
    eps, delta = 1.0, 1e-5
    assert attack_bound_from_dp(eps, delta) == pytest.approx((math.e + delta) / (1 + math.e), rel=1e-15)
    assert attack_bound_from_dp(1e4) == 1.0
    assert attack_bound_from_dp(math.inf) == 1.0
    assert attack_bound_from_dp(50.0, 1.0) == 1.0


def test_epsilon_from_attack_bound() -> None:
    assert epsilon_from_attack_bound(0.5) == 0.0
    assert epsilon_from_attack_bound(1.0) == math.inf
    rng = np.random.default_rng(5)
    for _ in range(30):
        eps = float(rng.uniform(0.0, 15.0))
        delta = float(rng.choice([0.0, 1e-6, 1e-3]))
        assert epsilon_from_attack_bound(attack_bound_from_dp(eps, delta), delta) == pytest.approx(
            eps, rel=1e-9, abs=1e-12
        )
    # below the ε = 0 bound (1 + δ)/2 every (ε, δ) is weaker: the matching ε is 0
    assert epsilon_from_attack_bound(0.5 + 1e-6, 0.01) == 0.0


@pytest.mark.parametrize(("mi", "eps", "tol"), [(0.33, 2.0, 0.05), (0.68, 6.3, 0.1)])
def test_epsilon_matching_vectors(mi: float, eps: float, tol: float) -> None:
    assert epsilon_matching_mi(mi) == pytest.approx(eps, abs=tol)


@pytest.mark.parametrize(("eps", "mi", "tol"), [(1.0, 0.111, 0.001), (0.5, 0.0303, 0.0002)])
def test_mi_matching_vectors(eps: float, mi: float, tol: float) -> None:
    assert mi_matching_epsilon(eps) == pytest.approx(mi, abs=tol)


def test_matching_round_trips() -> None:
    for eps in np.geomspace(0.01, 10.0, 25):
        assert epsilon_matching_mi(mi_matching_epsilon(float(eps))) == pytest.approx(eps, rel=1e-9)
    for mi in np.geomspace(1e-4, 0.69, 25):
        assert mi_matching_epsilon(epsilon_matching_mi(float(mi))) == pytest.approx(mi, rel=1e-9)
    assert epsilon_matching_mi(0.0) == 0.0
    assert epsilon_matching_mi(1.0) == math.inf
    assert mi_matching_epsilon(0.0) == 0.0


# --------------------------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize(
    "call",
    [
        lambda: binary_entropy(-0.1),
        lambda: binary_entropy(1.5),
        lambda: binary_entropy(math.nan),
        lambda: binary_gaussian_mi(1.2, 1.0),
        lambda: binary_gaussian_mi(math.nan, 1.0),
        lambda: binary_gaussian_mi(0.5, -1.0),
        lambda: binary_gaussian_mi(0.5, math.nan),
        lambda: binary_gaussian_sigma(0.5, 0.0),
        lambda: binary_gaussian_sigma(0.5, -1e-3),
        lambda: binary_gaussian_sigma(0.5, math.nan),
        lambda: binary_gaussian_sigma(0.0, 0.1),
        lambda: binary_gaussian_sigma(1.0, 0.1),
        lambda: binary_gaussian_sigma(0.5, 0.1, rel_tol=0.0),
        lambda: binary_gaussian_sigma(0.5, 0.1, rel_tol=1.0),
        lambda: gaussian_sigma_bound(0.5, 0.0),
        lambda: gaussian_sigma_bound(-0.5, 0.1),
        lambda: bsc_mi(0.5, 1.1),
        lambda: attack_bound_from_mi(-1e-3),
        lambda: attack_bound_from_mi(math.nan),
        lambda: attack_bound_from_mi(0.1, prior=0.0),
        lambda: attack_bound_from_mi(0.1, prior=1.0),
        lambda: mi_from_attack_bound(1.1),
        lambda: attack_bound_from_dp(-1.0),
        lambda: attack_bound_from_dp(1.0, delta=1.5),
        lambda: attack_bound_from_dp(math.nan),
        lambda: epsilon_from_attack_bound(0.4),
        lambda: epsilon_from_attack_bound(0.6, delta=0.7),
        lambda: epsilon_from_attack_bound(1.2),
        lambda: epsilon_matching_mi(-0.5),
        lambda: mi_matching_epsilon(math.nan),
    ],
)
def test_invalid_inputs_raise(call) -> None:
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("beta_factor", [1.0, 1.5])
def test_sigma_rejects_budget_at_or_above_entropy(beta_factor: float) -> None:
    with pytest.raises(ValueError, match="nothing to calibrate"):
        binary_gaussian_sigma(0.9, beta_factor * binary_entropy(0.9))
