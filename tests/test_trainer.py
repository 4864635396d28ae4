"""End-to-end training on a tiny model: learning, secret independence, the budget, outputs."""

import json

import numpy as np
import pytest
import torch

from paczero.trainer import Trainer


def run(make_config, *overrides, output_dir=None):
    trainer = Trainer(make_config(*overrides), output_dir)
    summary = trainer.run()
    return trainer, summary


@pytest.mark.parametrize(
    "mechanism, lr", [("mezo", "3.0e-1"), ("paczero-zpl", "3.0e-2"), ("paczero-mi", "3.0e-2")]
)
def test_tiny_model_learns_the_separable_task(make_config, mechanism, lr):
    _, summary = run(
        make_config,
        f"privacy.mechanism={mechanism}",
        f"train.lr={lr}",
        "train.steps=150",
        "privacy.budget=0.33",
    )
    start, selected = summary["dev"]["start"]["accuracy"], summary["dev"]["selected"]["accuracy"]
    assert selected >= start + 0.15, (start, selected)
    assert summary["test"]["accuracy"] >= 0.75
    assert summary["steps_run"] == 150


def transcript_and_weights(make_config, mechanism, secret, track="lora"):
    trainer, summary = run(
        make_config,
        f"privacy.mechanism={mechanism}",
        f"privacy.secret_index={secret}",
        f"model.track={track}",
        "train.lr=3.0e-2" if track == "lora" else "train.lr=1.0e-3",
        "train.steps=25",
        "train.eval_every=10",
    )
    released = [(r.released, r.update, r.kinds) for r in trainer.records]
    weights = [p.detach().clone() for _, p in trainer.loaded.trainable]
    return released, weights, summary


@pytest.mark.parametrize("track", ["lora", "full"])
def test_zpl_transcript_and_weights_are_identical_for_different_secrets(make_config, track):
    r1, w1, s1 = transcript_and_weights(make_config, "paczero-zpl", 1, track)
    r2, w2, s2 = transcript_and_weights(make_config, "paczero-zpl", 9, track)
    assert r1 == r2
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert s1["dev"]["history"] == s2["dev"]["history"]
    kinds = [k for r in r1 for k in r[2]]
    assert "coin" in kinds and "unanimous" in kinds  # both branches of the release rule were exercised


def test_negative_control_quant_half_transcript_depends_on_the_secret(make_config):
    r1, w1, _ = transcript_and_weights(make_config, "quant_half", 1)
    r2, w2, _ = transcript_and_weights(make_config, "quant_half", 9)
    assert r1 != r2
    assert not all(torch.equal(a, b) for a, b in zip(w1, w2))


def test_public_direction_seeds_do_not_depend_on_mechanism_privacy_seed_or_secret(make_config):
    seeds = []
    for mech, pseed, secret in [
        ("mezo", 0, 0),
        ("paczero-zpl", 1, 3),
        ("paczero-mi", 2, 5),
        ("quant_half", 3, 7),
    ]:
        trainer, _ = run(
            make_config,
            f"privacy.mechanism={mech}",
            f"privacy.seed={pseed}",
            f"privacy.secret_index={secret}",
            "privacy.budget=0.1",
            "train.steps=5",
            "train.eval_every=0",
        )
        seeds.append([r.seeds for r in trainer.records])
    assert all(s == seeds[0] for s in seeds)


def test_mi_run_stays_within_budget_with_k_directions(make_config):
    trainer, summary = run(
        make_config,
        "privacy.mechanism=paczero-mi",
        "privacy.budget=0.05",
        "train.directions=3",
        "train.steps=12",
        "train.lr=3.0e-2",
        "train.eval_every=0",
    )
    p = summary["privacy"]
    assert p["mi_spent"] <= 0.05 * (1 + 1e-12)
    assert p["mi_spent"] >= 0.5 * 0.05 and p["noisy"] > 0  # unanimous steps may leave some unspent
    assert p["releases"] == 36 and all(len(r.seeds) == 3 for r in trainer.records)
    assert len({s for r in trainer.records for s in r.seeds}) == 36
    assert p["attack_bound"] == pytest.approx(0.5 + np.sqrt(0.05 / 2), abs=0.02)
    spent = [r.mi_spent for r in trainer.records]
    assert spent == sorted(spent) and max(spent) <= 0.05 * (1 + 1e-12)


