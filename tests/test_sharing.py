"""A fine-tuned model leaves paczero: merged weights plain transformers loads, adapters peft loads with their
real base, a Hub model card with eval results, and a push to the Hub (with the upload call replaced)."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from paczero.cli import main
from paczero.hub import hub_path
from paczero.models.config import SMOLLM2_HUB_ID, ModelConfig, hub_id
from paczero.models.loaders import load_finetuned, load_model, save_model
from paczero.report.card import card_data, model_card
from paczero.rundir import public_run_config
from tests.conftest import TINY

RUN = [*TINY, "train.steps=4", "train.eval_every=2", "train.lr=3.0e-2"]


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharing") / "run"
    assert main(["train", "--output-dir", str(out), *sets(*RUN)]) == 0
    return out


@pytest.fixture(scope="module")
def merged(run):
    bundle = run.parent / "merged"
    assert (
        main(["export", "--run", str(run), "--output-dir", str(bundle), "--merge", "--allow-insecure"]) == 0
    )
    return bundle


def test_a_merged_export_loads_with_plain_transformers_without_paczero_or_peft(merged):
    files = {p.name for p in (merged / "model").iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json"} <= files
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files
    script = (
        "import sys\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(merged / 'model')!r})\n"
        f"t = AutoTokenizer.from_pretrained({str(merged / 'model')!r})\n"
        "m(**t(['a good movie'], return_tensors='pt'))\n"
        "assert not [n for n in sys.modules if n.split('.')[0] in ('paczero', 'peft')], 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_paczero_eval_of_the_merged_model_scores_the_runs_test_metrics_again(run, merged, capsys):
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--model", str(merged / "model")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
    assert again["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-4)
    assert main(["eval", "--run", str(merged), "--split", "test"]) == 0  # the bundle alone: same scores
    assert json.loads(capsys.readouterr().out)["test"] == again["test"]


def test_the_merged_weights_are_the_adapter_folded_in_and_not_the_base(run, merged):
    cfg = public_run_config(run)
    ids = torch.tensor([[2, 15, 27, 31, 9]])
    with torch.no_grad():
        tuned = load_finetuned(cfg.model, run / "model").model(input_ids=ids).logits
        folded = load_finetuned(cfg.model, merged / "model").model(input_ids=ids).logits
        base = load_model(cfg.model).model(input_ids=ids).logits
    torch.testing.assert_close(folded, tuned, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, tuned, atol=1e-5)  # the control: training moved the outputs


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft 0.21 on transformers 5
def test_an_adapter_loads_with_peft_alone_and_gives_paczeros_outputs(run):
    from peft import PeftModel

    cfg = public_run_config(run)
    base = load_model(dataclasses.replace(cfg.model, track="full"))
    peft_model = PeftModel.from_pretrained(base.model, str(run / "model"))
    ids = torch.tensor([[2, 15, 27, 31, 9]])
    with torch.no_grad():
        ours = load_finetuned(cfg.model, run / "model").model(input_ids=ids).logits
        theirs = peft_model(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours)


def test_adapters_name_the_hub_id_of_a_built_in_alias_and_keep_a_path(tmp_path):
    assert hub_id("smollm2-135m") == SMOLLM2_HUB_ID == hub_id("SmolLM2-135M-Instruct".lower())
    assert hub_id("./models/mine") == "./models/mine" and hub_id("org/model") == "org/model"
    loaded = load_model(ModelConfig(name="tiny-opt"))
    for name, expected in (("smollm2-135m", SMOLLM2_HUB_ID), ("my-model", "my-model")):
        renamed = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, name=name))
        save_model(renamed, tmp_path / name)
        adapter = json.loads((tmp_path / name / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == expected


def test_the_card_carries_base_model_data_eval_results_guarantee_and_version(run, merged):
    summary = json.loads((run / "summary.json").read_text())
    card = ModelCard.load(run / "model" / "README.md")
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("test", "accuracy")] == summary["test"]["accuracy"]
    assert results[("validation", "loss")] == summary["dev"]["selected"]["loss"]
    assert card.data.library_name == "peft" and card.data.paczero_version == summary["paczero_version"]
    assert card.data.base_model is None  # tiny-opt is no Hub model: no base_model the Hub would reject
    assert "no privacy guarantee" in card.text.split("##")[0]
    merged_card = ModelCard.load(merged / "model" / "README.md")
    assert merged_card.data.library_name == "transformers" and "merged" in merged_card.data.tags
    smollm = {**summary, "model": "smollm2-135m", "task": "sst2"}
    data = card_data(smollm)
    assert data.base_model == SMOLLM2_HUB_ID and data.datasets == ["stanfordnlp/sst2"]
    private = {**summary, "privacy": {**summary["privacy"], "private": True}}
    sentence = model_card(private).split("\n\n")[2]  # after the front matter and the title
    assert "I(S*; Y_1:T) = 0" in sentence and "paczero-zpl" in sentence


def test_push_to_hub_uploads_the_bundle_model_at_the_top(run, tmp_path, monkeypatch, capsys):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["repo"] = (repo_id, kwargs)
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        calls["files"] = {op.path_in_repo: op.path_or_fileobj for op in operations}

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    bundle = tmp_path / "bundle"
    argv = ["export", "--run", str(run), "--output", str(bundle), "--allow-insecure", "--push-to-hub", "me/m"]
    assert main(argv) == 0
    assert calls["repo"] == ("me/m", {"private": False, "exist_ok": True, "repo_type": "model"})
    files = calls["files"]
    assert {"README.md", "adapter_model.safetensors", "release/summary.json", "release/MANIFEST.json"} <= set(
        files
    )
    assert not [f for f in files if "private" in f or "checkpoint" in f or "secret" in f]
    assert len(files) == len(json.loads((bundle / "MANIFEST.json").read_text())["files"]) + 1
    assert "pushed to https://huggingface.co/me/m" in capsys.readouterr().out
    assert (
        hub_path("model/config.json") == "config.json"
        and hub_path("report/r.html") == "release/report/r.html"
    )
    refused = ["export", "--run", str(run), "--output-dir", str(tmp_path / "b2"), "--transcript-only"]
    assert main([*refused, "--push-to-hub", "me/m"]) == 2
    assert main([*refused, "--merge"]) == 2


def test_a_failed_push_is_one_line_and_exit_1(run, tmp_path, monkeypatch, capsys):
    class ConnectError(Exception):  # what the Hub client raises offline: not an OSError
        pass

    def offline(self, repo_id, **kwargs):
        raise ConnectError("Name or service not known")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    argv = ["export", "--run", str(run), "--output-dir", str(tmp_path / "b"), "--allow-insecure"]
    assert main([*argv, "--push-to-hub", "me/m"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paczero: error: could not push") and err.count("\n") == 1
    assert (tmp_path / "b" / "MANIFEST.json").is_file()  # the bundle itself is written first
