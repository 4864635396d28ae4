"""Custom tasks from YAML: valid files train; each malformed file fails with its own error, up front."""

import csv
import json
from pathlib import Path

import pytest
import torch

from paczero.cli import main
from paczero.config import ConfigError, load_config
from paczero.tasks.data import synthetic_sentiment
from paczero.tasks.registry import load_splits
from paczero.trainer import Trainer
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = [o for o in TINY if not o.startswith("task.name=")] + ["task.name=custom"]


def write_sentiment(path: Path, n: int, seed: int) -> None:
    """The synthetic sentiment set as a custom file, labels spelled as words."""
    rows = [
        {"text": e.fields["sentence"], "mood": ["neg", "pos"][e.label]} for e in synthetic_sentiment(n, seed)
    ]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["text", "mood"], delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)


def classification(train: Path, test: Path | None = None, *extra: str):
    overrides = [
        *CUSTOM,
        "task.prompt='{text} It was'",
        "task.custom.kind=classification",
        f"task.custom.train={train}",
        "task.custom.label_field=mood",
        "task.custom.labels=[neg, pos]",
        *extra,
    ]
    if test is not None:
        overrides.append(f"task.custom.test={test}")
    return load_config(None, overrides)


def test_a_valid_custom_classification_task_trains(tmp_path):
    write_sentiment(tmp_path / "train.jsonl", 192, 0)
    write_sentiment(tmp_path / "test.csv", 64, 1)
    cfg = classification(
        tmp_path / "train.jsonl",
        tmp_path / "test.csv",
        "privacy.mechanism=paczero-zpl",
        "train.lr=3.0e-2",
        "train.steps=150",
        "train.select_by=dev_accuracy",
    )
    summary = Trainer(cfg).run()
    assert summary["dev"]["selected"]["accuracy"] >= summary["dev"]["start"]["accuracy"] + 0.15
    assert summary["test"]["accuracy"] >= 0.75 and summary["primary_metric"] == "accuracy"


def write_sentiment_as(path: Path, n: int, seed: int) -> Path:
    """The synthetic sentiment set in the format ``path`` names: a JSON array, Parquet, or a save_to_disk
    folder (a DatasetDict with a train split); everything else as :func:`write_sentiment` writes it."""
    if path.suffix not in (".json", ".parquet", ""):
        write_sentiment(path, n, seed)
        return path
    rows = [
        {"text": e.fields["sentence"], "mood": ["neg", "pos"][e.label]} for e in synthetic_sentiment(n, seed)
    ]
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
        return path
    datasets = pytest.importorskip("datasets")
    if path.suffix == ".parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        datasets.DatasetDict(train=datasets.Dataset.from_list(rows)).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".json", ".parquet", ""])
def test_every_format_reads_the_same_examples(tmp_path, suffix):
    write_sentiment_as(tmp_path / f"train{suffix}", 200, 0)
    splits = load_splits(classification(tmp_path / f"train{suffix}").task)
    reference = synthetic_sentiment(200, 0)
    assert len(splits.pool) == 128 and splits.test == []
    by_text = {e.fields["sentence"]: e.label for e in reference}
    assert all(by_text[e.fields["text"]] == e.label for e in splits.pool + splits.dev)


def test_a_valid_custom_generation_task_trains_and_reports_f1(tmp_path):
    rows = [
        {"q": f"how was the movie {i} ?", "ctx": "it was good", "gold": ["good", "very good"]}
        for i in range(90)
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            *CUSTOM,
            "task.prompt='{ctx} question : {q} answer :'",
            "task.custom.kind=generation",
            f"task.custom.train={tmp_path / 'qa.jsonl'}",
            "task.custom.answer_field=gold",
            "task.pool_size=48",
            "task.dev_size=16",
            "task.max_new_tokens=3",
            "train.steps=3",
            "train.eval_every=0",
            "train.select_by=dev_f1",
        ],
    )
    trainer = Trainer(cfg)
    assert trainer.splits.pool[0].answers == ("good", "very good")
    summary = trainer.run()
    assert summary["steps_run"] == 3 and {"f1", "exact_match"} <= set(summary["dev"]["selected"])


