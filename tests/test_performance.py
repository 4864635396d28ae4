"""Speed optimisations change no result: per-example losses, updates and the reference protocol's step.

Timing is never asserted here (``paczero bench`` measures it); these tests pin down that every shortcut of
the method's design computes the same numbers as the slow, obvious way, and count the work a step does.
"""

import json

import numpy as np
import pytest
import torch

from paczero import cli
from paczero.autobatch import auto_micro_batch_size, bytes_per_sequence, resolve_micro_batch_size
from paczero.bench.markdown import markdown
from paczero.bench.reference import ReferenceClassifier, reference_objective, reference_step
from paczero.bench.step import BenchOptions, run_bench
from paczero.bench.sweeps import linear_fit
from paczero.config import ConfigError
from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.data import synthetic_sentiment
from paczero.tasks.registry import build_objective
from paczero.trainer import Trainer
from paczero.zo import Directions

CPU = torch.device("cpu")
FP32_TOL = 2e-5  # float32 reassociation across batch shapes and softmax shifts
BF16_TOL = 1e-2  # |Δ loss| bf16 vs fp32 forward of the same tiny model (measured max 2e-3, 200 examples)
LABEL_WORDS = {"single": [" terrible", " great"], "multi": [" very bad", " great"]}


@pytest.fixture(scope="module", params=["tiny-opt", "tiny-llama", "tiny-gpt2"])
def model(request):
    return load_model(ModelConfig(name=request.param, track="lora"))


def task(words: str = "single") -> TaskConfig:
    return TaskConfig(name="synthetic-sentiment", label_words=LABEL_WORDS[words], max_length=24)


def losses(loaded, objective, n: int = 19) -> torch.Tensor:
    return objective.losses(loaded.model, objective.prepare(synthetic_sentiment(n, 4), CPU))


def variant(loaded, words="single", mbs=5, **flags) -> ReferenceClassifier:
    t = task(words)
    return ReferenceClassifier(loaded.tokenizer, t.prompt, t.label_words, mbs, t.max_length, **flags)


OFF = {"per_candidate": False, "full_logits": False, "fixed_padding": False}


@pytest.mark.parametrize("words", ["single", "multi"])
@pytest.mark.parametrize("flag", ["per_candidate", "full_logits", "fixed_padding", "all"])
def test_each_optimisation_leaves_per_example_losses_unchanged(model, words, flag):
    ours = losses(model, build_objective(task(words), model.tokenizer, 5))
    undone = {k: True for k in OFF} if flag == "all" else {**OFF, flag: True}
    slow = variant(model, words, **undone)
    assert torch.allclose(losses(model, slow), ours, atol=FP32_TOL, rtol=0)
    # the variant really did the slow thing (else the comparison proves nothing)
    data = slow.prepare(synthetic_sentiment(19, 4), CPU)
    if undone["per_candidate"] or words == "multi":
        assert sum(mb.input_ids.shape[0] for mb in data.batches) == 2 * 19
    if undone["full_logits"]:
        assert data.keep == 0
    widths = {mb.input_ids.shape[1] for mb in data.batches}
    assert (widths == {24}) == undone["fixed_padding"]


def test_negative_control_a_wrong_option_changes_the_losses(model):
    """The comparison above can fail: scoring another label word gives different losses."""
    t = task()
    other = ReferenceClassifier(model.tokenizer, t.prompt, [" terrible", " good"], 5, t.max_length)
    ours = losses(model, build_objective(t, model.tokenizer, 5))
    assert not torch.allclose(losses(model, other), ours, atol=1e-3)


def test_micro_batch_size_one_equals_many(model):
    one = losses(model, build_objective(task(), model.tokenizer, 1))
    for mbs in (3, 8, 64):
        assert torch.allclose(
            losses(model, build_objective(task(), model.tokenizer, mbs)), one, atol=FP32_TOL
        )


def test_bf16_losses_within_stated_tolerance_of_fp32():
    fp32 = load_model(ModelConfig(name="tiny-llama", track="lora"))
    bf16 = load_model(ModelConfig(name="tiny-llama", track="lora", dtype="bfloat16"))
    objective = build_objective(task(), fp32.tokenizer, 8)
    diff = (losses(bf16, objective) - losses(fp32, objective)).abs()
    assert float(diff.max()) <= BF16_TOL
    assert float(diff.max()) > 0  # bf16 really ran in bf16


