"""The command line drives real runs: train writes every output, eval reloads them, errors exit non-zero."""

import json

import pytest

from paczero.cli import main
from tests.conftest import TINY


def write_config(tmp_path, text=""):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize("track", ["lora", "full"])
def test_train_writes_every_output_and_eval_reloads_the_model(tmp_path, capsys, track):
    out = tmp_path / "run"
    cfg = write_config(tmp_path, "train:\n  steps: 4\n  lr: 3.0e-2\n  eval_every: 2\n")
    code = main(
        ["train", "--config", str(cfg), "--output-dir", str(out), *sets(*TINY, f"model.track={track}")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "dev accuracy" in printed and "Privacy statement" in printed
    for name in ("summary.json", "steps.jsonl", "config.yaml", "privacy.md", "private/secret.json"):
        assert (out / name).is_file()
    model_file = "adapter_model.safetensors" if track == "lora" else "model.safetensors"
    assert (out / "model" / model_file).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert main(["eval", "--run", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert results["dev"]["loss"] == pytest.approx(summary["dev"]["selected"]["loss"], abs=1e-5)
    if track == "lora":  # a larger test sample may be asked for; settings that change the task may not
        assert main(["eval", "--run", str(out), "--split", "test", *sets("task.test_size=200")]) == 0
        larger = json.loads(capsys.readouterr().out)
        assert larger.keys() == {"test"} and larger["test"] != results["test"]
        assert main(["eval", "--run", str(out), *sets("task.data_seed=5")]) != 0
        assert "only task.dev_size, task.test_size, train.micro_batch_size" in capsys.readouterr().err


def test_privacy_conversions_print_both_directions(capsys):
    assert main(["privacy", "--mi", "0.33"]) == 0
    out = capsys.readouterr().out
    assert "p* = 0.8818" in out and "matched ε = 2.010" in out
    assert main(["privacy", "--epsilon", "1"]) == 0
    assert "matched MI = 0.1109" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "train.stpes=3"], "did you mean 'train.steps'"),
        (["--set", "privacy.subsets=7"], "even"),
        (["--set", "task.data_dir=/nonexistent", "--set", "task.name=sst2"], "not found"),
    ],
)
def test_bad_input_exits_with_a_clear_message(tmp_path, capsys, argv, message):
    cfg = write_config(tmp_path)
    code = main(["train", "--config", str(cfg), "--output-dir", str(tmp_path / "o"), *sets(*TINY), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_eval_of_a_base_model_from_a_config_is_the_zero_shot_start_of_a_run(tmp_path, capsys):
    cfg = write_config(tmp_path, "train:\n  steps: 1\n  eval_every: 1\n")
    assert main(["eval", "--config", str(cfg), *sets(*TINY)]) == 0
    zero_shot = json.loads(capsys.readouterr().out)
    assert set(zero_shot) == {"dev", "test"}
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--output-dir", str(out), *sets(*TINY)]) == 0
    printed = capsys.readouterr().out
    assert "step 0 = the model before training" in printed and "I(S*; transcript) = 0" in printed
    summary = json.loads((out / "summary.json").read_text())
    start = summary["dev"]["history"][0]
    assert start["step"] == 0 and start["accuracy"] == pytest.approx(zero_shot["dev"]["accuracy"])
    assert start["loss"] == pytest.approx(zero_shot["dev"]["loss"], rel=1e-5)
    assert main(["eval", "--config", str(cfg), "--model", "tiny-llama", "--split", "dev", *sets(*TINY)]) == 0
    other = json.loads(capsys.readouterr().out)
    assert set(other) == {"dev"} and other["dev"]["loss"] != pytest.approx(zero_shot["dev"]["loss"])
    for argv, message in [
        (["eval"], "one of --run"),
        (["eval", "--run", str(out), "--config", str(cfg)], "one of --run"),
        (["eval", "--run", str(out), "--model", "tiny-llama"], "--model goes with --config"),
        (["eval", "--config", "no-such-config"], "neither a file nor a shipped config"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
