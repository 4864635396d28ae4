"""The recipe in docs/architecture.md, followed from a test file: a new mechanism in one class and one
decorator trains, is accounted, and exports, with nothing else in the library touched."""

from __future__ import annotations

import json

import pytest

from paczero.export import export_run
from paczero.mechanisms import MECHANISMS, Guarantee, Mechanism, Release, StepInput, register
from paczero.trainer import Trainer
from tests.conftest import tiny_config


class MajoritySign(Mechanism):
    """Reads the signs of the M subset means (never J); releases the sign most subsets agree on, ties +1.
    A function of public values only, so it costs nothing (a toy: its I = 0 because it ignores S*)."""

    name = "toy-majority-sign"
    reads_secret = False
    guarantee = Guarantee.ZERO_MI

    def release(self, step: StepInput, ledger) -> Release:
        value = 1.0 if (step.signs > 0).mean() >= 0.5 else -1.0
        return Release(value=value, observed=value, kind="public", cost=0.0)


@pytest.fixture
def registered():
    """``@register`` on the class, undone afterwards so other tests see only the library's mechanisms."""
    register(MajoritySign)
    yield
    MECHANISMS.pop(MajoritySign.name)


def test_a_mechanism_registered_from_a_test_file_trains_and_exports(tmp_path, registered):
    cfg = tiny_config("privacy.mechanism=toy-majority-sign", "train.steps=4", "train.lr=3.0e-2")
    summary = Trainer(cfg, tmp_path / "run").run()
    assert summary["mechanism"] == "toy-majority-sign" and summary["privacy"]["guarantee"] == "zero-mi"
    assert summary["privacy"]["mi_spent"] == 0.0 and summary["steps_run"] == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert all(r["kinds"] == ["public"] and abs(r["released"][0]) == 1.0 for r in records)
    bundle = export_run(tmp_path / "run", tmp_path / "bundle", allow_insecure=True)
    assert "model/adapter_model.safetensors" in bundle.files
