"""Privacy properties checked independently of the code that enforces them, each with a negative control.

- PACZero-MI's per-release charge equals the mutual information of the binary-input Gaussian channel
  computed by numerical quadrature (not by the library's formula), and the charges stay within the budget.
- The secret index is read only inside a mechanism's release and by the private secret writer: a spy on
  ``Secret.reveal`` records every caller during training, auditing, reporting and exporting.
- No public file holds the privacy randomness: the root entropy and every privacy generator state saved in
  the private area are searched for in every file export may ship.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from paczero.cli import main
from paczero.rundir import SECRET, STATE, is_public
from paczero.subsets import Secret
from paczero.trainer import Trainer
from tests.conftest import SECURE_RUN, tiny_config


def channel_mi_by_quadrature(q: float, sigma: float) -> float:
    """I(X; X + σN) in nats, X = +1 w.p. q else −1, N ~ N(0, 1): ∫ Σ_x p(x) f(y|x) log f(y|x)/f(y) dy."""

    def integrand(y: float) -> float:
        f_plus, f_minus = stats.norm.pdf(y, 1.0, sigma), stats.norm.pdf(y, -1.0, sigma)
        f = q * f_plus + (1.0 - q) * f_minus
        total = 0.0
        for weight, fx in ((q, f_plus), (1.0 - q, f_minus)):
            if weight > 0 and fx > 0:
                total += weight * fx * math.log(fx / f)
        return total

    width = 1.0 + 12.0 * sigma
    value, _ = integrate.quad(integrand, -width, width, limit=400, epsabs=1e-13, epsrel=1e-11)
    return value


@pytest.fixture(scope="module")
def mi_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("mi") / "run"
    cfg = tiny_config(
        "privacy.mechanism=paczero-mi", "privacy.budget=0.3", "train.steps=12", "train.lr=3.0e-2"
    )
    summary = Trainer(cfg, out).run()
    records = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    return records, summary


def test_mi_charges_equal_an_independent_quadrature_of_the_channel(mi_records):
    records, summary = mi_records
    noisy = [(r["q_plus"][0], r["sigma"][0], r["mi_step"]) for r in records if r["kinds"] == ["noisy"]]
    assert len(noisy) >= 5
    for q, sigma, charged in noisy:
        assert charged == pytest.approx(channel_mi_by_quadrature(q, sigma), rel=1e-6, abs=1e-12)
    total = sum(r["mi_step"] for r in records)
    assert total == pytest.approx(summary["privacy"]["mi_spent"], rel=1e-12)
    assert total <= 0.3 * (1 + 1e-9)


def test_the_quadrature_check_detects_a_miscalibrated_charge(mi_records):
    """Negative control: a noise scale 10% off (what a wrong calibration would publish) is caught."""
    records, _ = mi_records
    q, sigma, charged = next((r["q_plus"][0], r["sigma"][0], r["mi_step"]) for r in records if r["sigma"][0])
    assert charged != pytest.approx(channel_mi_by_quadrature(q, 1.1 * sigma), rel=1e-6, abs=1e-12)


ALLOWED_READERS = {("paczero.outputs", "start")}  # writes the private secret file


def allowed(frame_module: str, function: str) -> bool:
    return frame_module.startswith("paczero.mechanisms.") or (frame_module, function) in ALLOWED_READERS


@pytest.fixture
def reveal_spy(monkeypatch):
    """Every (module, function) that reads the secret index while the test runs."""
    callers: list[tuple[str, str]] = []
    original = Secret.reveal

    def spy(self):
        frame = inspect.currentframe().f_back
        callers.append((frame.f_globals.get("__name__", "?"), frame.f_code.co_name))
        return original(self)

    monkeypatch.setattr(Secret, "reveal", spy)
    return callers


MECHANISMS = {
    "zpl": ["privacy.mechanism=paczero-zpl"],
    "mi": ["privacy.mechanism=paczero-mi", "privacy.budget=0.3"],
    "dp": ["privacy.mechanism=dpzero", "privacy.epsilon=2", "privacy.sampling_rate=0.5", "train.clip=5"],
}


def cli(*args: str) -> None:
    assert main(list(args)) == 0, args


def run_everything(tmp_path: Path, overrides: list[str]) -> tuple[Path, Path]:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    sets = [*SECURE_RUN, *overrides]
    cli("train", "--output-dir", str(run), *(a for s in sets for a in ("--set", s)))
    cli("audit", "mia", "--run", str(run))
    cli("report", str(run))
    cli("report", "--include-private", str(run))
    cli("export", "--run", str(run), "--output", str(bundle))
    return run, bundle


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_only_mechanisms_and_the_private_secret_writer_read_the_secret(tmp_path, reveal_spy, mechanism):
    """A secure run, trained, audited, reported and exported: J is read only where it may be."""
    run_everything(tmp_path, MECHANISMS[mechanism])
    assert reveal_spy, "the spy saw nothing: it is not watching the secret"
    outside = sorted({c for c in reveal_spy if not allowed(*c)})
    assert outside == []


def test_the_reveal_spy_catches_a_public_writer_reading_the_secret(tmp_path, reveal_spy, monkeypatch):
    """Negative control: a model card that reads J (as a careless change might) is reported."""
    import paczero.outputs as outputs_mod

    real_card = outputs_mod.model_card

    def leaky_card(summary):
        return real_card(summary) + f"\n{leaky_card.secret.reveal() % 2}\n"

    original_init = Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        leaky_card.secret = self.secret

    monkeypatch.setattr(Trainer, "__init__", init)
    monkeypatch.setattr(outputs_mod, "model_card", leaky_card)
    Trainer(tiny_config("train.steps=1"), tmp_path / "run").run()
    assert [c for c in reveal_spy if not allowed(*c)] == [("tests.test_privacy_properties", "leaky_card")]


def privacy_footprints(run: Path) -> dict[str, str]:
    """Strings that would reveal the privacy randomness: the root entropy and every saved generator state."""
    secret = json.loads((run / SECRET).read_text())
    found = {"entropy": secret["entropy"], "secret file": json.dumps(secret)}
    for line in (run / STATE).read_text().splitlines():
        state = json.loads(line)
        for name, gen in state["generators"].items():
            if name in ("mechanism", "sampling"):
                found[f"{name} state at step {state['step']}"] = str(gen["state"]["state"])
    return found


def public_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and is_public(p.relative_to(root).as_posix())]


@pytest.mark.parametrize("mechanism", ["mi", "dp"])
def test_no_public_file_holds_the_privacy_randomness(tmp_path, mechanism):
    run, bundle = run_everything(tmp_path, MECHANISMS[mechanism])
    footprints = privacy_footprints(run)
    assert len(footprints) >= 4
    shipped = public_files(run) + [p for p in bundle.rglob("*") if p.is_file()]
    assert len(shipped) >= 10
    hits = [
        f"{path.name}: {name}"
        for path in shipped
        for name, text in footprints.items()
        if text in path.read_bytes().decode("latin-1")
    ]
    assert hits == []
    # negative control: the scan finds the state where it is kept (the private area)
    private = (run / STATE).read_text()
    assert any(text in private for name, text in footprints.items() if "state" in name)
    assert np.all([(run / SECRET).stat().st_mode & 0o777 == 0o600])
