"""Built-in tiny test models (OPT, Llama, GPT-2 shapes) with seeded random weights, and their tokenizer."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from paczero.models.config import TINY_MODELS, ModelConfig
from paczero.models.rng import preserve_global_rng

__all__ = ["build_tiny_tokenizer", "load_tiny"]

# Built-in word-level vocabulary for the tiny test models (specials are added separately).
_TINY_WORDS = """
. , ' ! ? : ; - ( ) " s t
the a an and or but not no nor so if then than as of to in on at by for with from into about over
under after before up down out off again once here there when where why how all any both each few more
most other some such only own same too very can will just should now also yet still even ever never
always often really quite rather much many little less least well back

i me my we our you your he him his she her it its they them their this that these those who whom
which what is are was were be been being have has had do does did doing would could might must may
shall am

movie film story plot acting actor actors actress cast director script scene scenes ending music
picture performance performances character characters show series book play role screen camera dialogue
time life world man woman people love work way thing things minutes hours year years day night one two
three first last end part kind lot fun

great good bad terrible wonderful awful boring brilliant dull excellent horrible lovely poor superb
fine nice best worst better worse amazing fantastic beautiful ugly stupid smart funny sad happy
enjoyable entertaining disappointing mediocre perfect pathetic dreadful delightful charming clever
tedious weak strong solid decent average outstanding remarkable memorable forgettable bland fresh
stale moving touching powerful predictable original silly annoying painful pleasant gorgeous
masterpiece mess disaster failure success waste gem treat
positive negative neutral true false yes correct wrong right

like liked love loved hate hated enjoy enjoyed recommend watch watched see saw seen think thought
feel felt make made get got go went come came know knew say said tell told find found give gave
take took look looked seem seemed want wanted need needed try tried let keep kept begin began

question answer review sentiment label text sentence premise hypothesis entails contradiction
"""


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level lowercasing tokenizer over a fixed English vocabulary; prepends <s>; unknown -> <unk>."""
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    words: list[str] = []
    seen: set[str] = set(specials)
    for w in _TINY_WORDS.split():
        if w not in seen:
            seen.add(w)
            words.append(w)
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=128,
    )


def _tiny_config(name: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """Small architecture config for a built-in tiny model, sized to the tiny tokenizer."""
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if name == "tiny-opt":
        return OPTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=128,
            word_embed_proj_dim=64,
            dropout=0.0,
            attention_dropout=0.0,
            **ids,
        )
    if name == "tiny-llama":
        return LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=False,
            **ids,
        )
    if name == "tiny-gpt2":
        return GPT2Config(
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=128,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    raise ValueError(f"Unknown tiny model {name!r}; choose one of {TINY_MODELS}")


@torch.no_grad()
def _init_tiny_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic init from ``seed``: matrices ~ N(0, 0.02), biases 0, 1-D norm weights 1."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.02)


def load_tiny(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build a random-weight tiny model (float32, CPU) and its built-in tokenizer."""
    tokenizer = build_tiny_tokenizer()
    config = _tiny_config(cfg.name, tokenizer)
    with preserve_global_rng(torch.device("cpu")):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _init_tiny_weights(model, cfg.init_seed)
    return model, tokenizer
