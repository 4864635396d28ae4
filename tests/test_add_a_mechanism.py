"""The recipe in docs/architecture.md, followed from a test file: a new mechanism in one class, registered
for the test's duration, trains, is accounted, and exports, with nothing else in the library touched; and
the registry's own rules (no name twice, built-ins stay, a second negative control breaks nothing)."""

from __future__ import annotations

import json

import pytest

from paczero.export import export_run
from paczero.mechanisms import (
    MECHANISMS,
    Guarantee,
    Mechanism,
    Release,
    StepInput,
    get_mechanism,
    negative_control,
    register,
    registered,
    unregister,
)
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


class SecondControl(MajoritySign):
    """A second registered negative control (a toy: the flag only)."""

    name = "toy-second-control"
    negative_control = True


def test_a_mechanism_registered_from_a_test_file_trains_and_exports(tmp_path):
    with registered(MajoritySign):
        _train_and_export(tmp_path)
    assert MajoritySign.name not in MECHANISMS  # other tests see only the library's mechanisms


def test_registration_is_scoped_refuses_a_name_twice_and_keeps_the_built_ins():
    before = dict(MECHANISMS)
    with pytest.raises(RuntimeError), registered(MajoritySign):
        assert get_mechanism(MajoritySign.name) is MajoritySign
        raise RuntimeError  # a failing test body still removes what it registered
    assert before == MECHANISMS
    with registered(MajoritySign), pytest.raises(ValueError, match="registered twice"):
        register(MajoritySign)
    with pytest.raises(ValueError, match="built in"):
        unregister(get_mechanism("paczero-zpl"))
    assert before == MECHANISMS


def test_a_second_negative_control_leaves_the_library_s_control_in_place():
    library = negative_control()
    assert library.negative_control and library.reads_secret
    with registered(SecondControl):
        assert negative_control() is library


def _train_and_export(tmp_path):
    cfg = tiny_config("privacy.mechanism=toy-majority-sign", "train.steps=4", "train.lr=3.0e-2")
    summary = Trainer(cfg, tmp_path / "run").run()
    assert summary["mechanism"] == "toy-majority-sign" and summary["privacy"]["guarantee"] == "zero-mi"
    assert summary["privacy"]["mi_spent"] == 0.0 and summary["steps_run"] == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert all(r["kinds"] == ["public"] and abs(r["released"][0]) == 1.0 for r in records)
    bundle = export_run(tmp_path / "run", tmp_path / "bundle", allow_insecure=True)
    assert "model/adapter_model.safetensors" in bundle.files
