"""Secure by default: OS randomness unless a run opts out, and an opted-out run is labelled not private
everywhere and refused by export; a secure run resumes; the bundle ships a model that evaluates to the run's
metrics; configs that could never draw a public minibatch are refused before any work."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from paczero.cli import main
from paczero.config import ConfigError, load_config
from paczero.evaluate import evaluate_run
from paczero.export import InsecureExportError, export_run
from paczero.rundir import INSECURE_NOTE, public_run_config, read_secret
from paczero.tracking import step_scalars
from paczero.trainer import InsecurePrivacyWarning, Trainer
from tests.conftest import SECURE_RUN

ROOT = Path(__file__).resolve().parents[1]
TINY = [*SECURE_RUN, "train.clip=null"]


class Crash(Exception):
    """A simulated fault: the process dies here."""


def test_the_demo_config_and_the_defaults_are_secure():
    for cfg in (load_config(ROOT / "configs" / "demo.yaml"), load_config(None)):
        assert cfg.privacy.secure is True and cfg.privacy.seed is None and cfg.private


def test_a_seed_needs_an_explicit_opt_out_and_an_opt_out_needs_a_seed():
    with pytest.raises(ConfigError, match="not private.*privacy.secure: false"):
        load_config(None, ["privacy.seed=3"])
    with pytest.raises(ConfigError, match="needs privacy.seed"):
        load_config(None, ["privacy.secure=false"])
    assert not load_config(None, ["privacy.secure=false", "privacy.seed=3"]).private


def test_two_secure_runs_draw_different_secrets_and_randomness(tmp_path):
    runs = []
    for name in ("a", "b"):
        Trainer(
            load_config(None, [*TINY, "privacy.mechanism=paczero-mi", "privacy.budget=0.3"]), tmp_path / name
        ).run()
        runs.append(read_secret(tmp_path / name))
    assert runs[0]["entropy"] != runs[1]["entropy"] and all(r["secure"] for r in runs)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["privacy"]["private"] is True
    assert "NOT PRIVATE" not in (tmp_path / "a" / "privacy.md").read_text()


def test_an_insecure_run_says_so_before_training_and_everywhere_after(tmp_path, capsys):
    cfg = load_config(None, [*TINY, "privacy.secure=false", "privacy.seed=11"])
    trainer = Trainer(cfg, tmp_path / "run")
    seen_before_first_step = []
    original_step = trainer.step

    def step(t):
        seen_before_first_step.append(bool(caught))
        return original_step(t)

    trainer.step = step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecurePrivacyWarning)
        trainer.run()
    assert seen_before_first_step and seen_before_first_step[0]
    assert any(issubclass(w.category, InsecurePrivacyWarning) for w in caught)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["privacy"]["private"] is False and "NOT PRIVATE" in summary["privacy"]["privacy_randomness"]
    )
    assert (run / "privacy.md").read_text().splitlines()[2] == f"**{INSECURE_NOTE}**"
    card = (run / "model" / "README.md").read_text()
    assert f"**{INSECURE_NOTE}**" in card.split("## Metrics")[0]
    with pytest.raises(InsecureExportError, match="--allow-insecure"):
        export_run(run, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    assert main(["export", "--run", str(run), "--output", str(tmp_path / "refused")]) == 2
    assert "--allow-insecure" in capsys.readouterr().err
    bundle = export_run(run, tmp_path / "bundle", allow_insecure=True)
    manifest = json.loads((tmp_path / "bundle" / "MANIFEST.json").read_text())
    assert manifest["private"] is False and "NOT-PRIVATE.txt" in bundle.files
    assert (tmp_path / "bundle" / "NOT-PRIVATE.txt").read_text().startswith("NOT PRIVATE")


def test_a_secure_run_resumes_after_a_crash(tmp_path, monkeypatch):
    from paczero.resume import resume_config
    from paczero.transcript import TranscriptWriter

    run = tmp_path / "run"
    overrides = [*TINY, "privacy.mechanism=paczero-mi", "privacy.budget=0.3", "train.steps=6"]
    original = TranscriptWriter.append

    def append(self, record):
        original(self, record)
        if record["step"] == 3:
            raise Crash  # the process dies after releasing step 3

    monkeypatch.setattr(TranscriptWriter, "append", append)
    with pytest.raises(Crash):
        Trainer(load_config(None, overrides), run).run()
    written = (run / "steps.jsonl").read_bytes()
    monkeypatch.setattr(TranscriptWriter, "append", original)
    cfg = resume_config(run, None, [])
    assert cfg.privacy.secure and cfg.privacy.seed is None
    summary = Trainer(cfg, run, resume=True).run()
    assert summary["steps_run"] == 6 and summary["privacy"]["private"] is True
    after = (run / "steps.jsonl").read_bytes()
    assert after.startswith(written) and after.count(b"\n") == 6


def test_the_bundle_ships_a_model_that_evaluates_to_the_run_s_metrics(tmp_path):
    run = tmp_path / "run"
    summary = Trainer(load_config(None, [*TINY, "train.lr=3.0e-2"]), run).run()
    bundle = export_run(run, tmp_path / "bundle")
    weights = [name for name in bundle.files if name.startswith("model/") and name.endswith(".safetensors")]
    assert weights and not any(name.startswith(("private/", "checkpoints/")) for name in bundle.files)
    results = evaluate_run(public_run_config(tmp_path / "bundle"), tmp_path / "bundle" / "model", "test")
    assert results["test"] == pytest.approx(summary["test"], rel=1e-6, abs=1e-7)


def test_a_minibatch_that_cannot_meet_every_subset_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="fewer subsets or a larger minibatch.*>= 4"):
        load_config(None, ["task.pool_size=256", "privacy.subsets=64", "train.batch_size=2"])
    assert load_config(None, ["task.pool_size=256", "privacy.subsets=64", "train.batch_size=8"])


def test_trackers_skip_the_private_loss_of_dp_steps():
    record = SimpleNamespace(
        step=1,
        loss=None,
        lr=0.1,
        unanimous=[],
        mi_spent=None,
        sigma=[2.0],
        clip_fraction=None,
        epsilon_spent=0.3,
    )
    logged = step_scalars(record)
    assert logged["train/lr"] == 0.1 and logged["privacy/epsilon_spent"] == 0.3
    assert "train/loss" not in logged and "train/clip_fraction" not in logged
