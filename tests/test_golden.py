"""Golden digests of a fixed-seed tiny run's public outputs: the saved and the final trained weights,
steps.jsonl, and summary.json without the library versions, for PACZero-ZPL, PACZero-MI, MeZO and DPZero.
A refactoring that changes none of what is computed keeps every digest; a change that alters a release, a draw
or an update changes one.

The digests hold for this project's pinned CPU build of torch (the one `make setup` installs); another torch
build may round differently. Regenerate them deliberately with ``PACZERO_PRINT_GOLDEN=1 pytest -s`` and say
why in the commit."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from safetensors.torch import load_file

from paczero.trainer import Trainer
from paczero.transcript import replay
from tests.conftest import tiny_config

RUNS = {
    "paczero-zpl": ["privacy.mechanism=paczero-zpl"],
    "paczero-mi": ["privacy.mechanism=paczero-mi", "privacy.budget=0.3"],
    "mezo": ["privacy.mechanism=mezo"],
    "dpzero": ["privacy.mechanism=dpzero", "privacy.epsilon=2", "privacy.sampling_rate=0.5", "train.clip=5"],
}
COMMON = ["task.pool_size=48", "task.dev_size=16", "task.test_size=16", "train.steps=5", "train.eval_every=2"]
GOLDEN = {
    "paczero-zpl": {
        "weights": "da4839e7af881635",
        "steps": "8ba50deb6dcf3290",
        "summary": "d5b2e480e7f8e789",
    },
    "paczero-mi": {"weights": "1b9e798a65137288", "steps": "176f652a7e164717", "summary": "b47084d22c8cb933"},
    "mezo": {"weights": "75fa1cde75c8714b", "steps": "48ccd6196ec344fc", "summary": "c91a37db1dc0bee1"},
    "dpzero": {"weights": "c5b518e00245eb2c", "steps": "14aa7e0d6865b519", "summary": "39dd895caa955b5c"},
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def digests(run_dir) -> dict[str, str]:
    saved = load_file(str(run_dir / "model" / "adapter_model.safetensors"))  # the selected (best-dev) state
    final, _ = replay(run_dir, step=5)  # the weights after the last step
    digest = hashlib.sha256()
    for name, tensor in [*sorted(saved.items()), *final.trainable]:
        digest.update(name.encode() + tensor.detach().numpy().tobytes())
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["privacy"].pop("versions")
    return {
        "weights": digest.hexdigest()[:16],
        "steps": sha((run_dir / "steps.jsonl").read_bytes()),
        "summary": sha(json.dumps(summary, sort_keys=True).encode()),
    }


@pytest.mark.parametrize("mechanism", list(RUNS))
def test_public_outputs_match_their_golden_digests(tmp_path, mechanism):
    Trainer(tiny_config(*COMMON, *RUNS[mechanism]), tmp_path / "run").run()
    got = digests(tmp_path / "run")
    if os.environ.get("PACZERO_PRINT_GOLDEN"):
        print(f'    "{mechanism}": {json.dumps(got)},')
    assert got == GOLDEN[mechanism]
