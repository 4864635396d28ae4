"""Scored positions only (models/suffix.py): the top block runs only the positions the loss reads and the head
only the option rows, where that is exact; losses equal the full forward's to 1e-5 relative in fp32."""

import contextlib

import pytest
import torch

from paczero.models import suffix
from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.models.trunk import TrunkCachedModel, forward_model
from paczero.tasks.config import TaskConfig
from paczero.tasks.registry import build_objective, load_splits

# Adapter placements whose trainable parameters do not feed the keys and values of earlier positions.
KV_FREE = {"tiny-opt": ["q_proj", "out_proj"], "tiny-llama": ["q_proj", "o_proj"], "tiny-gpt2": ["c_proj"]}


def _setup(name: str, targets: list[str] | None, label_words: list[str] | None = None):
    loaded = load_model(ModelConfig(name=name, lora_layers=1, lora_targets=targets))
    task = TaskConfig(name="synthetic-sentiment", pool_size=40, dev_size=0, test_size=0)
    if label_words is not None:
        task = TaskConfig(**{**task.__dict__, "label_words": label_words})
    objective = build_objective(task, loaded.tokenizer, 8)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in loaded.trainable:  # off θ_0, where LoRA B = 0 would hide every adapter
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return loaded, objective, objective.prepare(load_splits(task).pool, loaded.device)


def _positions_run(model: TrunkCachedModel, fn) -> list[int]:
    """Sequence lengths the last block saw while ``fn`` ran."""
    seen: list[int] = []

    def record(_m, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).shape[1])

    handle = model.blocks[-1].register_forward_pre_hook(record, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return seen


def _perturb(loaded) -> None:
    with torch.no_grad():
        for _, p in loaded.trainable:
            p.mul_(-1.5)


@pytest.mark.parametrize("name", sorted(KV_FREE))
def test_last_block_runs_the_scored_position_only_and_losses_equal_the_full_forward(name):
    loaded, objective, pool = _setup(name, KV_FREE[name])
    cached = forward_model(loaded, objective)
    assert isinstance(cached, TrunkCachedModel) and cached.head_rows == objective.head_rows
    objective.losses(cached, pool)  # fills the trunk and prefix caches
    seen = _positions_run(cached, lambda: objective.losses(cached, pool))
    assert cached.prefix.usable and seen and set(seen) == {1}
    for _ in range(2):  # and again after the trainable parameters move: the prefix does not depend on them
        torch.testing.assert_close(
            objective.losses(cached, pool), objective.losses(loaded.model, pool), rtol=1e-5, atol=0
        )
        _perturb(loaded)


@pytest.mark.parametrize("name", sorted(KV_FREE))
def test_an_adapter_on_the_value_path_keeps_every_position(name):
    loaded, objective, pool = _setup(name, None)  # the default: query and value (GPT-2: fused c_attn)
    cached = forward_model(loaded, objective)
    seen = _positions_run(cached, lambda: objective.losses(cached, pool))
    assert not cached.prefix.usable and "keys or values" in cached.prefix.reason
    assert min(seen) > 1
    _perturb(loaded)
    torch.testing.assert_close(
        objective.losses(cached, pool), objective.losses(loaded.model, pool), rtol=1e-5, atol=0
    )


def test_negative_control_reusing_a_prefix_that_depends_on_the_adapter_is_caught(monkeypatch):
    """Blind the autograd check with LoRA on v_proj: the reused prefix goes stale once the adapter moves."""
    loaded, objective, pool = _setup("tiny-llama", None)
    cached = forward_model(loaded, objective)
    monkeypatch.setattr(suffix, "_tracking", lambda trainable: contextlib.nullcontext())
    objective.losses(cached, pool)
    assert cached.prefix.usable
    _perturb(loaded)
    got, want = objective.losses(cached, pool), objective.losses(loaded.model, pool)
    assert not torch.allclose(got, want, rtol=1e-5, atol=0)


def test_multi_token_label_words_score_their_suffix_over_the_cached_prefix():
    words = [" bad movie", " good film here"]
    loaded, objective, pool = _setup("tiny-llama", KV_FREE["tiny-llama"], label_words=words)
    assert objective.head_rows is None and pool.keep > 1
    cached = forward_model(loaded, objective)
    assert cached.head_rows is None
    objective.losses(cached, pool)
    seen = _positions_run(cached, lambda: objective.losses(cached, pool))
    assert set(seen) == {pool.keep}
    torch.testing.assert_close(
        objective.losses(cached, pool), objective.losses(loaded.model, pool), rtol=1e-5, atol=0
    )


def test_the_head_computes_the_option_rows_only():
    loaded, objective, pool = _setup("tiny-opt", KV_FREE["tiny-opt"])
    cached = forward_model(loaded, objective)
    out = cached(
        input_ids=pool.batches[0].input_ids,
        attention_mask=pool.batches[0].attention_mask,
        position_ids=pool.batches[0].position_ids,
        logits_to_keep=1,
        use_cache=False,
    )
    assert out.logits.shape[-1] == len(objective.head_rows) == 2
    assert loaded.model.get_output_embeddings().out_features > 2  # the model's own head is back


@pytest.mark.slow
def test_smollm2_scored_positions_equal_the_full_forward():
    loaded = load_model(ModelConfig(name="smollm2-135m", lora_layers=1, lora_targets=["q_proj", "o_proj"]))
    task = TaskConfig(name="sst2", pool_size=48, dev_size=0, test_size=0)
    objective = build_objective(task, loaded.tokenizer, 16)
    with torch.no_grad():
        for _, p in loaded.trainable:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    cached = forward_model(loaded, objective)
    pool = objective.prepare(load_splits(task).pool, loaded.device)
    objective.losses(cached, pool)
    assert set(_positions_run(cached, lambda: objective.losses(cached, pool))) == {1}
    torch.testing.assert_close(
        objective.losses(cached, pool), objective.losses(loaded.model, pool), rtol=1e-5, atol=0
    )


def test_a_new_batch_of_known_sequences_is_assembled_from_their_prefixes(monkeypatch):
    """A DP Poisson batch or a public minibatch reuses the prefixes computed with the pool: no rebuild."""
    loaded, objective, pool = _setup("tiny-llama", KV_FREE["tiny-llama"])
    cached = forward_model(loaded, objective)
    objective.losses(cached, pool)
    builds = []
    real_build = suffix.PrefixKV._build
    monkeypatch.setattr(suffix.PrefixKV, "_build", lambda self, *a: builds.append(1) or real_build(self, *a))
    splits = load_splits(TaskConfig(name="synthetic-sentiment", pool_size=40, dev_size=0, test_size=0))
    minibatch = objective.prepare(splits.pool[5:29:2], loaded.device)  # other micro-batches, other widths
    seen = _positions_run(cached, lambda: objective.losses(cached, minibatch))
    assert builds == [] and set(seen) == {1}
    _perturb(loaded)
    torch.testing.assert_close(
        objective.losses(cached, minibatch), objective.losses(loaded.model, minibatch), rtol=1e-5, atol=0
    )
