"""docs/quickstart.md cannot rot: every code block on the page runs, in order, on a tiny local model.

The folder the blocks run in holds what the page says it holds: ``my-model`` (the tiny OPT model, saved as
a local model folder), ``reviews.jsonl`` and ``reviews-test.csv`` (the example review files). YAML blocks
with ``title="NAME"`` are written to NAME; ``sh`` blocks run line by line through the CLI's ``main``
(``paczero ARGS``); ``python`` blocks run with ``exec``.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from paczero.cli import main
from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "quickstart.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, body) of every fenced block of the page, in order."""
    return FENCE.findall(PAGE.read_text(encoding="utf-8"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    loaded = load_model(ModelConfig(name="tiny-opt", track="full"))
    loaded.model.save_pretrained(tmp_path / "my-model")
    loaded.tokenizer.save_pretrained(tmp_path / "my-model")
    data = ROOT / "configs" / "examples" / "data"
    shutil.copy(data / "reviews-train.jsonl", tmp_path / "reviews.jsonl")
    shutil.copy(data / "reviews-test.csv", tmp_path / "reviews-test.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_page_has_the_five_commands_both_python_ways_and_the_ways_to_load_and_share():
    langs = [lang for lang, _, _ in blocks()]
    assert langs.count("python") == 3 and "yaml" in langs
    five, share = [body for lang, _, body in blocks() if lang == "sh"]
    assert [line.split()[:2] for line in five.splitlines()] == [
        ["paczero", "eval"],
        ["paczero", "train"],
        ["paczero", "eval"],
        ["paczero", "report"],
        ["paczero", "export"],
    ]
    assert "--merge" in share and "--model" in share
    loading = [body for lang, _, body in blocks() if lang == "python"][-1]
    for way in (
        "AutoPeftModelForCausalLM.from_pretrained",
        "PeftModel.from_pretrained",
        "AutoModelForCausalLM",
    ):
        assert way in loading


def test_every_block_of_the_quickstart_runs(workdir, capsys):
    assert (workdir / "my-model" / "config.json").is_file()
    for lang, info, body in blocks():
        if lang == "yaml":
            (name,) = re.findall(r'title="([^"]+)"', info)
            (workdir / name).write_text(body, encoding="utf-8")
        elif lang == "sh":
            for line in body.splitlines():
                argv = shlex.split(line, comments=True)
                assert argv[0] == "paczero", line
                assert main(argv[1:]) == 0, f"{line}\n{capsys.readouterr().err}"
        elif lang == "json":  # the page shows the first records of the data file
            assert (workdir / "reviews.jsonl").read_text(encoding="utf-8").startswith(body)
        elif lang == "python":
            exec(compile(body, f"{PAGE.name} python block", "exec"), {"__name__": "quickstart"})
    printed = capsys.readouterr().out
    assert "dev accuracy by step" in printed and "I(S*; transcript) = 0" in printed
    assert list((workdir / "runs" / "mine").rglob("report.html"))
    assert (workdir / "runs" / "mine-release").is_dir()
    release = workdir / "runs" / "mine-release"
    assert not (release / "private").exists() and not (release / "checkpoints").exists()
    assert list(release.glob("model/*.safetensors"))
    assert (workdir / "runs" / "mine-from-python" / "model").is_dir()
    assert (workdir / "my-adapter" / "adapter_model.safetensors").is_file()
    assert (workdir / "runs" / "mine-merged" / "model" / "model.safetensors").is_file()


def test_a_datasets_dataset_trains_exactly_as_the_same_list_of_records(workdir):
    """The page's claim that ``api.train_model`` takes a ``datasets.Dataset`` as well as a list of dicts."""
    import json

    from datasets import Dataset

    from paczero import api

    lines = (workdir / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]

    def train(pool, test):
        loaded = load_model(ModelConfig(name="tiny-opt", track="full"))  # a plain transformers model
        return api.train_model(
            loaded.model,
            loaded.tokenizer,
            pool,
            test_records=test,
            prompt="Review: {review}\nSentiment:",
            label_words=[" negative", " positive"],
            labels=["negative", "positive"],
            label_field="sentiment",
            overrides=[
                "task.pool_size=32",
                "task.dev_size=16",
                "train.steps=3",
                "privacy.subsets=8",
                "privacy.secure=false",
                "privacy.seed=0",
            ],
        ).summary

    as_list = train(records[:48], records[48:])
    as_dataset = train(Dataset.from_list(records[:48]), Dataset.from_list(records[48:]))
    assert as_dataset == as_list and as_list["steps_run"] == 3
