"""Release invariance: what a user may publish is a function of public inputs and released values only.

One public config is trained under several secret indices with the same deterministic privacy randomness
(insecure: for this test only). Every run is then audited (`paczero audit mia`), reported and exported as a
user would. For PACZero-ZPL every byte of every exported file must be identical across the indices. For
PACZero-MI and the DP baselines, trained under different secret indices and different privacy randomness,
the bundles may differ only in the released values of the transcript and in what is computed from them;
those fields are named below and everything else must be identical.

On the first version of paczero this test failed on every mechanism: ``audit/mia.json`` and ``audit/mia.md``
(computed against the ground truth) were exported and shown in ``report/report.html``; ``steps.jsonl`` and
``summary.json`` carried per-step wall-clock (``seconds``, ``seconds_per_step``, ``wall_time_s``), which for
DP follows the secret Poisson batch; and ``export`` had no way to ship an insecure run on purpose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from paczero.cli import main
from paczero.rundir import LOCK

M = 8
SECRETS = (0, 3, 6)
PUBLIC = [
    "task.name=synthetic-sentiment",
    "task.pool_size=32",
    "task.dev_size=16",
    "task.test_size=16",
    "model.name=tiny-opt",
    "model.track=lora",
    "train.steps=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "train.lr=3.0e-2",
    f"privacy.subsets={M}",
    "privacy.secure=false",  # deterministic privacy randomness: for this test only
]
SEEDS = (20261202, 7)
MECHANISMS = {
    "paczero-zpl": ["privacy.mechanism=paczero-zpl", "train.clip=null"],
    "paczero-mi": ["privacy.mechanism=paczero-mi", "privacy.budget=0.5", "train.clip=null"],
    "dpzero": ["privacy.mechanism=dpzero", "privacy.epsilon=2", "privacy.sampling_rate=0.5", "train.clip=5"],
}

# Fields that are released values or computed from them (through the weights or the posterior). MI and DP
# bundles may differ here, and only here.
RELEASED_STEP_FIELDS = {
    "released",
    "update",
    "kinds",
    "unanimous",
    "positive_fraction",
    "q_plus",
    "sigma",
    "mi_step",
    "mi_spent",
    "loss",
    "clip_fraction",
    "nonfinite",
    "prev_hash",
}
RELEASED_SUMMARY_FIELDS = {
    ("dev",),
    ("test",),
    ("selected_step",),
    ("transcript", "head"),
    ("privacy", "mi_spent"),
    ("privacy", "attack_bound"),
    ("privacy", "matched_epsilon"),
    ("privacy", "unanimous"),
    ("privacy", "coins"),
    ("privacy", "noisy"),
    ("privacy", "unanimity_rate"),
}
# Files that are wholly computed from released values: model weights, plots of the transcript.
RELEASED_FILES = re.compile(r"(model/.*\.safetensors|report/.*\.png)$")


def cli(*args: str) -> None:
    assert main(list(args)) == 0, args


def publish(root: Path, mechanism: str, secret: int, seed: int = SEEDS[0]) -> dict[str, bytes]:
    """Train, audit, report and export one run as a user would; returns the bundle's files."""
    run = root / f"{mechanism}-{secret}" / "run"  # the same directory name: it is shown in the report
    sets = [*PUBLIC, *MECHANISMS[mechanism], f"privacy.secret_index={secret}", f"privacy.seed={seed}"]
    cli("train", "--output-dir", str(run), *(a for s in sets for a in ("--set", s)))
    cli("audit", "mia", "--run", str(run))
    cli("report", str(run))
    bundle = root / f"{mechanism}-{secret}" / "bundle"
    cli("export", "--run", str(run), "--output", str(bundle), "--allow-insecure")
    return {
        p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("invariance")
    out = {"paczero-zpl": [publish(root, "paczero-zpl", j) for j in SECRETS]}
    for mech in ("paczero-mi", "dpzero"):
        out[mech] = [publish(root, mech, j, seed) for j, seed in zip(SECRETS, SEEDS)]
    return out


def test_zpl_bundles_are_byte_identical_across_secret_indices(bundles):
    first, *others = bundles["paczero-zpl"]
    assert {"summary.json", "privacy.md", "steps.jsonl", "config.yaml", "report/report.html"} <= set(first)
    assert any(name.startswith("model/") and name.endswith(".safetensors") for name in first)
    assert not [name for name in first if LOCK in name]  # export held the run's lock: it stays behind
    for other in others:
        assert set(other) == set(first)
        differing = [name for name in first if first[name] != other[name]]
        assert differing == []


def _drop(tree: dict, path: tuple[str, ...]) -> None:
    node = tree
    for key in path[:-1]:
        node = node.get(key) or {}
    node.pop(path[-1], None)


def public_part(name: str, data: bytes) -> object:
    """A file with its released-value fields removed (None: the whole file is computed from releases)."""
    if RELEASED_FILES.search(name):
        return None
    text = data.decode()
    if name == "steps.jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        return [{k: v for k, v in line.items() if k not in RELEASED_STEP_FIELDS} for line in lines]
    if name == "summary.json":
        tree = json.loads(text)
        for path in RELEASED_SUMMARY_FIELDS:
            _drop(tree, path)
        return tree
    if name in ("transcript.json", "MANIFEST.json"):
        return sorted(json.loads(text).get("files", {})) if name == "MANIFEST.json" else None
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<png>", text)
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", text)  # numbers in prose: metrics and spending


@pytest.mark.parametrize("mechanism", ["paczero-mi", "dpzero"])
def test_mi_and_dp_bundles_differ_only_in_released_values(bundles, mechanism):
    first, other = bundles[mechanism]
    assert set(first) == set(other)
    for name in first:
        assert public_part(name, first[name]) == public_part(name, other[name]), name
    # the comparison is not vacuous: the released values themselves did differ between the secrets
    assert first["steps.jsonl"] != other["steps.jsonl"]


def test_the_invariance_check_catches_a_secret_dependent_field(bundles):
    """Negative control: a file that names something secret-dependent breaks the ZPL comparison."""
    first, other = bundles["paczero-zpl"][:2]
    leaked = dict(other)
    leaked["summary.json"] = other["summary.json"].replace(b'"steps_run"', b'"members": 17, "steps_run"')
    assert [n for n in first if first[n] != leaked[n]] == ["summary.json"]
    timed = other["steps.jsonl"].replace(b'"lr"', b'"seconds": 0.25, "lr"', 1)
    assert public_part("steps.jsonl", timed) != public_part("steps.jsonl", first["steps.jsonl"])
