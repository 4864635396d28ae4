"""SST-2 reading, the MeZO data protocol, and classification scoring."""

import sys

import pytest
import torch

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.tasks.config import TASKS, TaskConfig
from paczero.tasks.data import (
    DataUnavailable,
    Example,
    mezo_splits,
    packaged_data,
    read_sentence_label_file,
    synthetic_sentiment,
)
from paczero.tasks.registry import READERS, build_objective, load_splits


def test_every_task_has_a_reader():
    assert READERS.keys() == TASKS.keys()


def test_real_sst2_is_packaged_and_loads_with_the_mezo_protocol(tmp_path):
    assert packaged_data("sst2").is_dir()
    splits = load_splits(TaskConfig(pool_size=100, dev_size=50, test_size=1000, data_seed=3))
    assert (len(splits.pool), len(splits.dev), len(splits.test)) == (100, 50, 872)  # validation has 872
    pool = {e.fields["sentence"] for e in splits.pool}
    assert not pool & {e.fields["sentence"] for e in splits.dev} or len(pool) == 100
    assert all(not e.fields["sentence"].endswith(" ") for e in splits.pool)
    again = load_splits(TaskConfig(pool_size=100, dev_size=50, data_seed=3))
    assert again.pool == splits.pool
    other = load_splits(TaskConfig(pool_size=100, dev_size=50, data_seed=4))
    assert other.pool != splits.pool
    copied = tmp_path / "sst2"  # a user's folder wins over the packaged files
    copied.mkdir()
    (copied / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"s{i} \t{i % 2}\n" for i in range(20)))
    (copied / "dev.tsv").write_text("sentence\tlabel\nd \t1\n")
    mine = load_splits(TaskConfig(data_dir=str(copied), pool_size=10, dev_size=5, data_seed=3))
    assert mine.test == [Example({"sentence": "d"}, 1)] and mine.pool[0].fields["sentence"].startswith("s")


def test_hub_data_without_datasets_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(DataUnavailable, match=r"paczero\[hub\].*shipped with paczero"):
        load_splits(TaskConfig(data_dir="hub"))
    with pytest.raises(DataUnavailable, match=r"paczero\[hub\].*SQuAD sample shipped with paczero"):
        load_splits(TaskConfig(name="squad", data_dir="hub"))


def test_protocol_pool_and_dev_are_disjoint_draws():
    train = [Example({"sentence": f"s{i}"}, i % 2) for i in range(30)]
    splits = mezo_splits(train, train[:5], pool=10, dev=8, test=100, seed=0)
    ids = [e.fields["sentence"] for e in splits.pool + splits.dev]
    assert len(set(ids)) == 18 and len(splits.test) == 5
    with pytest.raises(ValueError, match="exceed"):
        mezo_splits(train, train, pool=25, dev=10, test=1, seed=0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("sentence\tlabel\nfine \t1\n\t0\n", ":3: empty or missing sentence"),
        ("sentence\tlabel\nfine\t2\n", ":2: label 2 is not 0 or 1"),
        ("sentence\tlabel\nfine\tyes\n", ":2: label 'yes' is not 0 or 1"),
        ("text\tlabel\nfine\t1\n", "header must name"),
        ("sentence\tlabel\n", "no examples"),
    ],
)
def test_bad_tsv_files_give_errors_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        read_sentence_label_file(path)
    assert str(path) in str(err.value) or "header" in message


def test_bad_jsonl_and_encoding(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "ok", "label": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: not valid JSON"):
        read_sentence_label_file(path)
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_sentence_label_file(latin)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_splits(TaskConfig(data_dir=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="no train file"):
        load_splits(TaskConfig(data_dir=str(tmp_path)))


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny-opt", track="full"))


def test_single_token_scoring_equals_full_softmax_cross_entropy(tiny):
    examples = synthetic_sentiment(12, 0)
    obj = build_objective(TaskConfig(name="synthetic-sentiment"), tiny.tokenizer, micro_batch_size=5)
    assert obj.single_token
    data = obj.prepare(examples, torch.device("cpu"))
    losses = obj.losses(tiny.model, data)
    # reference: one example at a time, full-vocabulary log-softmax, no padding
    words = [tiny.tokenizer(w, add_special_tokens=False).input_ids[0] for w in (" terrible", " great")]
    for i, ex in enumerate(examples):
        ids = torch.tensor([tiny.tokenizer(f"{ex.fields['sentence']} It was").input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=ids).logits[0, -1].float(), -1)
        ref = -(logp[words[ex.label]] - torch.logsumexp(logp[words], 0))
        assert float(losses[i]) == pytest.approx(float(ref), abs=1e-5)


def test_multi_token_label_words_fall_back_to_option_log_likelihood(tiny):
    cfg = TaskConfig(name="synthetic-sentiment", label_words=[" very bad", " great"])
    obj = build_objective(cfg, tiny.tokenizer, micro_batch_size=4)
    assert not obj.single_token
    examples = synthetic_sentiment(6, 1)
    data = obj.prepare(examples, torch.device("cpu"))
    scores = obj.option_scores(tiny.model, data)
    for i, ex in enumerate(examples):
        prompt = tiny.tokenizer(f"{ex.fields['sentence']} It was").input_ids
        for c, word in enumerate([" very bad", " great"]):
            opt = tiny.tokenizer(word, add_special_tokens=False).input_ids
            ids = torch.tensor([prompt + opt])
            with torch.no_grad():
                logp = torch.log_softmax(tiny.model(input_ids=ids).logits[0].float(), -1)
            ref = sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(opt)) / len(opt)
            assert float(scores[i, c]) == pytest.approx(ref, abs=1e-5)
    metrics = obj.evaluate(tiny.model, data)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0


def test_labels_outside_the_label_words_are_rejected(tiny):
    obj = build_objective(TaskConfig(name="synthetic-sentiment"), tiny.tokenizer, micro_batch_size=4)
    with pytest.raises(ValueError, match="label 2"):
        obj.prepare([Example({"sentence": "a good movie"}, 2)], torch.device("cpu"))
    bad_prompt = build_objective(
        TaskConfig(name="synthetic-sentiment", prompt="{text} It was"), tiny.tokenizer, 4
    )
    with pytest.raises(ValueError, match="text"):
        bad_prompt.prepare(synthetic_sentiment(2, 0), torch.device("cpu"))