def test_scoring_runs_in_inference_mode(model):
    objective = build_objective(task(), model.tokenizer, 5)
    scores = objective.option_scores(model.model, objective.prepare(synthetic_sentiment(4, 0), CPU))
    assert torch.is_inference(scores)


def test_bf16_model_keeps_fp32_lora_adapters_and_trains(make_config):
    trainer = Trainer(make_config("model.name=tiny-llama", "model.dtype=bfloat16", "train.steps=3"))
    assert all(p.dtype == torch.float32 for _, p in trainer.loaded.trainable)
    assert any(p.dtype == torch.bfloat16 for p in trainer.loaded.model.parameters())
    before = [p.detach().clone() for _, p in trainer.loaded.trainable]
    records = [trainer.step(t) for t in range(3)]
    assert all(np.isfinite(r.loss) for r in records)
    assert any(not torch.equal(p, b) for (_, p), b in zip(trainer.loaded.trainable, before))


# ---------------------------------------------------------------------------------------------------------
# The reference protocol: same update, more work


def pair(make_config, *overrides):
    cfg = make_config(
        "train.lr=3.0e-2", "privacy.secret_index=3", "task.pool_size=40", "task.max_length=24", *overrides
    )
    ours, ref = Trainer(cfg), Trainer(cfg)
    objective = reference_objective(cfg, ref.loaded.tokenizer, 16)
    return ours, ref, objective, objective.prepare(ref.splits.pool, CPU)


@pytest.mark.parametrize("mechanism", ["mezo", "paczero-zpl", "paczero-mi"])
def test_reference_protocol_makes_the_same_update_as_ours(make_config, mechanism):
    ours, ref, objective, data = pair(
        make_config, f"privacy.mechanism={mechanism}", "privacy.budget=0.2", "train.directions=2"
    )
    assert torch.allclose(
        objective.losses(ref.loaded.model, data),
        ours.objective.losses(ours.loaded.model, ours.pool),
        atol=FP32_TOL,
    )
    for t in range(3):
        mine, theirs = ours.step(t), reference_step(ref, objective, data, t)
        assert mine.seeds == theirs.seeds
        # sign releases agree exactly; MeZO's mean g carries the float32 noise of l+ − l− divided by 2ε
        assert mine.update == pytest.approx(theirs.update, rel=0 if mechanism != "mezo" else 5e-3)
        assert theirs.loss == pytest.approx(mine.loss, abs=1e-4)  # the third sweep vs (l+ + l−)/2
    for (_, a), (_, b) in zip(ours.loaded.trainable, ref.loaded.trainable):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    moved = Trainer(ours.cfg)  # negative control: the weights did move, so equality above means something
    assert any(
        not torch.allclose(a, b, atol=1e-4)
        for (_, a), (_, b) in zip(ours.loaded.trainable, moved.loaded.trainable)
    )


def count_work(trainer, objective, monkeypatch):
    """Counts forward sweeps and regenerations of z (one per distinct seed in each ``apply``)."""
    counts = {"sweeps": 0, "regenerations": 0}
    losses_fn, apply_fn = objective.losses, Directions.apply

    def counted_losses(*args, **kwargs):
        counts["sweeps"] += 1
        return losses_fn(*args, **kwargs)

    def counted_apply(self, terms):
        counts["regenerations"] += len({s for s, c in terms if c != 0})
        return apply_fn(self, terms)

    monkeypatch.setattr(objective, "losses", counted_losses)
    monkeypatch.setattr(Directions, "apply", counted_apply)
    return counts


def test_our_step_costs_two_sweeps_and_three_regenerations_the_reference_three_and_four(
    make_config, monkeypatch
):
    ours, ref, objective, data = pair(make_config, "privacy.mechanism=paczero-zpl")
    mine = count_work(ours, ours.objective, monkeypatch)
    ours.step(0)
    assert mine == {"sweeps": 2, "regenerations": 3}
    theirs = count_work(ref, objective, monkeypatch)
    reference_step(ref, objective, data, 0)
    assert theirs == {"sweeps": 3, "regenerations": 4}


