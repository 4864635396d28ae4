"""benchmarks/campaign_table.py: summary.json follows the published schema, each method's row holds only the
cells of its chosen grid point (a DPZero clip variant, not its other clips; not the explored variants), and
the 95 % t-interval and paired differences are computed from the seeds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_table():
    spec = importlib.util.spec_from_file_location("campaign_table", ROOT / "benchmarks" / "campaign_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(accuracy: float, unanimity: float | None = None, steps: int = 1000) -> dict:
    dev = {"step": 0, "loss": 0.5, "accuracy": 0.7}
    summary = {
        "steps_planned": steps,
        "test": {"accuracy": accuracy, "loss": 1 - accuracy},
        "dev": {"start": dev, "selected": dev, "history": [dev]},
    }
    if unanimity is not None:
        summary["privacy"] = {"unanimity_rate": unanimity}
    return summary


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    cells = {
        "mezo,lr=0.3,seed=0": cell(0.70),
        "mezo,lr=0.3,seed=1": cell(0.74),
        "mezo,lr=0.1,seed=0": cell(0.99),  # another grid point: not in the row
        "paczero-zpl,lr=0.01,seed=0": cell(0.72, 0.5),
        "paczero-zpl,lr=0.01,seed=1": cell(0.80, 0.6),
        "paczero-zpl,lr=0.01,seed=0,M=4": cell(0.71, 0.3),
        "dpzero,lr=0.3,seed=0,clip=0.1": cell(0.73),
        "dpzero,lr=0.3,seed=0": cell(0.10),  # the same lr at the base clip: not chosen
        "mezo,lr=0.1,seed=0,T=3000": cell(0.75, steps=3000),
        "mezo,lr=0.1,seed=1,T=3000": cell(0.79, steps=3000),
        "paczero-zpl,lr=0.01,seed=1,T=3000": cell(0.81, steps=3000),
    }
    (tmp_path / "cells").mkdir()
    for name, summary in cells.items():
        (tmp_path / "cells" / f"{name}.json").write_text(json.dumps(summary))
    chosen = {
        "mezo": {"lr": 0.3, "tag": ""},
        "paczero-zpl": {"lr": 0.01, "tag": ""},
        "dpzero": {"lr": 0.3, "tag": "clip=0.1"},
    }
    (tmp_path / "lr.json").write_text(json.dumps({"grid": {}, "chosen": chosen}))
    (tmp_path / "zero-shot.json").write_text(json.dumps({"test": {"accuracy": 0.7122, "loss": 0.56}}))
    return tmp_path


def test_summary_follows_the_schema_and_rows_hold_only_the_chosen_cells(results):
    table = load_table()
    summary, runs = table.summarize(results)
    assert {"steps", "pool_size", "test_size", "track", "zero_shot", "methods", "m_study"} <= set(summary)
    assert summary["steps"] == 1000 and summary["zero_shot"] == {"accuracy": 0.7122, "loss": 0.56}
    methods = summary["methods"]
    assert set(table.ORDER) == set(methods)
    for row in methods.values():
        assert {"seeds", "mean", "ci95"} <= set(row)
    assert methods["mezo"]["seeds"] == [0.70, 0.74]
    assert methods["dpzero"]["seeds"] == [0.73] and methods["dpzero"]["tag"] == "clip=0.1"
    assert methods["first-order"]["seeds"] == []
    # mean and the half-width of the 95 % t-interval: t(0.975, 1) · s / √2 with s = 0.04 / √2
    assert methods["mezo"]["mean"] == pytest.approx(0.72)
    assert methods["mezo"]["ci95"] == pytest.approx(12.7062047 * 0.02, rel=1e-6)
    assert methods["mezo"]["test_loss"]["mean"] == pytest.approx(0.28)
    m_rows = {r["M"]: r for r in summary["m_study"]}
    assert m_rows[2]["seeds"] == [0.72, 0.80] and m_rows[2]["unanimity"] == pytest.approx(0.55)
    assert m_rows[4]["seeds"] == [0.71] and m_rows[4]["unanimity"] == pytest.approx(0.3)
    explored, zpl = summary["explored"]
    assert (explored["variant"], explored["method"], explored["seeds"]) == ("T=3000", "mezo", [0.75, 0.79])
    # paired against MeZO's main runs on seeds 0 and 1: +0.05 both times
    assert explored["paired_vs_main"]["n"] == 2 and explored["paired_vs_main"]["mean"] == pytest.approx(0.05)
    # ZPL's variant row pairs with its own main run and with MeZO's same variant, on the common seed 1
    assert zpl["paired_vs_main"] == {
        "n": 1,
        "mean": pytest.approx(0.01),
        "ci95": pytest.approx(float("nan"), nan_ok=True),
    }
    assert zpl["paired_vs_mezo_same_variant"]["n"] == 1
    assert zpl["paired_vs_mezo_same_variant"]["mean"] == pytest.approx(0.02)
    assert table.paired(runs, "paczero-zpl", "mezo")[:1] == pytest.approx((0.04,))


def test_the_table_names_the_chosen_clip_and_the_explored_variant(results):
    table = load_table()
    text = table.markdown(*table.summarize(results))
    assert "| DPZero (ε matched to MI 0.33) | 0.3, clip 0.1 | 1 |" in text
    assert "| MeZO (no privacy) | 0.3 | 2 | 0.7200 ± 0.2541 | +0.8 pts | — | 0.2800 ± 0.2541 | — |" in text
    assert "| 3000 steps | MeZO (no privacy) | 0.1 | 2 | 0.7700" in text
