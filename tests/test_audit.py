"""Audits: membership inference on real tiny runs (positive and negative controls); the transcript audit.

Membership means membership in the secret subset S* (prior 1/2). Only memorisation separates S* from the rest
of the pool, so the positive control trains on S* alone (``quant_half``) on a pool whose labels are random,
where fitting an example means memorising it; the same setup under ZPL must show nothing.
"""

import json

import numpy as np
import pytest

from paczero import trainer as trainer_mod
from paczero.audit import (
    attack_metrics,
    clopper_pearson,
    membership_audit,
    transcript_audit,
)
from paczero.audit import mia as audit_mod
from paczero.audit.mia import write_membership_audit
from paczero.models.tiny import _TINY_WORDS
from paczero.tasks.data import Example, Splits
from paczero.trainer import Trainer

WORDS = [w for w in _TINY_WORDS.split() if w.isalpha()]
MEMORISE = (
    "task.pool_size=80",
    "task.dev_size=0",
    "task.test_size=0",
    "train.steps=400",
    "train.lr=3.0e-2",
    "train.schedule=constant",
    "train.eval_every=0",
    "train.micro_batch_size=80",
    "privacy.secret_index=5",
)


def random_label_splits(cfg):
    """Distinct random-word sentences with random labels: the only way to fit them is to memorise them."""
    rng = np.random.Generator(np.random.PCG64(cfg.data_seed))
    pool = [
        Example({"sentence": " ".join(rng.choice(WORDS, 5, replace=False))}, int(rng.integers(2)))
        for _ in range(cfg.pool_size)
    ]
    return Splits(pool=pool, dev=[], test=[])


@pytest.fixture
def memorisation_task(monkeypatch):
    for module in (trainer_mod, audit_mod):
        monkeypatch.setattr(module, "load_splits", random_label_splits)


def train(make_config, out, *overrides):
    return Trainer(make_config(*overrides), out).run()


def by_name(result):
    return {a.attack: a for a in result.attacks}


def test_clopper_pearson_exact_values():
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    lo, hi = clopper_pearson(50, 100)
    assert lo == pytest.approx(0.3983, abs=1e-4) and hi == pytest.approx(0.6017, abs=1e-4)
    assert clopper_pearson(7, 7)[1] == 1.0


def test_attack_metrics_separate_perfect_random_and_tied_scores():
    rng = np.random.Generator(np.random.PCG64(0))
    members = np.arange(400) % 2 == 0
    perfect = attack_metrics("perfect", members.astype(float), members, rng)
    assert perfect.accuracy == 1.0 and perfect.auc == 1.0 and perfect.tpr_at_01pct_fpr == 1.0
    assert perfect.p_value < 1e-50
    noise = attack_metrics("noise", rng.standard_normal(400), members, rng)
    assert noise.accuracy_ci[0] < 0.5 < noise.accuracy_ci[1] and abs(noise.auc - 0.5) < 0.1
    tied = attack_metrics("tied", np.full(400, 0.5), members, rng)
    assert tied.auc == 0.5 and tied.tpr_at_1pct_fpr == 0.0  # a constant score can pass no threshold
    assert tied.accuracy_ci[0] < 0.5 < tied.accuracy_ci[1]
    with pytest.raises(ValueError, match="both members and non-members"):
        attack_metrics("one class", np.zeros(4), np.ones(4, bool), rng)


def test_loss_attack_detects_secret_subset_training_and_transcript_attack_recovers_it(
    memorisation_task, make_config, tmp_path
):
    out = tmp_path / "leaky"
    train(make_config, out, "privacy.mechanism=quant_half", *MEMORISE)
    result = membership_audit(out)
    attacks = by_name(result)
    assert result.bound is None  # quant_half has no guarantee
    for name in ("loss", "loss − base loss"):
        assert attacks[name].significant(0.01) and attacks[name].accuracy_ci[0] > 0.5, attacks[name]
        assert attacks[name].auc > 0.65
    transcript = attacks["transcript posterior"]
    assert transcript.accuracy > 0.9 and not result.posterior["uniform"]
    written = write_membership_audit(result, out)
    text = (written / "mia.json").read_text() + (written / "mia.md").read_text()
    assert "secret_index" not in text and "members_vector" not in text
    assert json.loads((written / "mia.json").read_text())["attacks"][0]["attack"] == "loss"


