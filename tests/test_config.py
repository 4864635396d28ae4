"""Configs: inheritance, overrides, and errors for unknown keys and wrong types."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import paczero
from paczero.config import ConfigError, apply_override, build_config, load_config, load_yaml_tree


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_build_and_overrides_apply_with_types():
    cfg = load_config(
        None,
        [
            "train.lr=5e-4",
            "train.steps=7",
            "privacy.mechanism=paczero-mi",
            "privacy.budget=0.33",
            "model.name=tiny-llama",
            "train.clip=null",
            "task.label_words=[' bad', ' good']",
        ],
    )
    assert cfg.train.lr == 5e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.steps == 7 and cfg.train.clip is None
    assert cfg.privacy.budget == 0.33 and cfg.model.name == "tiny-llama"
    assert cfg.task.label_words == [" bad", " good"]


def test_unknown_keys_are_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'train.steps'"):
        load_config(None, ["train.stpes=3"])
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        build_config({"bogus": {}})


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=1.5", "train.steps must be of type int"),
        ("train.steps=abc", "train.steps must be of type int"),
        ("train.progress=3", "train.progress must be of type bool"),
        ("train.lr=fast", "train.lr must be of type float"),
        ("task.label_words=great", "task.label_words must be a list"),
        ("train", "must look like key.sub=value"),
    ],
)
def test_wrong_types_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_validation_errors_name_the_key():
    with pytest.raises(ConfigError, match="paczero-mi needs privacy.budget"):
        load_config(None, ["privacy.mechanism=paczero-mi"])
    with pytest.raises(ConfigError, match="even"):
        load_config(None, ["privacy.subsets=5"])
    with pytest.raises(ConfigError, match="unknown mechanism"):
        load_config(None, ["privacy.mechanism=nope"])
    with pytest.raises(ConfigError, match="secret_index"):
        load_config(None, ["privacy.subsets=4", "privacy.secret_index=4"])


def test_base_inheritance_merges_deeply_and_later_wins(tmp_path):
    write(tmp_path / "base.yaml", "train:\n  lr: 1.0e-3\n  steps: 10\nmodel:\n  name: tiny-opt\n")
    (tmp_path / "cells").mkdir()
    child = write(tmp_path / "cells" / "a.yaml", "base: ../base.yaml\ntrain:\n  steps: 20\n")
    tree = load_yaml_tree(child)
    assert tree == {"train": {"lr": 1e-3, "steps": 20}, "model": {"name": "tiny-opt"}}
    cfg = load_config(child, ["train.steps=30"])
    assert (cfg.train.lr, cfg.train.steps) == (1e-3, 30)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "bad.yaml", "train: [1,\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n"))


def test_secret_index_is_redacted_when_serialised():
    cfg = load_config(None, ["privacy.subsets=8", "privacy.secret_index=3"])
    assert cfg.privacy.secret_index == 3
    assert cfg.to_dict()["privacy"]["secret_index"] == "<redacted>"


def test_override_creates_nested_sections():
    tree = {}
    apply_override(tree, "a.b.c=1")
    assert tree == {"a": {"b": {"c": 1}}}


def test_reading_a_config_imports_no_model_library():
    """Reading and checking a config (every mechanism's own checks included) loads neither torch,
    transformers nor peft."""
    src = str(Path(paczero.__file__).resolve().parents[1])  # the paczero under test, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys, paczero.config as c; "
        "c.build_config({'privacy': {'mechanism': 'paczero-mi', 'budget': 0.3}}); "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
