"""The wheel carries the data sets and the demo config, so `pip install` needs nothing beside it."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from paczero.config import load_config
from paczero.configs import resolve_config, shipped_configs
from paczero.tasks.data import packaged_data

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = [
    "paczero/data/README.md",
    "paczero/data/sst2/train.tsv",
    "paczero/data/sst2/dev.tsv",
    "paczero/data/squad/train.jsonl",
    "paczero/data/squad/dev.jsonl",
    "paczero/configs/demo.yaml",
    "paczero/configs/config.schema.json",
]


def test_the_wheel_holds_the_data_and_the_demo_config(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    source = tmp_path / "src-copy"  # build from a copy: the checkout gets no build/ or egg-info
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("paczero-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGED) <= names
    assert "paczero/api.py" in names and "paczero/configs/__init__.py" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: hub" in metadata


def test_the_packaged_files_are_the_ones_read():
    assert (packaged_data("sst2") / "train.tsv").stat().st_size == 3806081  # all of GLUE SST-2
    assert shipped_configs()["demo"] == resolve_config("demo")
    cfg = load_config(resolve_config("demo"))
    assert cfg.task.name == "sst2" and cfg.task.data_dir is None and cfg.model.name == "smollm2-135m"
    assert load_config(ROOT / "configs" / "demo.yaml") == cfg  # the checkout's path names the same demo


def test_a_config_name_that_is_neither_file_nor_shipped_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped config"):
        resolve_config("demoo")
    mine = tmp_path / "demo.yaml"
    mine.write_text("task: {name: synthetic-sentiment}\n")
    assert resolve_config(mine) == mine  # a file that exists always wins