def test_zpl_on_the_same_setup_is_consistent_with_a_coin_and_its_posterior_stays_uniform(
    memorisation_task, make_config, tmp_path
):
    out = tmp_path / "zpl"
    train(make_config, out, "privacy.mechanism=paczero-zpl", *MEMORISE)
    result = membership_audit(out)
    assert result.bound == 0.5
    assert result.posterior["uniform"] and result.posterior["max"] == pytest.approx(1 / 16, rel=1e-12)
    for attack in result.attacks:
        assert not attack.significant(0.01), attack
        assert attack.accuracy_ci[0] <= result.bound <= attack.accuracy_ci[1], attack
    assert by_name(result)["transcript posterior"].auc == 0.5  # every example's posterior is exactly 1/2


def test_lira_shadows_and_a_tampered_transcript(make_config, tmp_path):
    out = tmp_path / "run"
    short = (
        "task.pool_size=32",
        "task.dev_size=0",
        "task.test_size=0",
        "train.steps=12",
        "train.eval_every=0",
    )
    train(make_config, out, "privacy.mechanism=quant_half", "train.lr=3.0e-2", *short)
    result = membership_audit(out, shadows=2, transcript=False)
    assert "LiRA (shadows)" in by_name(result) and len(result.attacks) == 3
    steps = out / "steps.jsonl"
    records = [json.loads(line) for line in steps.read_text().splitlines()]
    flipped = next(r for r in records if r["kinds"][0] == "exact")
    flipped["released"][0] *= -1.0  # a transcript the run did not publish
    steps.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(RuntimeError, match="diverged|no candidate"):
        membership_audit(out)


SHORT = ("train.steps=15", "train.eval_every=0", "train.lr=3.0e-2", "task.dev_size=0", "task.test_size=0")


def test_transcript_audit_passes_zpl_and_detects_the_negative_control(make_config):
    result = transcript_audit(make_config("privacy.mechanism=paczero-zpl", *SHORT))
    assert result.passed and result.identical_until_leak and result.identical_weights
    assert all(r.measured == 0.0 for r in result.runs)
    assert result.control_detected and not result.control.within_ledger
    assert not result.control.identical_weights
    assert result.control.runs[0].measured > 0.0


def test_transcript_audit_passes_mi_within_the_ledger(make_config):
    cfg = make_config("privacy.mechanism=paczero-mi", "privacy.budget=0.1", *SHORT)
    result = transcript_audit(cfg, control=False)
    assert result.passed and result.within_ledger
    assert all(0.0 < r.measured <= 0.1 * (1 + 1e-6) for r in result.runs)
    assert all(abs(r.measured - r.charged) <= 1e-6 * r.charged for r in result.runs)


def test_transcript_audit_fails_the_leaky_mechanism(make_config):
    result = transcript_audit(make_config("privacy.mechanism=quant_half", *SHORT), control=False)
    assert not result.passed and not result.within_ledger
    assert all(r.charged is None and r.measured > 0.0 for r in result.runs)


def test_the_membership_audit_scores_through_the_cached_trunk(make_config, tmp_path, monkeypatch):
    from paczero.models.trunk import TrunkCachedModel

    out = tmp_path / "run"
    train(make_config, out, "privacy.mechanism=paczero-zpl", "model.lora_layers=1", *SHORT)
    calls = []
    real = TrunkCachedModel.__call__
    monkeypatch.setattr(
        TrunkCachedModel, "__call__", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw)
    )
    result = membership_audit(out, shadows=1, transcript=False)
    assert len(result.attacks) == 3
    assert calls  # target, base and shadow losses all ran the top block on the cached trunk
