"""Hostile and bad input: every case gives one clear message and a non-zero exit code, and leaves an existing
run's files byte-identical (most cases even aim at that run with ``--overwrite``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from paczero.cli import main
from tests.conftest import TINY

RUN = [*TINY, "task.pool_size=32", "task.dev_size=16", "task.test_size=16", "train.steps=3"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run, and copies of it broken in one way each (their own files must not change either)."""
    root = tmp_path_factory.mktemp("hostile")
    good = root / "run"
    empty = root / "empty.yaml"
    empty.write_text("{}\n")
    assert main(["train", "--config", str(empty), "--output-dir", str(good), *sets(*RUN)]) == 0
    variants = {}
    for name in ("corrupt_checkpoint", "edited_config", "no_secret", "tampered"):
        variants[name] = root / name
        shutil.copytree(good, variants[name])
    state = next((variants["corrupt_checkpoint"] / "checkpoints").iterdir()) / "state.json"
    state.write_text(state.read_text()[: len(state.read_text()) // 2])
    config = variants["edited_config"] / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.0001", "lr: 0.5"))
    (variants["no_secret"] / "private" / "secret.json").unlink()
    steps = variants["tampered"] / "steps.jsonl"
    steps.write_text(steps.read_text().replace('"update": [1.0]', '"update": [-1.0]', 1))
    files = {
        "malformed.yaml": "train: [1,\n",
        "list.yaml": "- a\n- b\n",
        "tiny.yaml": "{}\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "not_empty").mkdir()
    (root / "not_empty" / "x").write_text("x")
    return {"root": root, "run": good, **variants}


TRAIN = ["train", "--config", "{root}/tiny.yaml", "--output-dir", "{run}", "--overwrite"]
CASES = [
    # (id, argv, message) — argv placeholders: {root}, {run} and the broken copies
    (
        "malformed YAML",
        ["train", "--config", "{root}/malformed.yaml", "--output-dir", "{run}", "--overwrite"],
        "not valid YAML",
    ),
    (
        "YAML not a mapping",
        ["train", "--config", "{root}/list.yaml", "--output-dir", "{run}", "--overwrite"],
        "top level must be a mapping",
    ),
    (
        "missing config file",
        ["train", "--config", "{root}/nope.yaml", "--output-dir", "{run}", "--overwrite"],
        "config file not found",
    ),
    ("unknown key", [*TRAIN, *sets("train.stpes=3")], "did you mean 'train.steps'"),
    ("unknown section", [*TRAIN, *sets("privcy.budget=1")], "did you mean 'privacy'"),
    ("override without =", [*TRAIN, *sets("train")], "must look like key.sub=value"),
    ("int expected", [*TRAIN, *sets("train.steps=1.5")], "train.steps must be of type int"),
    ("bool expected", [*TRAIN, *sets("train.progress=3")], "train.progress must be of type bool"),
    ("float expected", [*TRAIN, *sets("train.lr=fast")], "train.lr must be of type float"),
    (
        "negative budget",
        [*TRAIN, *sets("privacy.mechanism=paczero-mi", "privacy.budget=-1")],
        "privacy.budget must be positive",
    ),
    (
        "zero budget",
        [*TRAIN, *sets("privacy.mechanism=paczero-mi", "privacy.budget=0")],
        "privacy.budget must be positive",
    ),
    ("MI without budget", [*TRAIN, *sets("privacy.mechanism=paczero-mi")], "paczero-mi needs privacy.budget"),
    ("M odd", [*TRAIN, *sets("privacy.subsets=7")], "must be even and >= 2"),
    ("M < 2", [*TRAIN, *sets("privacy.subsets=0")], "must be even and >= 2"),
    (
        "N < M/2",
        [*TRAIN, *sets(*RUN, "task.pool_size=7", "privacy.subsets=16")],
        "task.pool_size (N = 7) must be at least privacy.subsets/2",
    ),
    ("zero steps", [*TRAIN, *sets("train.steps=0")], "train.steps must be at least 1"),
    ("negative checkpoint cadence", [*TRAIN, *sets("train.checkpoint_every=-1")], "train.checkpoint_every"),
    ("unknown mechanism", [*TRAIN, *sets("privacy.mechanism=nope")], "unknown mechanism 'nope'"),
    ("missing data", [*TRAIN, *sets(*RUN, "task.name=sst2", "task.data_dir={root}/no-data")], "not found"),
    ("missing model", [*TRAIN, *sets(*RUN, "model.name={root}/no-model")], "does not exist"),
    (
        "run dir holds another run",
        ["train", "--config", "{root}/tiny.yaml", "--output-dir", "{run}", *sets(*RUN)],
        "already holds a run",
    ),
    (
        "output dir is a file",
        ["train", "--config", "{root}/tiny.yaml", "--output-dir", "{root}/tiny.yaml"],
        "is a file",
    ),
    ("train without output dir", ["train", "--config", "{root}/tiny.yaml"], "needs --output-dir"),
    ("resume a dir without a run", ["train", "--resume", "{root}/not_empty"], "nothing to resume"),
    (
        "resume into another dir",
        ["train", "--resume", "{run}", "--output-dir", "{root}/other"],
        "--output-dir must be that directory",
    ),
    (
        "resume with a changed budget",
        ["train", "--resume", "{run}", *sets("privacy.subsets=8")],
        "resume refused: the config differs",
    ),
    (
        "resume with a changed lr",
        ["train", "--resume", "{run}", *sets("train.lr=0.5")],
        "train.lr (0.0001 -> 0.5)",
    ),
    ("resume with config.yaml edited", ["train", "--resume", "{edited_config}"], "resume refused"),
    ("resume an unreadable checkpoint", ["train", "--resume", "{corrupt_checkpoint}"], "is unreadable"),
    ("resume without secret.json", ["train", "--resume", "{no_secret}"], "secret.json is missing"),
    (
        "replay a tampered transcript",
        ["replay", "--transcript", "{tampered}", "--output-dir", "{root}/rep"],
        "hash chain broken",
    ),
    (
        "replay into a non-empty dir",
        ["replay", "--transcript", "{run}", "--output-dir", "{root}/not_empty"],
        "not an empty directory",
    ),
    (
        "export into a non-empty dir",
        ["export", "--run", "{run}", "--output", "{root}/not_empty"],
        "not an empty directory",
    ),
    ("export a tampered run", ["export", "--run", "{tampered}", "--output", "{root}/bundle"], "refused"),
    ("eval a missing run", ["eval", "--run", "{root}/nowhere"], "config file not found"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_message_and_touches_no_run(runs, capsys, case):
    _, argv, message = case
    fill = {k: str(v) for k, v in runs.items()}
    argv = [a.format(**fill) for a in argv]
    dirs = [v for k, v in runs.items() if k != "root"]
    before = {d: snapshot(d) for d in dirs}
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paczero: error:"), err  # one message, no traceback
    assert message.format(**fill) in lines[0], lines[0]
    assert all(snapshot(d) == before[d] for d in dirs)
    assert not any((runs["root"] / name).exists() for name in ("new", "other", "rep", "bundle"))


def test_the_table_has_at_least_twenty_cases():
    print(f"hostile-input cases tried: {len(CASES)}")
    assert len(CASES) >= 20


def test_nonfinite_losses_are_zeroed_counted_and_reported(tmp_path, capsys):
    """Exploding weights make every loss non-finite: the documented rule (zo.two_point_estimate) sets those
    per-example values to 0, counts them per step, the run completes, and the CLI warns once."""
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(out),
            *sets(*RUN, "train.lr=1.0e30", "privacy.mechanism=paczero-zpl"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    records = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    assert records[0]["nonfinite"] == 0 and all(r["nonfinite"] == 32 for r in records[1:])
    assert "non-finite per-example loss differences were set to 0" in err