LATIN1 = "text\tmood\nfine movie\tpos\ncaf\xe9 movie\tneg\n".encode("latin-1")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("t.jsonl", '{"text": "good", "mood": "pos"}\n{"mood": "neg"}\n', r"t.jsonl:2: missing field 'text'"),
        ("t.jsonl", '{"text": "good", "mood": "pos"}\n{"text": "x"}\n', r"t.jsonl:2: missing field 'mood'"),
        ("t.jsonl", '{"text": "good", "mood": "meh"}\n', r"t.jsonl:1: unknown label 'meh' \(expected one of"),
        ("t.jsonl", '{"text": "  ", "mood": "pos"}\n', r"t.jsonl:1: field 'text' is empty"),
        ("t.jsonl", '{"text": ["a"], "mood": "pos"}\n', r"t.jsonl:1: field 'text' must be text"),
        ("t.jsonl", '{"text": "good", "mood": "pos"}\n\n{oops\n', r"t.jsonl:3: not valid JSON"),
        ("t.jsonl", '["good", "pos"]\n', r"t.jsonl:1: each line must be a JSON object"),
        ("t.jsonl", "\n\n", r"t.jsonl: no records"),
        ("t.tsv", LATIN1, r"t.tsv:3: not UTF-8 text"),
        ("t.tsv", "text\tmood\ngood\tpos\nbad\n", r"t.tsv:3: 1 columns, the header has 2"),
        ("t.tsv", "text\tmood\ngood\tpos\tx\n", r"t.tsv:2: 3 columns, the header has 2"),
        ("t.csv", "words,mood\ngood,pos\n", r"t.csv:1: missing field 'text' \(the header has"),
        ("t.csv", 'text,mood\n"good,pos\n', r"t.csv:\d+: malformed CSV"),
        ("t.csv", "text,mood\ngood,pos\n,neg\n", r"t.csv:3: field 'text' is empty"),
        ("t.csv", "text,text\ngood,pos\n", r"t.csv:1: header repeats a column name"),
    ],
)
def test_each_malformed_file_gives_its_specific_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as err:
        load_splits(classification(path).task)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.custom.labels=[neg, pos, meh]"], "3 values but task.label_words has 2"),
        (
            ["task.custom.labels=null", "task.prompt='{text}'"],
            r"t.jsonl:1: unknown label '(neg|pos)' \(expected an integer 0..1\)",
        ),
    ],
)
def test_label_mapping_problems(tmp_path, overrides, message):
    write_sentiment(tmp_path / "t.jsonl", 4, 0)
    with pytest.raises(ValueError, match=message):
        load_splits(classification(tmp_path / "t.jsonl", None, *overrides).task)


