"""Frozen-trunk caching (models/trunk.py): cached losses equal uncached ones, and so do ZPL transcripts.

The cached forward computes only the option rows of the head (and, where exact, only the scored positions),
so it sums in another order than the uncached one: losses agree to 1e-5 relative, not bit for bit.
"""

import json

import pytest
import torch

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.models.trunk import (
    TrunkCachedModel,
    TrunkError,
    find_blocks,
    forward_model,
    trainable_top_layers,
)
from paczero.tasks.config import TaskConfig
from paczero.tasks.registry import build_objective, load_splits
from paczero.trainer import Trainer


def assert_same_losses(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal within 1e-5 relative in fp32: the exactness the restricted forward promises."""
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def _setup(name: str, lora_layers: int | None = 1, micro_batch: int = 8, **model_kw):
    loaded = load_model(ModelConfig(name=name, lora_layers=lora_layers, **model_kw))
    task = TaskConfig(name="synthetic-sentiment", pool_size=40, dev_size=8, test_size=8)
    splits = load_splits(task)
    objective = build_objective(task, loaded.tokenizer, micro_batch)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in loaded.trainable:  # move off θ_0 (LoRA B = 0 would hide the top blocks' adapters)
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return loaded, splits, objective


@pytest.mark.parametrize("name", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
def test_cached_losses_equal_uncached_on_fixed_sets_and_on_minibatches(name):
    loaded, splits, objective = _setup(name)
    assert all(".1." in n for n, _ in loaded.trainable)  # block 1 of 2
    cached = forward_model(loaded, objective)
    assert isinstance(cached, TrunkCachedModel) and cached.k == 1
    pool = objective.prepare(splits.pool, loaded.device)
    for _ in range(2):  # first call fills the cache, second reads it
        assert_same_losses(objective.losses(cached, pool), objective.losses(loaded.model, pool))
    dev = objective.prepare(splits.dev, loaded.device)
    ref, got = objective.per_example(loaded.model, dev), objective.per_example(cached, dev)
    assert_same_losses(got["loss"], ref["loss"])
    assert torch.equal(got["accuracy"], ref["accuracy"])
    minibatch = objective.prepare(splits.pool[3:17], loaded.device)  # rows cached in other micro-batches
    assert_same_losses(objective.losses(cached, minibatch), objective.losses(loaded.model, minibatch))
    hidden = loaded.model.config.hidden_size
    tokens = sum(int(mb.attention_mask.shape[1]) * len(mb.rows) for mb in pool.batches + dev.batches)
    assert 0 < cached.cache.nbytes() <= (tokens + 8 * 128) * hidden * 4


def test_lora_layers_puts_adapters_in_the_top_blocks_only():
    loaded = load_model(ModelConfig(name="tiny-llama", lora_layers=1))
    assert trainable_top_layers(loaded.model, [p for _, p in loaded.trainable]) == 1
    everywhere = load_model(ModelConfig(name="tiny-llama"))
    assert trainable_top_layers(everywhere.model, [p for _, p in everywhere.trainable]) == 2
    with pytest.raises(ValueError, match="lora_layers"):
        load_model(ModelConfig(name="tiny-llama", lora_layers=3))


def test_cache_is_off_when_not_exact_and_an_error_when_forced():
    loaded, _, objective = _setup("tiny-opt", lora_layers=None)
    assert forward_model(loaded, objective) is loaded.model  # auto: adapters in every block
    loaded.config.cache_trunk = True
    with pytest.raises(TrunkError, match="top k < L blocks"):
        forward_model(loaded, objective)
    off, _, objective = _setup("tiny-opt", cache_trunk=False)
    assert forward_model(off, objective) is off.model


def test_a_model_without_a_block_list_is_a_clear_error():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 2})()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    with pytest.raises(TrunkError, match="cannot locate the transformer blocks"):
        find_blocks(Flat())


def test_the_memory_cap_is_a_clear_error():
    loaded, splits, objective = _setup("tiny-opt", trunk_cache_gib=1e-6)
    cached = forward_model(loaded, objective)
    with pytest.raises(TrunkError, match="trunk_cache_gib"):
        objective.losses(cached, objective.prepare(splits.pool, loaded.device))


def test_full_layers_trains_every_weight_of_the_top_blocks_only_and_is_cached_exactly():
    loaded, splits, objective = _setup("tiny-llama", lora_layers=None, track="full", full_layers=1)
    _, blocks = find_blocks(loaded.model)
    assert {id(p) for _, p in loaded.trainable} == {id(p) for p in blocks[1].parameters()}
    assert trainable_top_layers(loaded.model, [p for _, p in loaded.trainable]) == 1
    cached = forward_model(loaded, objective)
    assert isinstance(cached, TrunkCachedModel) and cached.k == 1
    pool = objective.prepare(splits.pool, loaded.device)
    for _ in range(2):
        assert_same_losses(objective.losses(cached, pool), objective.losses(loaded.model, pool))
    everything = load_model(ModelConfig(name="tiny-llama", track="full"))
    assert len(everything.trainable) > len(loaded.trainable)
    assert forward_model(everything, objective) is everything.model  # embeddings trained: not exact
    with pytest.raises(ValueError, match="full_layers"):
        load_model(ModelConfig(name="tiny-llama", track="full", full_layers=3))
    with pytest.raises(ValueError, match="applies to track='full'"):
        ModelConfig(name="tiny-llama", full_layers=1)
    with pytest.raises(ValueError, match="applies to track='lora'"):
        ModelConfig(name="tiny-llama", track="full", lora_layers=1)


@pytest.mark.parametrize(
    "extra",
    [
        ["model.lora_layers=1"],
        ["model.lora_layers=1", "train.batch_size=24"],
        ["model.track=full", "model.full_layers=1", "train.lr=1e-3"],
    ],
)
def test_zpl_transcript_agrees_cached_and_uncached(make_config, tmp_path, extra):
    lines = {}
    for cache in ("true", "false"):
        cfg = make_config(
            f"model.cache_trunk={cache}",
            "privacy.mechanism=paczero-zpl",
            "train.steps=6",
            "train.eval_every=3",
            "train.lr=3e-2",
            *extra,
        )
        trainer = Trainer(cfg, tmp_path / cache)
        assert isinstance(trainer.forward_model, TrunkCachedModel) == (cache == "true")
        summary = trainer.run()
        steps = [json.loads(s) for s in (tmp_path / cache / "steps.jsonl").read_text().splitlines()]
        lines[cache] = ([s["released"] for s in steps], [s["update"] for s in steps], summary["test"])
    assert lines["true"][0] == lines["false"][0]  # the released signs
    updates = [torch.tensor(lines[c][1], dtype=torch.float64) for c in ("true", "false")]
    torch.testing.assert_close(*updates, rtol=1e-5, atol=0)
    assert lines["true"][2] == pytest.approx(lines["false"][2], rel=1e-5)


@pytest.mark.slow
def test_smollm2_cached_losses_equal_uncached():
    loaded = load_model(ModelConfig(name="smollm2-135m", lora_layers=4))
    task = TaskConfig(name="synthetic-sentiment", pool_size=24, dev_size=0, test_size=0)
    objective = build_objective(task, loaded.tokenizer, 8)
    with torch.no_grad():
        for _, p in loaded.trainable:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    cached = forward_model(loaded, objective)
    assert isinstance(cached, TrunkCachedModel) and cached.first == 26
    pool = objective.prepare(load_splits(task).pool, loaded.device)
    for _ in range(2):
        assert_same_losses(objective.losses(cached, pool), objective.losses(loaded.model, pool))


@pytest.mark.slow
def test_torchrun_two_ranks_cached_equal_one_process_cached(tmp_path):
    from tests.test_distributed import ROOT, launch, transcript, weights

    one, two = tmp_path / "one", tmp_path / "two"
    top = ["--set", "model.lora_layers=1", "--set"]
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}  # this checkout's paczero in the workers
    first = launch(tmp_path, one, 1, "paczero-zpl", extra=[*top, "model.cache_trunk=true"], env_extra=env)
    assert first.returncode == 0, first.stderr[-2000:]
    result = launch(tmp_path, two, 2, "paczero-zpl", extra=[*top, "model.cache_trunk=true"], env_extra=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert transcript(one) == transcript(two) and weights(one) == weights(two)


def test_the_run_config_decides_even_on_a_shared_loaded_model(make_config):
    cached = Trainer(make_config("model.lora_layers=1"))
    assert isinstance(cached.forward_model, TrunkCachedModel)
    plain = Trainer(make_config("model.lora_layers=1", "model.cache_trunk=false"), loaded=cached.loaded)
    assert plain.forward_model is cached.loaded.model


def test_trainers_over_one_loaded_model_share_its_trunk(make_config, monkeypatch):
    first = Trainer(make_config("model.lora_layers=1"))
    first.objective.losses(first.forward_model, first.pool)
    captures = []
    monkeypatch.setattr(TrunkCachedModel, "_capture", lambda self, **kw: captures.append(kw))
    second = Trainer(make_config("model.lora_layers=1", "privacy.mechanism=mezo"), loaded=first.loaded)
    assert second.forward_model.cache is first.forward_model.cache
    torch.testing.assert_close(
        second.objective.losses(second.forward_model, second.pool),
        first.objective.losses(first.loaded.model, first.pool),
        rtol=1e-5,
        atol=0,
    )
    assert captures == []  # every pool sequence came from the shared cache