# ---------------------------------------------------------------------------------------------------------
# Automatic micro-batch size


@pytest.mark.parametrize("value", ["auto", 0])
def test_auto_micro_batch_size_in_config_and_trainer(make_config, value):
    trainer = Trainer(make_config(f"train.micro_batch_size={value}", "train.steps=1"))
    chosen = trainer.objective.micro_batch_size
    assert isinstance(chosen, int) and chosen >= 1
    assert chosen == auto_micro_batch_size(trainer.loaded.model, trainer.cfg.task.max_length)
    fixed = build_objective(trainer.cfg.task, trainer.loaded.tokenizer, 1)
    assert torch.allclose(
        trainer.objective.losses(trainer.loaded.model, trainer.pool),
        fixed.losses(trainer.loaded.model, fixed.prepare(trainer.splits.pool, CPU)),
        atol=FP32_TOL,
    )


@pytest.mark.parametrize("value", ["-1", "big", "1.5"])
def test_bad_micro_batch_sizes_are_rejected(make_config, value):
    with pytest.raises(ConfigError, match="micro_batch_size"):
        make_config(f"train.micro_batch_size={value}")


def test_auto_micro_batch_shrinks_with_length_and_keeps_explicit_values(model):
    short, long = (auto_micro_batch_size(model.model, n) for n in (16, 128))
    assert short >= long >= 1
    config = model.model.config
    assert bytes_per_sequence(config, 128, torch.float32) > bytes_per_sequence(config, 16, torch.float32)
    assert bytes_per_sequence(config, 16, torch.bfloat16) < bytes_per_sequence(config, 16, torch.float32)
    assert resolve_micro_batch_size(7, model.model, 128) == 7


# ---------------------------------------------------------------------------------------------------------
# The benchmark itself (tiny, one repeat; checks structure, not speed)


def test_linear_fit_recovers_a_line():
    fit = linear_fit([100, 200, 400], [0.5 + 0.01 * n for n in (100, 200, 400)])
    assert fit["slope_s_per_example"] == pytest.approx(0.01)
    assert fit["intercept_s"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)


TINY_BENCH = [
    "task.name=synthetic-sentiment",
    "task.pool_size=48",
    "task.max_length=24",
    "model.name=tiny-opt",
    "privacy.subsets=8",
    "train.micro_batch_size=16",
]


def test_bench_measures_every_part_and_checks_targets():
    options = BenchOptions(
        mechanisms=("paczero-zpl", "paczero-mi"), repeats=1, sweep_n=(16, 32), sweep_m=(2, 8)
    )
    out = run_bench(None, TINY_BENCH, options)
    json.dumps(out)  # JSON-ready
    assert set(out["steps"]) == {"paczero-zpl", "paczero-mi"}
    assert out["forward_s"] > 0 and out["reference"]["reference_step_s"] > 0
    assert out["reference"]["reference_tokens_per_sweep"]["sequences"] == 2 * 48
    mem = out["memory"]
    assert mem["inference"]["peak_rss_bytes"] >= mem["inference"]["baseline_rss_bytes"] > 0
    assert out["sweep_n"]["values"] == [16, 32] and "slope_s_per_example" in out["sweep_n"]["fit"]
    assert out["sweep_m"]["values"] == [2, 8] and all(t > 0 for t in out["sweep_m"]["step_s"])
    names = {t["target"] for t in out["targets"]}
    assert {"step / 2 forwards (lora)", "reference / ours", "train peak / inference peak"} <= names
    assert {"privacy bookkeeping / step", "step(M max) / step(M min)"} <= names
    text = markdown(out)
    assert "| target | value | threshold | met |" in text and "reference / ours" in text


def test_bench_command_writes_json_and_markdown(tmp_path):
    args = ["bench", "--mechanisms", "mezo", "--repeats", "1", "--no-reference", "--no-memory"]
    args += [f"--set={s}" for s in TINY_BENCH]
    args += ["--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")]
    assert cli.main(args) == 0
    out = json.loads((tmp_path / "b.json").read_text())
    assert set(out["steps"]) == {"mezo"} and "reference" not in out and "memory" not in out
    assert "step, mezo" in (tmp_path / "b.md").read_text()
