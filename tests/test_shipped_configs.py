"""Every shipped config and sweep loads and validates; one cell per mechanism family runs on a tiny model."""

from pathlib import Path

import pytest
import yaml

from paczero.config import load_config
from paczero.sweep import load_sweep
from paczero.trainer import Trainer
from tests.conftest import TINY

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))
SWEEPS = [p for p in ALL if "grid" in (yaml.safe_load(p.read_text()) or {})]
PARTIALS = [p for p in ALL if p.parent.name == "models" or p.name == "base.yaml"]
CELLS = [p for p in ALL if p not in SWEEPS and p not in PARTIALS]


@pytest.mark.parametrize("path", CELLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.train.steps >= 1


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_sweep_loads_and_every_cell_validates(path):
    assert load_sweep(path).cells()


def test_the_paper_sst2_cells_are_all_there():
    names = {p.stem for p in (CONFIGS / "paper" / "sst2").glob("*.yaml")}
    for size in ("1.3b", "6.7b"):
        for track in ("lora", "full"):
            for mech in ("zpl", "mi-0.33", "mi-0.68", "mezo"):
                assert f"opt-{size}-{track}-{mech}" in names


SHRINK = [
    *(t for t in TINY if not t.startswith("model.track")),
    "train.steps=2",
    "train.eval_every=0",
    "model.device=cpu",
    "model.dtype=float32",
]


@pytest.mark.parametrize("cell", ["opt-1.3b-lora-zpl", "opt-1.3b-full-mi-0.33", "opt-1.3b-lora-mezo"])
def test_a_paper_cell_runs_two_steps_on_a_tiny_model(cell):
    cfg = load_config(CONFIGS / "paper" / "sst2" / f"{cell}.yaml", SHRINK)
    summary = Trainer(cfg).run()
    assert summary["steps_run"] == 2 and summary["mechanism"] == cfg.privacy.mechanism
    assert summary["track"] == ("full" if "-full-" in cell else "lora")
