"""SQuAD: F1/EM by hand, batched greedy decoding (cache, padding, early stop), QA objectives, real files."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

from paczero.cli import main
from paczero.config import ConfigError, load_config
from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.models.tiny import _init_tiny_weights
from paczero.tasks.config import TaskConfig
from paczero.tasks.data import Example, packaged_data
from paczero.tasks.generation import greedy_decode, length_sorted_batches, newline_stop_ids
from paczero.tasks.registry import build_objective, load_splits
from paczero.tasks.squad import best_scores, exact_match, f1_score, normalize_answer, read_official_json
from paczero.trainer import Trainer
from tests.conftest import TINY

SQUAD = packaged_data("squad")  # the sample shipped with paczero (task.data_dir unset)


# ---------------------------------------------------------------------------------------------------------
# Metrics


@pytest.mark.parametrize(
    "prediction, gold, f1, em",
    [
        ("The Denver Broncos", "Denver Broncos", 1.0, 1.0),  # article dropped
        ("an apple, a pear!", "Apple pear", 1.0, 1.0),  # articles, punctuation, case
        ("Denver   Broncos.", "denver broncos", 1.0, 1.0),  # whitespace and punctuation
        ("Denver Broncos team", "Denver Broncos", 0.8, 0.0),  # P = 2/3, R = 1
        ("x y y", "y y z", 2 / 3, 0.0),  # repeated tokens count with multiplicity
        ("theater", "the ater", 0.0, 0.0),  # 'the' is dropped only as a whole word
        ("", "Denver", 0.0, 0.0),  # empty prediction
        ("...", "Denver", 0.0, 0.0),  # punctuation only normalises to empty
    ],
)
def test_f1_and_exact_match_by_hand(prediction, gold, f1, em):
    assert f1_score(prediction, gold) == pytest.approx(f1)
    assert exact_match(prediction, gold) == em


def test_best_gold_answer_wins():
    assert best_scores("Broncos", ("Denver Broncos", "the Denver Broncos team")) == pytest.approx(
        (2 / 3, 0.0)
    )
    assert best_scores("Broncos", ("Denver Broncos", "Broncos")) == (1.0, 1.0)
    assert normalize_answer("  The  Cat's   hat ") == "cats hat"


# ---------------------------------------------------------------------------------------------------------
# Greedy decoding


@pytest.fixture(scope="module", params=["tiny-opt", "tiny-llama", "tiny-gpt2"])
def tiny(request):
    return load_model(ModelConfig(name=request.param, track="lora"))


PROMPTS = [
    "the movie was great and the acting was awful . how was the acting ?",
    "i liked it",
    "a bad film , boring and dull",
    "the story",
    "what was the music like ? it was good , really good .",
]


def reference_decode(model, ids: list[int], steps: int, stops: set[int]) -> list[int]:
    """No cache, no padding: the whole sequence is recomputed for every new token."""
    ids, out = list(ids), []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token in stops:
                break
    return out


def decode_all(model, seqs, micro_batch_size, steps, stops) -> list[list[int]]:
    out = [None] * len(seqs)
    for batch in length_sorted_batches(seqs, micro_batch_size, 0, "cpu"):
        for row, ids in zip(batch.rows.tolist(), greedy_decode(model, batch, steps, torch.tensor(stops))):
            out[row] = ids
    return out


def test_batched_cached_decoding_equals_one_by_one_and_uncached(tiny):
    seqs = [tiny.tokenizer(p).input_ids for p in PROMPTS]
    stops = newline_stop_ids(tiny.tokenizer)
    batched = decode_all(tiny.model, seqs, 3, 8, stops)
    single = decode_all(tiny.model, seqs, 1, 8, stops)
    assert batched == single
    assert batched == [reference_decode(tiny.model, s, 8, set(stops)) for s in seqs]
    assert len({tuple(b) for b in batched}) > 1  # the prompts lead to different answers


def test_each_sequence_stops_at_its_own_stop_token(tiny):
    seqs = [tiny.tokenizer(p).input_ids for p in PROMPTS]
    free = decode_all(tiny.model, seqs, 5, 8, [-1])  # nothing stops: 8 tokens each
    assert all(len(ids) == 8 for ids in free)

    def cuts(stop):
        return [full.index(stop) + 1 if stop in full else 8 for full in free]

    # the emitted token at which the rows would finish at the most different steps
    stop = max({t for ids in free for t in ids}, key=lambda t: len(set(cuts(t))))
    stopped = decode_all(tiny.model, seqs, 5, 8, [stop])
    assert stopped == [full[:cut] for full, cut in zip(free, cuts(stop))]
    assert len({len(ids) for ids in stopped}) >= 2 and min(map(len, stopped)) < 8


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE tokenizer (newline is a token, as in OPT/GPT-2) and a tiny OPT over its vocabulary."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = [
        "Title: Denver\nContext: The Denver Broncos won the game.\nQuestion: Who won?\nAnswer: Denver\n"
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus * 10, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    tok.padding_side = "left"
    config = OPTConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=64,
        max_position_embeddings=256,
        word_embed_proj_dim=32,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    model = OPTForCausalLM(config).eval()
    _init_tiny_weights(model, 0)
    return tok, model


class ForceTokenAt(torch.nn.Module):
    """A model whose token at sequence length ``length`` is forced to ``token`` (a scripted LM)."""

    def __init__(self, model, token: int, length: int):
        super().__init__()
        self.model, self.token, self.length = model, token, length

    def get_base_model(self):
        return self.model

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        if kwargs["attention_mask"].shape[1] == self.length:
            out.logits[:, -1, self.token] += 1e4
        return out


def test_generation_stops_at_the_newline_and_the_answer_is_cut_there(bpe):
    tok, model = bpe
    newline = tok.convert_tokens_to_ids("Ċ")  # byte-level BPE spells "\n" as Ċ
    stops = newline_stop_ids(tok)
    assert newline in stops and tok.eos_token_id in stops
    assert tok.convert_tokens_to_ids("ĠDenver") not in stops
    qa = build_objective(TaskConfig(name="synthetic-qa", max_length=200, max_new_tokens=20), tok, 4)
    example = Example(
        {"title": "Denver", "context": "The Denver Broncos won.", "question": "Who?"}, answers=("x",)
    )
    data = qa.prepare([example], torch.device("cpu"))
    prompt_len = data.prompts[0].input_ids.shape[1]
    free = greedy_decode(model, data.prompts[0], 20, torch.tensor([-1]))[0]
    assert newline not in free[:4]
    forced = ForceTokenAt(model, newline, prompt_len + 3)  # the 4th new token is a newline
    ids = greedy_decode(forced, data.prompts[0], 20, torch.tensor(stops))[0]
    assert ids == [*free[:3], newline]
    assert qa.generate(forced, data) == [tok.decode(free[:3]).strip()]


# ---------------------------------------------------------------------------------------------------------
# Objectives


def qa_examples(n=6, seed=0):
    from paczero.tasks.squad import synthetic_qa

    return synthetic_qa(n, seed)


def test_minus_f1_losses_are_identical_batched_and_one_by_one():
    tiny = load_model(ModelConfig(name="tiny-llama", track="lora"))  # its answers vary between prompts
    cfg = TaskConfig(name="synthetic-qa", max_new_tokens=4)
    examples = qa_examples(8)
    single = build_objective(cfg, tiny.tokenizer, 1)
    texts = single.generate(tiny.model, single.prepare(examples, torch.device("cpu")))
    # gold answers overlapping the model's own answers (odd rows) give losses strictly between −1 and 0
    examples = [
        Example(e.fields, answers=(*e.answers, " ".join(t.split()[:2]) + " film") if i % 2 else e.answers)
        for i, (e, t) in enumerate(zip(examples, texts))
    ]
    losses_single = single.losses(tiny.model, single.prepare(examples, torch.device("cpu")))
    batched = build_objective(cfg, tiny.tokenizer, 3)
    losses_batched = batched.losses(tiny.model, batched.prepare(examples, torch.device("cpu")))
    assert torch.equal(losses_single, losses_batched)
    assert (losses_single < 0).sum() >= 4 and losses_single.min() >= -1
    expected = [-best_scores(t, e.answers)[0] for t, e in zip(texts, examples)]
    assert losses_single.tolist() == pytest.approx(expected)
    metrics = batched.evaluate(tiny.model, batched.prepare(examples, torch.device("cpu")))
    assert metrics["f1"] == pytest.approx(-float(losses_single.mean()))
    assert metrics["loss"] == pytest.approx(-metrics["f1"]) and 0 <= metrics["exact_match"] <= metrics["f1"]


def test_teacher_forced_ce_matches_a_manual_computation(tiny):
    qa = build_objective(TaskConfig(name="synthetic-qa", objective="ce"), tiny.tokenizer, 3)
    examples = qa_examples(5, seed=2)
    losses = qa.losses(tiny.model, qa.prepare(examples, torch.device("cpu")))
    for i, ex in enumerate(examples):
        prompt = tiny.tokenizer(qa.prompt.format(**ex.fields)).input_ids
        answer = tiny.tokenizer(f" {ex.answers[0]}\n", add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([prompt + answer])).logits[0], -1)
        ref = -sum(float(logp[len(prompt) - 1 + t, a]) for t, a in enumerate(answer)) / len(answer)
        assert float(losses[i]) == pytest.approx(ref, abs=1e-5)


def test_ce_objective_training_lowers_the_dev_loss(make_config):
    summary = Trainer(
        make_config(
            "task.name=synthetic-qa",
            "task.objective=ce",
            "task.max_new_tokens=3",
            "model.track=full",
            "privacy.mechanism=mezo",
            "train.lr=1.0e-3",
            "train.steps=60",
            "train.eval_every=30",
            "task.pool_size=64",
            "task.dev_size=32",
            "task.test_size=0",
        )
    ).run()
    history = summary["dev"]["history"]
    assert history[-1]["loss"] < history[0]["loss"] - 0.2, history
    assert summary["primary_metric"] == "f1" and "exact_match" in history[-1]


def test_select_by_must_name_a_metric_of_the_task(make_config):
    with pytest.raises(ValueError, match="dev_f1"):
        Trainer(make_config("train.select_by=dev_f1"))  # a classification task has no F1
    with pytest.raises(ConfigError, match="select_by"):
        load_config(None, [*TINY, "train.select_by=loss"])
    with pytest.raises(ConfigError, match="objective"):
        load_config(None, [*TINY, "task.objective=f1"])  # −F1 is for generation tasks


# ---------------------------------------------------------------------------------------------------------
# Real SQuAD files


def test_real_squad_files_load_with_the_mezo_protocol(tmp_path):
    sizes = {"pool_size": 300, "dev_size": 100, "test_size": 1000}
    splits = load_splits(TaskConfig(name="squad", data_seed=0, **sizes))
    assert (len(splits.pool), len(splits.dev), len(splits.test)) == (300, 100, 300)  # the packaged sample
    assert set(splits.pool[0].fields) == {"title", "context", "question"}
    assert all(len(e.answers) == 1 for e in splits.pool)  # the train sample keeps one answer
    assert max(len(e.answers) for e in splits.test) > 1  # dev keeps every reference answer
    pool_questions = {e.fields["question"] for e in splits.pool}
    assert not pool_questions & {e.fields["question"] for e in splits.dev}
    again = load_splits(TaskConfig(name="squad", data_seed=1, **sizes))
    assert again.pool != splits.pool
    with pytest.raises(ValueError, match="shipped with paczero; set task.data_dir"):
        load_splits(TaskConfig(name="squad"))  # 1000 + 500 exceed the 500-question sample
    # the official nested layout (data → paragraphs → qas) reads as the flattened JSONL does
    records = [json.loads(line) for line in (SQUAD / "dev.jsonl").open(encoding="utf-8")]
    qas = [
        {"question": r["question"], "answers": [{"text": t} for t in r["answers"]["text"]]} for r in records
    ]
    nested = {
        "data": [
            {"title": r["title"], "paragraphs": [{"context": r["context"], "qas": [qa]}]}
            for r, qa in zip(records, qas)
        ]
    }
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(nested), encoding="utf-8")
    official = read_official_json(tmp_path / "dev-v1.1.json")
    assert len(official) == 300 and official[0].fields["question"] == records[0]["question"]
    assert official[0].answers == tuple(records[0]["answers"]["text"])


def test_real_squad_gold_answers_score_perfectly():
    examples = load_splits(TaskConfig(name="squad", pool_size=100, dev_size=10, test_size=200)).test
    assert all(best_scores(e.answers[-1], e.answers) == (1.0, 1.0) for e in examples)
    assert sum(best_scores(e.fields["title"], e.answers)[1] for e in examples) < 20


def test_tiny_model_squad_run_with_zpl_writes_f1_and_exact_match(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [
        "task.name=squad",
        "task.pool_size=16",
        "task.dev_size=8",
        "task.test_size=8",
        "task.max_new_tokens=5",
        "model.name=tiny-opt",
        "privacy.mechanism=paczero-zpl",
        "privacy.subsets=8",
        "train.steps=3",
        "train.eval_every=2",
        "train.select_by=dev_f1",
        "train.progress=false",
    ]
    config = tmp_path / "empty.yaml"
    config.write_text("")
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["train", "--config", str(config), "--output-dir", str(out), *sets]) == 0
    assert "dev f1" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_run"] == 3 and summary["primary_metric"] == "f1"
    for metrics in (summary["test"], summary["dev"]["selected"]):
        assert {"loss", "f1", "exact_match"} <= set(metrics)
    assert summary["privacy"]["mi_spent"] == 0.0
    assert main(["eval", "--run", str(out), "--split", "test"]) == 0  # reloads the resolved config
    assert json.loads(capsys.readouterr().out)["test"]["f1"] == pytest.approx(summary["test"]["f1"])


# ---------------------------------------------------------------------------------------------------------
# Paper cells

CELLS = Path(__file__).resolve().parents[1] / "configs" / "paper" / "squad"


def test_the_paper_squad_cells_are_all_there_with_the_paper_hyperparameters():
    for size in ("1.3b", "6.7b"):
        for track in ("lora", "full"):
            for mech in ("zpl", "mi-0.33", "mi-0.68"):
                cfg = load_config(CELLS / f"opt-{size}-{track}-{mech}.yaml")
                assert (cfg.task.name, cfg.task.objective, cfg.task.max_new_tokens) == ("squad", "f1", 50)
                assert cfg.train.select_by == "dev_f1" and cfg.train.steps == 1000
                assert cfg.model.name == f"facebook/opt-{size}" and cfg.model.track == track
                assert cfg.train.lr == (1e-3 if track == "lora" else 1e-4)
                assert cfg.train.clip == {"lora": 25 if size == "1.3b" else 10, "full": 1000}[track]
                assert cfg.privacy.subsets == (126 if mech == "zpl" else 128)
                assert cfg.privacy.budget == (None if mech == "zpl" else float(mech[3:]))


def test_a_paper_squad_cell_runs_two_steps_on_a_tiny_model():
    shrink = [
        "task.data_dir=null",  # the packaged sample instead of the hub
        "task.pool_size=8",
        "task.dev_size=4",
        "task.test_size=4",
        "task.max_length=128",
        "task.max_new_tokens=4",
        "model.name=tiny-opt",
        "model.device=cpu",
        "model.dtype=float32",
        "privacy.subsets=4",
        "train.steps=2",
        "train.eval_every=0",
        "train.progress=false",
    ]
    summary = Trainer(load_config(CELLS / "opt-1.3b-lora-mi-0.33.yaml", shrink)).run()
    assert summary["steps_run"] == 2 and summary["task"] == "squad" and "f1" in summary["test"]
