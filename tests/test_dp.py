"""DP baselines: calibration, accounting, Poisson sampling, clipping/sensitivity, matching, and training."""

import functools
import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from dp_accounting.privacy_accountant import NeighboringRelation

from paczero.channel import (
    attack_bound_from_dp,
    attack_bound_from_mi,
    epsilon_matching_mi,
    mi_matching_epsilon,
)
from paczero.config import ConfigError
from paczero.mechanisms import get_mechanism
from paczero.mechanisms.clipping import clip_rows
from paczero.privacy import dp as accountants
from paczero.privacy.dp import (
    DpLedger,
    DpPlan,
    calibrate_multiplier,
    epsilon_curve,
    epsilon_spent,
    poisson_sample,
)
from paczero.privacy.ledger import BudgetExhausted
from paczero.trainer import Trainer

DP_TINY = ("privacy.sampling_rate=0.25", "train.clip=1.0", "train.schedule=constant", "train.eval_every=0")


@functools.cache  # calibration takes ~1 s; plans are immutable
def plan(epsilon=1.0, steps=5, rate=0.25, clip=1.0, pool=128, noise="gaussian", accountant=None):
    return DpPlan.build(epsilon, 1e-5, steps, rate, clip, pool, noise, accountant)


def mechanism(name, seed=0):
    return get_mechanism(name)(None, np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------------------
# calibration and accounting


@pytest.mark.parametrize(
    "epsilon, steps, rate, accountant",
    [
        (0.2, 20_000, 0.064, "rdp"),  # the paper's DPZero cell
        (6.0, 1000, 0.064, "rdp"),  # the paper's DP-AggZO cell
        (1.0, 200, 0.25, "rdp"),
        (1.0, 50, 0.1, "pld"),
    ],
)
def test_calibrated_multiplier_is_tight_and_never_over_the_target(epsilon, steps, rate, accountant):
    sigma = calibrate_multiplier(epsilon, 1e-5, steps, rate, "gaussian", accountant)
    assert epsilon_spent("gaussian", sigma, rate, steps, 1e-5, accountant) <= epsilon
    assert epsilon_spent("gaussian", 0.99 * sigma, rate, steps, 1e-5, accountant) > epsilon


def test_pure_laplace_calibration_is_tight_and_bounded_by_pld():
    eps, steps, rate = 1.0, 40, 0.2
    m = calibrate_multiplier(eps, 0.0, steps, rate, "laplace", "pure")
    assert epsilon_spent("laplace", m, rate, steps, 0.0, "pure") <= eps
    assert epsilon_spent("laplace", 0.99 * m, rate, steps, 0.0, "pure") > eps
    # PLD's (ε, δ) at a tiny δ cannot exceed the pure-ε composition of the same steps
    assert epsilon_spent("laplace", m, rate, steps, 1e-12, "pld") <= eps * (1 + 1e-3)


def test_per_step_epsilon_curve_equals_the_library_composition():
    """The fast per-step pricing (T × one step's RDP) must equal dp-accounting's own T-fold composition."""
    curve = epsilon_curve("gaussian", 3.0, 0.064, 1e-5, "rdp")
    for t in (1, 7, 100, 1000):
        assert curve(t) == pytest.approx(epsilon_spent("gaussian", 3.0, 0.064, t, 1e-5, "rdp"), rel=1e-12)
    assert curve(0) == 0.0


@pytest.mark.skipif(importlib.util.find_spec("opacus") is None, reason="opacus not installed (optional)")
def test_rdp_accountant_agrees_with_opacus():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(2.0, 0.064, 1000)]
    ours = epsilon_spent("gaussian", 2.0, 0.064, 1000, 1e-5, "rdp")
    assert acc.get_epsilon(1e-5) == pytest.approx(ours, rel=0.05)


@pytest.mark.skipif(importlib.util.find_spec("prv_accountant") is None, reason="prv-accountant not installed")
def test_pld_accountant_agrees_with_prv_accountant():
    from prv_accountant import Accountant

    acc = Accountant(
        noise_multiplier=2.0, sampling_probability=0.064, delta=1e-5, eps_error=0.01, max_steps=1000
    )
    _, _, upper = acc.compute_epsilon(num_steps=1000)
    assert epsilon_spent("gaussian", 2.0, 0.064, 1000, 1e-5, "pld") == pytest.approx(upper, rel=0.05)