def test_k_directions_update_equals_sum_of_released_signs(make_config):
    """θ_T − θ_0 = −Σ_t (lr_t/K) Σ_k b_{t,k} z_{t,k}: the fused restore+update leaves nothing behind."""
    trainer = Trainer(
        make_config("train.directions=2", "train.steps=3", "train.lr=1.0e-2", "train.eval_every=0")
    )
    theta0 = [p.detach().double().clone() for _, p in trainer.loaded.trainable]
    trainer.run()
    expected = [t.clone() for t in theta0]
    for r in trainer.records:
        for seed, b in zip(r.seeds, r.update):
            for e, z in zip(expected, trainer.directions.materialise(seed)):
                e -= r.lr / 2 * b * z.double()
    for (_, p), e in zip(trainer.loaded.trainable, expected):
        assert torch.allclose(p.double(), e, atol=1e-6)


def test_training_loss_is_logged_without_an_extra_forward(make_config, monkeypatch):
    trainer = Trainer(
        make_config("train.steps=4", "train.eval_every=0", "task.dev_size=0", "task.test_size=0")
    )
    calls = []
    original = trainer.objective.losses
    monkeypatch.setattr(trainer.objective, "losses", lambda *a: calls.append(1) or original(*a))
    trainer.run()
    assert len(calls) == 2 * 4  # exactly two forward sweeps of the pool per step
    assert all(np.isfinite(r.loss) for r in trainer.records)


def test_outputs_are_written_and_secret_is_only_in_its_0600_file(make_config, tmp_path):
    out = tmp_path / "run"
    _, summary = run(
        make_config,
        "privacy.mechanism=paczero-mi",
        "privacy.budget=0.2",
        "privacy.secret_index=11",
        "train.steps=6",
        "train.eval_every=3",
        output_dir=out,
    )
    for name in ("summary.json", "steps.jsonl", "config.yaml", "privacy.md", "private/secret.json"):
        assert (out / name).is_file(), name
    assert (out / "model" / "adapter_model.safetensors").is_file()
    assert (out / "private").stat().st_mode & 0o777 == 0o700
    for name in ("secret.json", "state.jsonl", "run.json"):
        assert (out / "private" / name).stat().st_mode & 0o777 == 0o600, name
    assert json.loads((out / "private" / "secret.json").read_text())["secret_index"] == 11
    assert json.loads((out / "private" / "run.json").read_text())["wall_time_s"] > 0
    assert "<redacted>" in (out / "config.yaml").read_text()
    lines = (out / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["step"] == 1
    saved = json.loads((out / "summary.json").read_text())
    for key in (
        "task",
        "model",
        "mechanism",
        "hyperparameters",
        "dev",
        "test",
        "steps_run",
        "privacy",
    ):
        assert key in saved
    assert not {"wall_time_s", "seconds_per_step"} & set(saved)  # timings are private
    assert all("seconds" not in json.loads(line) for line in lines)
    for key in ("mi_spent", "attack_bound", "matched_epsilon", "unanimity_rate"):
        assert key in saved["privacy"]
    assert "secret_index" not in json.dumps(saved)
    assert "Membership-attack success bound" in (out / "privacy.md").read_text()


def test_public_minibatch_sequence_does_not_depend_on_the_secret(make_config):
    batches = []
    for secret in (2, 13):
        overrides = ("train.batch_size=40", f"privacy.secret_index={secret}", "privacy.mechanism=quant_half")
        trainer = Trainer(make_config(*overrides))
        rows = [trainer.step_batch()[0] for _ in range(5)]
        assert all(len(r) == 40 and len(set(r)) == 40 for r in rows)
        assert all((trainer.subsets.membership[:, r].sum(axis=1) > 0).all() for r in rows)
        batches.append(rows)
    assert all(np.array_equal(a, b) for a, b in zip(*batches))
    assert not np.array_equal(batches[0][0], batches[0][1])
