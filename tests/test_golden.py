"""Golden digests of a fixed-seed tiny run's public outputs: the saved and the final trained weights,
steps.jsonl without its hash chain, and summary.json without the library versions and the chain's head, for
PACZero-ZPL, PACZero-MI, MeZO and DPZero. A refactoring that changes none of what is computed keeps every
digest; a change that alters a release, a draw or an update changes one. (The chain hashes the whole
config, so a new config key moves it without changing anything computed.)

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
        "steps": "80bacc756b9e9252",
        "summary": "611f347ebbb4061a",
    },
    "paczero-mi": {"weights": "1b9e798a65137288", "steps": "1e197289df7ea7ac", "summary": "bd85c5db19c506d0"},
    "mezo": {"weights": "75fa1cde75c8714b", "steps": "8aeafa5e79ed999b", "summary": "d9b9a764bd888594"},
    "dpzero": {"weights": "c5b518e00245eb2c", "steps": "ab0d90b713820a2e", "summary": "63fb456326fd6b05"},
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
    summary.pop("transcript")  # the chain's head: it hashes the whole config, so a new config key moves it
    lines = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("prev_hash")  # likewise; the chain itself is tested in test_transcript.py
    return {
        "weights": digest.hexdigest()[:16],
        "steps": sha(json.dumps(lines, sort_keys=True).encode()),
        "summary": sha(json.dumps(summary, sort_keys=True).encode()),
    }


@pytest.mark.parametrize("mechanism", list(RUNS))
def test_public_outputs_match_their_golden_digests(tmp_path, mechanism):
    Trainer(tiny_config(*COMMON, *RUNS[mechanism]), tmp_path / "run").run()
    got = digests(tmp_path / "run")
    if os.environ.get("PACZERO_PRINT_GOLDEN"):
        print(f'    "{mechanism}": {json.dumps(got)},')
    assert got == GOLDEN[mechanism]
