"""Release rules: a conformance suite over the registry, ZPL independence, MI accounting and the posterior."""

import functools
import inspect

import numpy as np
import pytest
from scipy import stats

from paczero.channel import binary_entropy, binary_gaussian_mi
from paczero.mechanisms import MECHANISMS, StepInput, get_mechanism
from paczero.privacy.dp import DpLedger, DpPlan
from paczero.privacy.ledger import BudgetExhausted
from paczero.privacy.pac import PacLedger
from paczero.subsets import Secret, build_subsets

M, N = 8, 64


def step_input(rng, subsets, shift=0.0, scale=1.0):
    return StepInput.from_estimates(rng.normal(shift, scale, size=subsets.n), subsets)


def make(name, secret_index=0, seed=0, m=M):
    return get_mechanism(name)(Secret(secret_index, m), np.random.default_rng(seed))


def ledger_for(name, releases=100):
    if MECHANISMS[name].guarantee.is_dp:
        return DpLedger(dp_plan(releases))
    return PacLedger(M, releases, budget=0.5 if name == "paczero-mi" else None)


@functools.cache
def dp_plan(steps):
    return DpPlan.build(1.0, 1e-5, steps, 0.25, 1.0, N, "gaussian")


def joint_releases(name, rng, mech, ledger, steps, k=3):
    """Charge ``steps`` joint (DP) releases of Poisson-sized batches (some empty); returns the values."""
    k = 1 if MECHANISMS[name].max_directions == 1 else k
    out = []
    for _ in range(steps):
        g = rng.normal(0.05, 1.0, size=(rng.binomial(4, 0.25), k))
        release = mech.release_joint(g, ledger)
        ledger.charge(release)
        out.append(list(release.values))
    return out


@pytest.mark.parametrize("name", sorted(n for n, c in MECHANISMS.items() if c.guarantee.is_dp))
def test_conformance_every_joint_mechanism(name):
    """Joint (DP) mechanisms: K finite values per step, a public noise scale, ε within the target, no
    double charge, and the per-direction interface refused."""
    cls = MECHANISMS[name]
    assert cls.guarantee == "dp" and not cls.reads_secret
    assert len(inspect.getdoc(cls) or "") > 40, "the docstring must state what it reads, releases and costs"
    ledger, mech = ledger_for(name, 30), make(name)
    values = joint_releases(name, np.random.default_rng(1), mech, ledger, 30)
    assert np.isfinite(values).all() and len({len(v) for v in values}) == 1
    assert 0 < ledger.epsilon_spent <= ledger.plan.epsilon and ledger.exhausted
    release = mech.release_joint(np.zeros((2, len(values[0]))), ledger)
    assert release.noise_scale == pytest.approx(ledger.plan.noise_scale) and release.noise_scale > 0
    with pytest.raises(BudgetExhausted):
        ledger.charge(release)
    with pytest.raises(TypeError):
        subsets = build_subsets(N, M, np.random.default_rng(0))
        mech.release(step_input(np.random.default_rng(0), subsets), ledger)


