"""The secret index J, the privacy seed it derives from and the secret subset's membership appear in no
file of a run but the private 0600 secret file (and the privacy generators only in 0600 private files), nor
in any error message; an export bundle leaves all of them out. The scanner is shown to find a planted leak
(negative control). Runs here use a fixed privacy seed on purpose (insecure: tests only), so that the scan
can look for it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from paczero.cli import main
from paczero.generators import data_generator, public_subsets
from tests.conftest import SECURE_RUN

J, SEED, M = 45, 987654321, 64
RUN = [
    *SECURE_RUN,  # a later value of a key wins
    "task.pool_size=48",
    f"privacy.subsets={M}",
    f"privacy.secret_index={J}",
    "privacy.secure=false",
    f"privacy.seed={SEED}",
]
MECHANISMS = {
    "zpl": ["privacy.mechanism=paczero-zpl", "train.clip=null"],
    "mi": ["privacy.mechanism=paczero-mi", "privacy.budget=0.3", "train.clip=null"],
    "dp": ["privacy.mechanism=dpzero", "privacy.epsilon=2", "privacy.sampling_rate=0.5", "train.clip=5"],
}


def train(tmp_path: Path, out: Path, items: list[str]) -> int:
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    return main(
        [
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(out),
            *(a for i in items for a in ("--set", i)),
        ]
    )


def secret_patterns(run_dir: Path) -> dict[str, re.Pattern]:
    """What would name J: the key with a number, J's own phrasing, the seed, and S*'s membership row."""
    from paczero.rundir import public_run_config

    cfg = public_run_config(run_dir)
    subsets = public_subsets(cfg, cfg.task.pool_size, data_generator(cfg))
    row = subsets.membership[J].astype(int)
    members = np.flatnonzero(row).tolist()
    literal = {
        "membership list": json.dumps(members),
        "membership row": json.dumps(row.tolist()),
        "membership bits": "".join(map(str, row.tolist())),
        "privacy seed": str(SEED),
    }
    patterns = {name: re.compile(re.escape(text)) for name, text in literal.items()}
    patterns["secret_index with a value"] = re.compile(r"secret_index\W{0,6}\d")
    patterns["J named"] = re.compile(rf"\bJ\s*[=:]\s*{J}\b")
    return patterns


def leaks(root: Path, patterns: dict[str, re.Pattern], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in skip:
            continue
        text = path.read_bytes().decode("latin-1")
        found += [f"{path.relative_to(root)}: {name}" for name, pat in patterns.items() if pat.search(text)]
    return found


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_no_output_file_but_secret_json_names_the_secret(tmp_path, capsys, mechanism):
    run_dir = tmp_path / "run"
    assert train(tmp_path, run_dir, RUN + MECHANISMS[mechanism]) == 0
    captured = capsys.readouterr()
    patterns = secret_patterns(run_dir)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 10 and any("checkpoints" in p.parts for p in files)
    assert leaks(run_dir, patterns, skip=("secret.json",)) == []  # the private secret file itself
    assert not any(p.search(captured.out + captured.err) for p in patterns.values())
    # the scanner can fail: it finds J in secret.json, and a leak planted in a copy of any output
    assert leaks(run_dir, {"secret_index with a value": patterns["secret_index with a value"]}) == [
        "private/secret.json: secret_index with a value"
    ]
    planted = tmp_path / "planted"
    shutil.copytree(run_dir, planted)
    (planted / "summary.json").write_text((planted / "summary.json").read_text() + f'\n"secret_index": {J}')
    assert "summary.json: secret_index with a value" in leaks(planted, patterns, skip=("secret.json",))
    # files that hold or predict the secret are private
    private = [run_dir / "private" / "secret.json", *run_dir.glob("checkpoints/*/privacy.json")]
    assert len(private) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in private)
    assert json.loads((run_dir / "private" / "secret.json").read_text())["secret_index"] == J
    # the release bundle holds neither the secret nor the checkpoints
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(run_dir), "--output", str(bundle), "--allow-insecure"]) == 0
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"summary.json", "privacy.md", "steps.jsonl", "transcript.json", "MANIFEST.json"} <= names
    assert not any(n.startswith(("private", "checkpoints")) for n in names)
    assert any(n.startswith("model/") for n in names)
    assert leaks(bundle, patterns) == []


@pytest.mark.parametrize(
    "bad",
    [
        [f"privacy.secret_index={J}.0"],  # wrong type: the message must not echo the value
        ["privacy.secret_index=99"],  # out of range
        [f"privacy.seed={SEED}.5"],
        [f"privacy.secret_index={J}", "privacy.subsets=7"],
        [f"privacy.secret_index={J}", "privacy.mechanism=paczero-mi"],  # no budget
    ],
)
def test_error_messages_never_name_the_secret(tmp_path, capsys, bad):
    code = train(tmp_path, tmp_path / "o", RUN + bad)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("paczero: error:")
    assert not re.search(rf"\b({J}|99|{SEED})\b", err), err
    assert not (tmp_path / "o").exists()
