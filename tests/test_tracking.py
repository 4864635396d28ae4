"""Trackers (train.report_to) get public values only: the released step records, the dev metrics and the
public config, with no per-step wall-clock. Weights & Biases and MLflow are replaced by fakes that record what
they were given (the real packages are optional extras, never needed here)."""

import json
import sys
import types

import pytest

from paczero import tracking
from paczero.config import ConfigError
from paczero.tracking import TensorBoardTracker, open_trackers
from paczero.trainer import Trainer
from tests.conftest import tiny_config

DP = ("privacy.mechanism=dpzero", "privacy.match_mi=0.33", "privacy.sampling_rate=0.25", "train.clip=1.0")
QUICK = ("train.steps=4", "train.eval_every=2", "train.lr=3.0e-2")
STEP_SCALARS = (
    tracking.step_scalars
)  # the public values of a step, as released (a test may break the real one)


class Recorder:
    """What a tracker was handed: (step, values) rows, the config and when the rows arrived."""

    def __init__(self):
        self.rows, self.config, self.timestamps, self.finished = [], None, set(), False


def fake_wandb(seen: Recorder) -> types.ModuleType:
    module = types.ModuleType("wandb")

    class Run:
        def log(self, values, step):
            assert seen.finished is False
            seen.rows.append((step, dict(values)))
            seen.timestamps.add("end" if seen.closing else "during")

        def finish(self):
            seen.finished = True

    def init(**kwargs):
        seen.config, seen.closing, seen.init = kwargs["config"], False, kwargs
        return Run()

    module.init = init
    return module


def fake_mlflow(seen: Recorder) -> types.ModuleType:
    module = types.ModuleType("mlflow")
    module.set_tracking_uri = lambda uri: setattr(seen, "uri", uri)
    module.start_run = lambda: None
    module.log_params = lambda params: setattr(seen, "config", params)
    module.end_run = lambda: setattr(seen, "finished", True)

    def log_metrics(values, step, timestamp):
        seen.rows.append((step, dict(values)))
        seen.timestamps.add(timestamp)

    module.log_metrics = log_metrics
    return module


def public_values(run) -> dict[tuple[int, str], float]:
    """Every value a tracker may get, from the run's public files (steps.jsonl and summary.json)."""
    allowed = {}
    for line in (run / "steps.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in STEP_SCALARS(types.SimpleNamespace(**record)).items():
            allowed[(record["step"], key)] = value
    for metrics in json.loads((run / "summary.json").read_text())["dev"]["history"]:
        for key, value in tracking.dev_scalars(metrics).items():
            allowed[(metrics["step"], key)] = value
    return allowed


def leaks(rows, allowed) -> list[tuple[int, str]]:
    """Logged (step, key) pairs that are not a public value of the run, or differ from it."""
    return [(step, k) for step, values in rows for k, v in values.items() if allowed.get((step, k)) != v]


@pytest.fixture
def trackers(monkeypatch):
    seen = {"wandb": Recorder(), "mlflow": Recorder()}
    seen["wandb"].closing = False
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(seen["wandb"]))
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(seen["mlflow"]))
    return seen


@pytest.mark.parametrize("mechanism", [("privacy.mechanism=paczero-mi", "privacy.budget=0.2"), DP])
def test_trackers_get_the_public_step_values_and_dev_metrics_only(tmp_path, trackers, monkeypatch, mechanism):
    real_close = tracking.WandbTracker.close

    def close(self):
        trackers["wandb"].closing = True
        real_close(self)

    monkeypatch.setattr(tracking.WandbTracker, "close", close)
    run = tmp_path / "run"
    Trainer(tiny_config(*QUICK, *mechanism, "train.report_to=[wandb, mlflow]"), run).run()
    allowed = public_values(run)
    for name, seen in trackers.items():
        assert seen.finished and seen.rows, name
        assert leaks(seen.rows, allowed) == [], name
        keys = {k for _, values in seen.rows for k in values}
        assert {"dev/loss", "dev/accuracy", "train/lr"} <= keys, name
        assert ("privacy/epsilon_spent" in keys) is (mechanism is DP) and ("train/loss" in keys) is not (
            mechanism is DP
        )
        assert {step for step, values in seen.rows if "dev/loss" in values} == {0, 2, 4}
    assert trackers["wandb"].timestamps == {"end"}  # rows reach W&B when the run ends: no per-step timing
    assert trackers["mlflow"].timestamps == {0}  # every MLflow entry carries the same fixed time
    assert trackers["wandb"].config["privacy"]["secret_index"] == "<redacted>"
    assert trackers["mlflow"].config["privacy.seed"] == "<redacted>"
    assert (
        trackers["wandb"].init["mode"] == "offline" and str(run / "private") in trackers["wandb"].init["dir"]
    )
    assert trackers["mlflow"].uri.startswith("file://") and trackers["mlflow"].uri.endswith("private/mlflow")


def test_the_leak_check_catches_a_secret_dependent_value(tmp_path, trackers, monkeypatch):
    """Negative control: a tracker fed a step's wall-clock (as a careless change might) is caught."""
    real = tracking.step_scalars
    monkeypatch.setattr(tracking, "step_scalars", lambda record: {**real(record), "train/seconds": 0.25})
    run = tmp_path / "run"
    Trainer(tiny_config(*QUICK, "train.report_to=mlflow"), run).run()
    assert leaks(trackers["mlflow"].rows, public_values(run)) != []


def test_tensorboard_gets_the_same_scalars_at_a_fixed_time(tmp_path):
    class Writer:
        def __init__(self):
            self.scalars, self.closed = [], False

        def add_scalar(self, tag, value, step, walltime):
            self.scalars.append((tag, value, step, walltime))

        def close(self):
            self.closed = True

    writer = Writer()
    tracker = TensorBoardTracker(writer)
    tracker.log({"dev/loss": 0.5, "train/lr": 0.1}, 3)
    tracker.close()
    assert writer.scalars == [("dev/loss", 0.5, 3, 0.0), ("train/lr", 0.1, 3, 0.0)] and writer.closed


def test_tensorboard_is_skipped_without_its_package_and_none_opens_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    assert open_trackers("tensorboard", lambda name: tmp_path / name, {}).trackers == []
    assert open_trackers("none", lambda name: pytest.fail("opened"), {}).trackers == []


def test_a_tracker_without_its_package_fails_with_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it fails, installed or not
    with pytest.raises(RuntimeError, match=r"pip install 'paczero\[wandb\]'"):
        open_trackers(["wandb"], lambda name: tmp_path / name, {})


@pytest.mark.parametrize("value", ["comet", "[none, wandb]", "[tensorboard, foo]"])
def test_report_to_names_known_trackers_only(value):
    with pytest.raises(ConfigError, match="train.report_to"):
        tiny_config(f"train.report_to={value}")