def test_ledger_reports_epsilon_per_step_and_refuses_past_the_target():
    p = plan(epsilon=1.0, steps=5)
    ledger = DpLedger(p)
    mech = mechanism("dpzero")
    spent = []
    for _ in range(5):
        release = mech.release_joint(np.zeros((3, 1)), ledger)
        ledger.charge(release)
        spent.append(ledger.epsilon_spent)
    assert spent == sorted(spent) and 0 < spent[0] < spent[-1] <= 1.0
    assert spent[-1] > 0.99  # the calibration spends the target, it does not waste it
    assert ledger.exhausted
    with pytest.raises(BudgetExhausted):
        ledger.charge(mech.release_joint(np.zeros((3, 1)), ledger))
    with pytest.raises(RuntimeError, match="already charged"):
        ledger.charge(release)
    restored = DpLedger(p)
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert restored.epsilon_spent == ledger.epsilon_spent
    with pytest.raises(ValueError, match="planned"):
        DpLedger(plan(epsilon=2.0, steps=5)).load_state_dict(ledger.state_dict())


def test_summary_carries_epsilon_delta_attack_bound_and_matched_mi():
    ledger = DpLedger(plan(epsilon=2.0, steps=3))
    for _ in range(3):
        ledger.charge(mechanism("dpzero").release_joint(np.zeros((0, 1)), ledger))
    s = ledger.summary("dp")
    assert s.epsilon_spent <= 2.0 and s.delta == 1e-5
    assert s.attack_bound == attack_bound_from_dp(s.epsilon_spent, 1e-5)
    assert attack_bound_from_mi(s.matched_mi) == pytest.approx(s.attack_bound, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------
# sampling, clipping, sensitivity, noise


def test_poisson_batch_sizes_have_binomial_mean_and_variance():
    rng, n, q = np.random.default_rng(0), 200, 0.064
    sizes = np.array([poisson_sample(rng, n, q).size for _ in range(20_000)])
    assert sizes.mean() == pytest.approx(n * q, abs=4 * math.sqrt(n * q * (1 - q) / sizes.size))
    assert sizes.var() == pytest.approx(n * q * (1 - q), rel=0.05)
    rows = poisson_sample(np.random.default_rng(1), n, 0.5)
    assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < n


def test_per_example_contribution_is_clipped_to_c():
    v = np.random.default_rng(0).normal(0, 10, size=(500, 8))
    v[0] = 0.0  # a zero row must stay zero, without a division warning
    clipped, fraction = clip_rows(v, 2.5)
    norms = np.linalg.norm(clipped, axis=1)
    assert norms.max() <= 2.5 * (1 + 1e-12) and 0.9 < fraction < 1.0
    small = np.linalg.norm(v, axis=1) <= 2.5
    np.testing.assert_array_equal(clipped[small], v[small])  # rows inside the ball are untouched


@pytest.mark.parametrize("name, k", [("dpzero", 1), ("dp-aggzo", 8), ("dp-zo", 1)])
def test_sensitivity_matches_the_add_remove_relation_of_the_accountant(name, k):
    """Adding one (adversarial) example moves the released sum by at most plan.sensitivity = C, the L2
    sensitivity the accountant's ADD_OR_REMOVE_ONE relation prices; replacing one can move it by ~2C."""
    assert accountants.NEIGHBOURING == NeighboringRelation.ADD_OR_REMOVE_ONE
    assert accountants._accountant("rdp").neighboring_relation == NeighboringRelation.ADD_OR_REMOVE_ONE
    p = plan(clip=0.7)
    ledger = DpLedger(p)
    rng = np.random.default_rng(3)
    batch = rng.normal(0, 5, size=(20, k))
    worst = np.full((1, k), 1e6)

    def released_sum(g):  # same privacy seed, so the noise cancels in differences
        return mechanism(name, seed=11).release_joint(g, ledger).values * p.expected_batch

    added = np.linalg.norm(released_sum(np.vstack([batch, worst])) - released_sum(batch))
    assert added <= p.sensitivity * (1 + 1e-9) and added >= 0.99 * p.sensitivity
    replaced = np.vstack([batch[1:], worst])
    batch[0] = -worst[0]
    assert np.linalg.norm(released_sum(replaced) - released_sum(batch)) > 1.9 * p.sensitivity


def test_dp_aggzo_divides_each_example_vector_by_k_before_clipping():
    g = np.random.default_rng(0).normal(0, 1e-3, size=(10, 4))  # far inside the clip ball
    mech = mechanism("dp-aggzo")
    np.testing.assert_allclose(mech.contributions(g), g / 4)


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_noise_has_the_stated_scale(noise):
    p = plan(noise=noise, accountant=None, steps=20)
    mech, ledger = get_mechanism("dp-zo")(None, np.random.default_rng(0)), DpLedger(p)
    draws = np.array([mech.release_joint(np.zeros((0, 1)), ledger).values[0] for _ in range(4000)])
    std = p.noise_scale * (math.sqrt(2) if noise == "laplace" else 1.0)
    assert draws.std() == pytest.approx(std, rel=0.05)
    assert abs(draws.mean()) < 4 * std / math.sqrt(draws.size)


def test_joint_mechanisms_refuse_the_per_direction_interface():
    with pytest.raises(TypeError, match="release_step"):
        mechanism("dpzero").release(None, None)


# ---------------------------------------------------------------------------------------------------------
# matching and config


def test_mi_epsilon_matching_round_trips_at_the_paper_values():
    assert epsilon_matching_mi(0.33) == pytest.approx(2.0, abs=0.02)
    assert epsilon_matching_mi(0.68) == pytest.approx(6.3, abs=0.1)
    assert mi_matching_epsilon(2.0) == pytest.approx(0.33, abs=0.005)
    assert mi_matching_epsilon(6.3) == pytest.approx(0.68, abs=0.01)
    for mi in (1e-3, 0.0303, 0.111, 0.33, 0.68):
        assert mi_matching_epsilon(epsilon_matching_mi(mi)) == pytest.approx(mi, rel=1e-9)
        assert epsilon_matching_mi(mi, 1e-12) == pytest.approx(epsilon_matching_mi(mi), rel=1e-6)  # δ → 0


def test_match_keys_resolve_epsilon_and_budget(make_config):
    dp = make_config("privacy.mechanism=dp-aggzo", "privacy.match_mi=0.33", *DP_TINY)
    assert dp.privacy.epsilon == pytest.approx(epsilon_matching_mi(0.33, 1e-5), rel=1e-12)
    assert attack_bound_from_dp(dp.privacy.epsilon, 1e-5) == pytest.approx(attack_bound_from_mi(0.33))
    pac = make_config("privacy.mechanism=paczero-mi", "privacy.match_epsilon=2.0")
    assert pac.privacy.budget == pytest.approx(mi_matching_epsilon(2.0, 1e-5), rel=1e-12)
    again = make_config("privacy.mechanism=dp-aggzo", "privacy.match_mi=0.33", *DP_TINY)
    again_tree = again.to_dict()
    assert again_tree["privacy"]["epsilon"] == dp.privacy.epsilon  # config.yaml reloads consistently


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("privacy.mechanism=dpzero", "train.clip=1.0"), "sampling_rate"),
        (("privacy.mechanism=dpzero", "privacy.epsilon=1", "privacy.sampling_rate=0.1"), "train.clip"),
        (("privacy.mechanism=dpzero", "privacy.epsilon=1", "train.directions=4", *DP_TINY), "dp-aggzo"),
        (("privacy.mechanism=dpzero", "privacy.epsilon=1", "privacy.noise=laplace", *DP_TINY), "laplace"),
        (
            (
                "privacy.mechanism=dp-zo",
                "privacy.epsilon=1",
                "privacy.accountant=rdp",
                "privacy.noise=laplace",
                *DP_TINY,
            ),
            "pure or pld",
        ),
        (("privacy.mechanism=dpzero", *DP_TINY), "privacy.epsilon"),
        (("privacy.mechanism=dpzero", "privacy.epsilon=1", "privacy.match_mi=0.33", *DP_TINY), "disagrees"),
        (("privacy.mechanism=paczero-zpl", "privacy.match_epsilon=1"), "I = 0"),
        (("privacy.mechanism=paczero-mi", "privacy.budget=0.1", "privacy.match_epsilon=2"), "disagrees"),
        (("privacy.mechanism=paczero-mi", "privacy.budget=0.1", "privacy.epsilon=2"), "DP mechanisms only"),
    ],
)
def test_bad_dp_configs_are_rejected_with_a_clear_error(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(*overrides)


# ---------------------------------------------------------------------------------------------------------
# training


def dp_trainer(make_config, *overrides, output_dir=None):
    return Trainer(
        make_config("privacy.mechanism=dpzero", "privacy.epsilon=2", *DP_TINY, *overrides), output_dir
    )


def test_dp_run_logs_epsilon_per_step_and_no_private_diagnostics(make_config, tmp_path):
    trainer = dp_trainer(make_config, "train.steps=6", output_dir=tmp_path / "run")
    summary = trainer.run()
    lines = [json.loads(x) for x in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    eps = [r["epsilon_spent"] for r in lines]
    assert len(eps) == 6 and eps == sorted(eps) and eps[-1] <= 2.0
    assert all(r["loss"] is None and r["clip_fraction"] is None and r["nonfinite"] is None for r in lines)
    p = summary["privacy"]
    assert p["guarantee"] == "dp" and p["epsilon_spent"] == eps[-1] and p["delta"] == 1e-5
    assert p["attack_bound"] == pytest.approx(attack_bound_from_dp(eps[-1], 1e-5))
    assert p["matched_mi"] == pytest.approx(mi_matching_epsilon(eps[-1], 1e-5))
    assert "ε" in (tmp_path / "run" / "privacy.md").read_text()


def test_empty_poisson_batches_release_pure_noise_and_the_update_matches(make_config):
    trainer = dp_trainer(  # no dev set: best-dev selection must not swap the final weights
        make_config, "train.steps=3", "privacy.sampling_rate=1e-4", "train.lr=1e-2", "task.dev_size=0"
    )
    calls = []
    original = trainer.objective.losses
    trainer.objective.losses = lambda *a: calls.append(1) or original(*a)
    theta0 = [p.detach().double().clone() for _, p in trainer.loaded.trainable]
    trainer.run()
    assert not calls  # no forward pass over an empty batch
    expected = [t.clone() for t in theta0]
    for r in trainer.records:
        assert np.isfinite(r.released).all() and r.released[0] != 0.0
        for seed, value in zip(r.seeds, r.update):
            for e, z in zip(expected, trainer.directions.materialise(seed)):
                e -= r.lr * value * z.double()
    for (_, p), e in zip(trainer.loaded.trainable, expected):
        assert torch.allclose(p.double(), e, atol=1e-6)


def test_poisson_batches_come_from_their_own_stream_not_the_noise_or_the_secret(make_config):
    def rows(*extra):
        trainer = dp_trainer(make_config, "train.steps=3", *extra)
        return [trainer.step_batch()[0] for _ in range(4)]

    base = rows()
    assert all(np.array_equal(a, b) for a, b in zip(base, rows("privacy.secret_index=5", "train.seed=3")))
    assert not all(np.array_equal(a, b) for a, b in zip(base, rows("privacy.seed=9")))
    sizes = [len(r) for r in base]
    assert len(set(sizes)) > 1  # Poisson, not a fixed-size batch


def test_dp_transcript_does_not_depend_on_the_secret_index(make_config):
    released = []
    for j in (1, 9):
        trainer = dp_trainer(make_config, "train.steps=4", f"privacy.secret_index={j}")
        trainer.run()
        released.append([r.released for r in trainer.records])
    assert released[0] == released[1]