@pytest.mark.parametrize("name", sorted(n for n, c in MECHANISMS.items() if not c.guarantee.is_dp))
def test_conformance_every_registered_mechanism(name):
    cls = MECHANISMS[name]
    assert cls.guarantee in ("none", "zero-mi", "mi-budget", "unbounded-leak")
    assert len(inspect.getdoc(cls) or "") > 40, "the docstring must state what it reads, releases and costs"
    subsets = build_subsets(N, M, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    ledger = ledger_for(name)
    mech = make(name)
    for _ in range(30):
        step = step_input(rng, subsets, shift=0.05)
        release = mech.release(step, ledger)
        ledger.charge(release)
        assert np.isfinite(release.value) and np.isfinite(release.observed)
        assert release.kind in ("unanimous", "coin", "noisy", "exact", "public")
        assert release.cost is None or release.cost >= 0
        if cls.guarantee in ("zero-mi", "mi-budget"):
            assert release.cost is not None
        if cls.guarantee == "zero-mi":
            assert release.cost == 0 and release.log_likelihood is None
    if cls.reads_secret:
        with pytest.raises(ValueError):
            cls(None, np.random.default_rng(0))


@pytest.mark.parametrize("name", sorted(n for n, c in MECHANISMS.items() if not c.reads_secret))
def test_mechanisms_that_do_not_read_the_secret_release_the_same_for_every_secret(name):
    subsets = build_subsets(N, M, np.random.default_rng(0))
    transcripts = []
    for j in (0, 3, 7):
        rng, mech, ledger = np.random.default_rng(5), make(name, secret_index=j), ledger_for(name)
        if MECHANISMS[name].guarantee.is_dp:
            transcripts.append(joint_releases(name, rng, mech, ledger, 40))
            continue
        out = []
        for _ in range(40):
            r = mech.release(step_input(rng, subsets, 0.02), ledger)
            ledger.charge(r)
            out.append(r.observed)
        transcripts.append(out)
    assert transcripts[0] == transcripts[1] == transcripts[2]


def test_zpl_releases_the_common_sign_when_unanimous_and_a_coin_otherwise():
    subsets = build_subsets(N, M, np.random.default_rng(0))
    mech, ledger = make("paczero-zpl"), ledger_for("paczero-zpl")
    pos = StepInput.from_estimates(np.full(N, 0.5), subsets)
    neg = StepInput.from_estimates(np.full(N, -0.5), subsets)
    assert pos.unanimous and mech.release(pos, ledger).value == 1.0
    assert mech.release(neg, ledger).value == -1.0
    split = StepInput.from_estimates(np.random.default_rng(3).normal(size=N), subsets)
    assert not split.unanimous
    coins = [mech.release(split, ledger) for _ in range(400)]
    assert {c.kind for c in coins} == {"coin"}
    assert 150 < sum(c.value > 0 for c in coins) < 250


def released_vs_secret_sign_table(name):
    """2×2 counts of (released sign, secret subset's sign) over disagreement steps."""
    subsets = build_subsets(N, M, np.random.default_rng(0))
    rng, table = np.random.default_rng(9), np.zeros((2, 2))
    mech, ledger = make(name, secret_index=2), ledger_for(name, 10_000)
    while table.sum() < 1500:
        step = step_input(rng, subsets)
        if step.unanimous:
            continue
        r = mech.release(step, ledger)
        table[int(r.value > 0), int(step.signs[2] > 0)] += 1
    return table


def test_zpl_released_sign_is_independent_of_the_secret_sign_chi_square():
    assert stats.chi2_contingency(released_vs_secret_sign_table("paczero-zpl")).pvalue > 1e-3


def test_chi_square_independence_test_catches_a_leaky_mechanism():
    assert stats.chi2_contingency(released_vs_secret_sign_table("quant_half")).pvalue < 1e-6


def brute_force_posterior(observations, sigmas, signs_seq, m):
    """P(J = k | Y_1..t) by multiplying the likelihoods (Gaussian, or exact match); uniform prior."""
    like = np.ones(m)
    for y, sigma, signs in zip(observations, sigmas, signs_seq):
        like *= (signs == y) if sigma is None else np.exp(-((y - signs) ** 2) / (2 * sigma**2))
    return like / like.sum()


def test_mi_posterior_matches_brute_force_bayes_on_small_m():
    m, n = 4, 40
    subsets = build_subsets(n, m, np.random.default_rng(0))
    mech = get_mechanism("paczero-mi")(Secret(1, m), np.random.default_rng(4))
    ledger = PacLedger(m, 30, budget=2.0)
    rng = np.random.default_rng(6)
    ys, sigmas, signs = [], [], []
    for _ in range(30):
        step = StepInput.from_estimates(rng.normal(size=n), subsets)
        r = mech.release(step, ledger)
        ledger.charge(r)
        if r.kind in ("noisy", "exact"):
            ys.append(r.observed)
            sigmas.append(r.sigma)
            signs.append(step.signs)
    assert len(ys) > 10
    np.testing.assert_allclose(
        ledger.posterior(), brute_force_posterior(ys, sigmas, signs, m), rtol=1e-9, atol=1e-15
    )
    assert ledger.posterior()[1] > 0.25  # the posterior has learned something about J = 1


def test_mi_charges_the_exact_leakage_at_the_sigma_used_and_never_exceeds_the_budget():
    subsets = build_subsets(N, M, np.random.default_rng(0))
    for seed in range(5):
        budget, steps = 0.33, 25
        mech, ledger = make("paczero-mi", secret_index=seed, seed=seed), PacLedger(M, steps, budget)
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            p = ledger.posterior()
            step = step_input(rng, subsets, 0.1)
            q = float(p[step.signs > 0].sum())
            allowance = ledger.next_budget()
            r = mech.release(step, ledger)
            ledger.charge(r)
            if r.kind == "noisy":
                assert r.cost == pytest.approx(binary_gaussian_mi(q, r.sigma), rel=1e-12)
                assert r.cost <= min(allowance, 0.999 * binary_entropy(q)) * (1 + 1e-12)
                assert r.cost >= min(allowance, 0.999 * binary_entropy(q)) * (1 - 1e-3)
            assert ledger.spent <= budget
        assert ledger.spent >= 0.5 * budget  # adaptive: only budget saved by free steps stays unspent


def test_mi_realised_information_stays_within_budget_over_many_runs():
    m, n, steps, budget = 8, 32, 12, 0.3
    subsets = build_subsets(n, m, np.random.default_rng(0))
    realised = []
    for run in range(240):
        rng = np.random.default_rng(1000 + run)
        j = int(rng.integers(m))
        mech = get_mechanism("paczero-mi")(Secret(j, m), np.random.default_rng(run))
        ledger = PacLedger(m, steps, budget)
        for _ in range(steps):
            r = mech.release(StepInput.from_estimates(rng.normal(size=n), subsets), ledger)
            ledger.charge(r)
        realised.append(np.log(m * ledger.posterior()[j]))
    mean, se = np.mean(realised), np.std(realised) / np.sqrt(len(realised))
    assert mean <= budget + 3 * se
    assert mean > 0.02  # the attacker does learn something: the test could see a leak


def test_mi_with_q_plus_zero_or_one_is_free_and_uninformative():
    subsets = build_subsets(N, M, np.random.default_rng(0))
    mech, ledger = make("paczero-mi"), PacLedger(M, 10, 0.1)
    r = mech.release(StepInput.from_estimates(np.full(N, 1.0), subsets), ledger)
    assert (r.kind, r.cost, r.value, r.log_likelihood) == ("unanimous", 0.0, 1.0, None)


def test_mi_near_unanimous_release_is_exact_and_charged_its_entropy():
    m = 4
    subsets = build_subsets(N, m, np.random.default_rng(0))
    ledger = PacLedger(m, 10, 1.0)
    ledger.log_post = np.log(np.array([1 - 3e-14, 1e-14, 1e-14, 1e-14]))
    mech = get_mechanism("paczero-mi")(Secret(0, m), np.random.default_rng(0))
    g = np.random.default_rng(1).normal(size=N)
    step = StepInput.from_estimates(g, subsets)
    while step.unanimous or len(set(step.signs[1:])) != 1 or step.signs[0] == step.signs[1]:
        g = np.random.default_rng(int(abs(g[0]) * 1e6)).normal(size=N)
        step = StepInput.from_estimates(g, subsets)
    r = mech.release(step, ledger)
    q = float(ledger.posterior()[step.signs > 0].sum())
    assert r.kind == "exact" and r.value == step.signs[0]
    assert r.cost == pytest.approx(binary_entropy(q))


def test_uniform_schedule_and_exhaustion():
    ledger = PacLedger(M, 4, budget=0.4, schedule="uniform")
    assert ledger.next_budget() == pytest.approx(0.1)
    ledger.spent = 0.4
    assert ledger.exhausted
    subsets = build_subsets(N, M, np.random.default_rng(0))
    rng = np.random.default_rng(3)
    step = step_input(rng, subsets)
    while step.unanimous:
        step = step_input(rng, subsets)
    with pytest.raises(BudgetExhausted):
        make("paczero-mi").release(step, ledger)


def test_a_release_cannot_be_charged_twice():
    subsets = build_subsets(N, M, np.random.default_rng(0))
    ledger = ledger_for("paczero-zpl")
    r = make("paczero-zpl").release(step_input(np.random.default_rng(0), subsets), ledger)
    ledger.charge(r)
    with pytest.raises(RuntimeError, match="already charged"):
        ledger.charge(r)


def test_leaky_ablation_makes_the_ledger_unbounded():
    subsets = build_subsets(N, M, np.random.default_rng(0))
    ledger = ledger_for("quant_half")
    ledger.charge(make("quant_half").release(step_input(np.random.default_rng(0), subsets), ledger))
    assert ledger.unbounded
    summary = ledger.summary("unbounded-leak")
    assert summary.mi_spent is None and summary.attack_bound is None


def test_unknown_mechanism_lists_the_known_ones():
    with pytest.raises(ValueError, match="paczero-zpl"):
        get_mechanism("nope")