def test_generation_answers_must_be_present(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"q": "a", "gold": "x"}\n{"q": "b", "gold": ["", " "]}\n')
    cfg = load_config(
        None,
        ["task.name=custom", "task.prompt='{q}'", "task.custom.kind=generation", f"task.custom.train={path}"],
    ).task
    with pytest.raises(ValueError, match=r"qa.jsonl:1: missing field 'answer'"):
        load_splits(cfg)
    cfg.custom.answer_field = "gold"
    with pytest.raises(ValueError, match=r"qa.jsonl:2: field 'gold' is empty"):
        load_splits(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.name=custom"], "task.custom .* is required"),
        (["task.custom.kind=classification", "task.custom.train=x.jsonl"], "only for, task.name: custom"),
        (["task.name=custom", "task.custom.kind=regression", "task.custom.train=x.jsonl"], "kind must be"),
        (["task.name=custom", "task.custom.kind=classification"], "exactly one source"),
        (["task.name=custom", "task.custom.train=x.xlsx"], "unknown format"),
        (["task.name=custom", "task.custom.train=x.csv"], "needs task.prompt"),
    ],
)
def test_bad_custom_configs_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_nothing_is_trained_on_a_partially_read_file(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    write_sentiment(train, 200, 0)
    with train.open("a") as fh:
        fh.write('{"text": "a good movie", "mood": "great"}\n')  # the last line is bad
    config = tmp_path / "task.yaml"
    config.write_text(
        "task:\n  name: custom\n  prompt: '{text} It was'\n"
        f"  custom:\n    train: {train}\n    label_field: mood\n    labels: [neg, pos]\n"
    )
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--output-dir", str(out)]
    assert main([*args, *[a for o in TINY[1:] for a in ("--set", o)]]) == 1  # ran, and failed on the data
    assert f"{train}:201: unknown label 'great'" in capsys.readouterr().err
    assert not out.exists()  # no steps, no model, no summary


@pytest.mark.parametrize("name", ["custom-reviews", "custom-qa"])
def test_example_configs_run(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # their data paths are relative to the repository root
    cfg = load_config(
        ROOT / "configs" / "examples" / f"{name}.yaml", ["train.steps=2", "train.progress=false"]
    )
    summary = Trainer(cfg).run()
    assert summary["steps_run"] == 2 and summary["primary_metric"] in summary["dev"]["selected"]


def test_multiple_choice_options_come_from_each_record(tmp_path):
    """Label words with placeholders: each example scores its own options by mean token log-probability."""
    rows = [
        {"premise": "the movie was great", "a": "i loved it", "b": "i hated it", "label": 0},
        {"premise": "the film was dull", "a": "it was good fun", "b": "boring", "label": 1},
    ] * 8
    path = tmp_path / "choices.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            *CUSTOM,
            "task.prompt='{premise} so'",
            "task.label_words=[' {a}', ' {b}']",
            f"task.custom.train={path}",
            "task.pool_size=8",
            "task.dev_size=4",
            "task.test_size=0",
            "train.steps=2",
            "train.eval_every=0",
        ],
    )
    trainer = Trainer(cfg)
    obj, tok, model = trainer.objective, trainer.loaded.tokenizer, trainer.loaded.model
    assert obj.templated and not obj.single_token
    examples = trainer.splits.pool[:3]
    scores = obj.option_scores(model, obj.prepare(examples, torch.device("cpu")))
    for i, ex in enumerate(examples):
        prompt = tok(f"{ex.fields['premise']} so").input_ids
        for c, key in enumerate(("a", "b")):
            option = tok(" " + ex.fields[key], add_special_tokens=False).input_ids
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + option])).logits[0], -1)
            ref = sum(float(logp[len(prompt) - 1 + t, o]) for t, o in enumerate(option)) / len(option)
            assert float(scores[i, c]) == pytest.approx(ref, abs=1e-5)
    assert trainer.run()["steps_run"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"premise": "x", "a": "good", "label": 0}\n')
    cfg.task.custom.train = str(bad)
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing field 'b'"):
        load_splits(cfg.task)


def test_a_json_array_file_trains_from_the_command_line(tmp_path, capsys):
    write_sentiment_as(tmp_path / "train.json", 200, 0)
    config = tmp_path / "task.yaml"
    config.write_text(
        "task:\n  name: custom\n  prompt: '{text} It was'\n"
        f"  custom:\n    train: {tmp_path / 'train.json'}\n    label_field: mood\n    labels: [neg, pos]\n"
    )
    args = ["train", "--config", str(config), "--output-dir", str(tmp_path / "run"), "--set", "train.steps=2"]
    assert main([*args, *[a for o in TINY[1:] for a in ("--set", o)]]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps_run"] == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '[{"text": "good", "mood": "pos"},\n {"text": "bad", "mood": "meh"}]',
            r"t.json row 1: unknown label 'meh'",
        ),
        ('[{"text": "good", "mood": "pos"}, ["bad"]]', r"t.json row 1: each record must be a JSON object"),
        ('[{"text": "good", "mood": "pos"},\n {oops}]', r"t.json:2: not valid JSON"),
        (
            '{"text": "good", "mood": "pos"}\n{"mood": "neg"}\n',
            r"t.json:2: missing field 'text'",
        ),  # JSON Lines
        ("[]", r"t.json: no records"),
    ],
)
def test_json_files_hold_an_array_or_lines_and_errors_name_the_row(tmp_path, content, message):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_splits(classification(tmp_path / "t.json").task)


def test_parquet_and_folder_errors_name_the_file_the_row_and_the_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"text": "good", "mood": "pos"}, {"text": "", "mood": "neg"}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "t.parquet"))
    with pytest.raises(ValueError, match=r"t.parquet row 1: field 'text' is empty"):
        load_splits(classification(tmp_path / "t.parquet").task)
    datasets.DatasetDict(dev=datasets.Dataset.from_list(rows)).save_to_disk(str(tmp_path / "folder"))
    with pytest.raises(ValueError, match=r"folder: no split 'train' \(it has dev\)"):
        load_splits(classification(tmp_path / "folder").task)
    with pytest.raises(ValueError, match=r"folder \[dev\] row 1: field 'text' is empty"):
        load_splits(classification(tmp_path / "folder", None, "task.custom.train_split=dev").task)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a datasets.save_to_disk folder"):
        load_splits(classification(tmp_path / "empty").task)
