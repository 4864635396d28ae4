"""The command line drives real runs: train writes every output, eval reloads them, errors exit non-zero."""

import argparse
import ast
import json
import logging
from pathlib import Path

import pytest

from paczero import __version__, channel
from paczero.cli import build_parser, configure_logging, main
from paczero.commands import UsageError, run_dir
from tests.conftest import TINY

SRC = Path(__file__).resolve().parents[1] / "src" / "paczero"


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
    "argv, message, code",
    [
        (["--set", "train.stpes=3"], "did you mean 'train.steps'", 2),  # a config error: nothing ran
        (["--set", "privacy.subsets=7"], "even", 2),
        (["--set", "task.data_dir=/nonexistent", "--set", "task.name=sst2"], "not found", 1),  # a failure
    ],
)
def test_bad_input_exits_with_a_clear_message(tmp_path, capsys, argv, message, code):
    cfg = write_config(tmp_path)
    got = main(["train", "--config", str(cfg), "--output-dir", str(tmp_path / "o"), *sets(*TINY), *argv])
    assert got == code
    err = capsys.readouterr().err
    assert message in err and err.startswith("paczero: error:")


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
        (["eval", "--config", "no-such-config"], "neither a file nor a shipped config"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert main(["eval", "--run", str(out), "--model", str(tmp_path / "nowhere")]) == 1  # a runtime failure
    assert "no saved model directory" in capsys.readouterr().err


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)subcommand's parser by its full name (``audit mia``)."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = {}
    for name, sub in action.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        found.update({f"{name} {k}": v for k, v in subcommands(sub).items()} if nested else {name: sub})
    return found


def test_version_and_help_follow_the_usual_conventions(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"paczero {__version__}"
    assert main(["--help"]) == 0
    assert "`" not in capsys.readouterr().out  # no raw reST in the top-level help
    commands = subcommands(build_parser())
    assert {"train", "eval", "export", "report", "audit mia", "audit transcript"} <= set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        assert parser.description and f"example:\n  paczero {name} " in text, name


@pytest.mark.parametrize("argv", [["privacy"], ["privacy", "--mi", "1", "--epsilon", "1"]])
def test_usage_errors_exit_2_with_the_usual_error_line(capsys, argv):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("paczero: error: give exactly one of --mi or --epsilon")


def test_a_programming_error_is_not_reported_as_a_user_error(monkeypatch):
    def broken(*_args):
        raise KeyError("a bug")

    monkeypatch.setattr(channel, "attack_bound_from_mi", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["privacy", "--mi", "0.3"])


def test_destinations_take_output_dir_or_output_and_runs_take_run_or_a_positional(tmp_path):
    parser = build_parser()
    for flag in ("--output-dir", "--output"):
        args = parser.parse_args(["export", "--run", "r", flag, "d"])
        assert args.output_dir == "d"
    for argv in (["train"], ["compare"], ["sweep", "grid.yaml"], ["replay", "--run", "r"]):
        assert parser.parse_args([*argv, "--output", "d"]).output_dir == "d"
    assert run_dir(parser.parse_args(["report", "--run", "r"])) == run_dir(parser.parse_args(["report", "r"]))
    assert parser.parse_args(["replay", "--transcript", "t", "--output-dir", "o"]).run == "t"  # old spelling
    with pytest.raises(UsageError):
        run_dir(parser.parse_args(["report", "r", "--run", "s"]))


@pytest.fixture
def restored_logging(monkeypatch):
    """The logging and progress settings a command changes, put back afterwards."""
    import transformers

    for name in ("TRANSFORMERS_VERBOSITY", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    levels = {name: logging.getLogger(name).level for name in ("paczero", "huggingface_hub")}
    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers.logging.set_verbosity(verbosity)
    configure_logging(0)
    (transformers.logging.enable_progress_bar if bars else transformers.logging.disable_progress_bar)()


@pytest.mark.parametrize(
    "flags, level, bars", [([], "WARNING", False), (["-v"], "INFO", True), (["-q"], "ERROR", False)]
)
def test_verbosity_sets_paczero_transformers_and_hub_logging_and_third_party_bars(
    capsys, restored_logging, flags, level, bars
):
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled

    assert main([*flags, "privacy", "--mi", "0.3"]) == 0
    expected = getattr(logging, level)
    assert logging.getLogger("paczero").level == expected
    assert transformers.logging.get_verbosity() == expected
    assert logging.getLogger("huggingface_hub").level == expected
    assert are_progress_bars_disabled() is not bars and transformers.logging.is_progress_bar_enabled() is bars
    logging.getLogger("paczero.models.loaders").info("looked in the cache")
    assert ("looked in the cache" in capsys.readouterr().err) is (level == "INFO")
    main(["privacy", "-v", "--mi", "0.3"])  # after the command as well
    assert logging.getLogger("paczero").level == logging.INFO


def test_the_gguf_progress_bar_follows_the_third_party_setting():
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from paczero.models.loaders import _gguf_progress_setting

    for enabled in (False, True):
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
        with _gguf_progress_setting():
            assert gguf_utils.tqdm(range(2)).disable is not enabled
    assert gguf_utils.tqdm(range(2)).disable is False  # restored afterwards


def function_lengths(source: str) -> dict[str, int]:
    """Lines of every function (decorators and docstring included) in a module's source."""
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return {n.name: n.end_lineno - min([n.lineno, *(d.lineno for d in n.decorator_list)]) + 1 for n in nodes}


def test_cli_functions_are_short_and_declare_set_once():
    source = (SRC / "cli.py").read_text()
    assert {name: n for name, n in function_lengths(source).items() if n > 60} == {}
    assert source.count('"--set"') == 1
    planted = "def long():\n" + "    x = 1\n" * 60  # negative control: 61 lines
    assert function_lengths(planted) == {"long": 61}
