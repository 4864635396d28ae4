"""Sweeps: grid expansion, skipping finished cells, emitted commands, and the aggregated table."""

import pytest

from paczero.cli import main
from paczero.config import ConfigError
from paczero.sweep import aggregate, cell_name, emit_commands, load_sweep, run_sweep
from tests.conftest import TINY


def write_sweep(tmp_path, grid, table="table:\n  rows: privacy.budget\n  metric: test.accuracy\n"):
    base = tmp_path / "base.yaml"
    base.write_text("privacy:\n  mechanism: paczero-mi\n  budget: 0.1\n")
    fixed = "".join(f"  {item.split('=')[0]}: {item.split('=', 1)[1]}\n" for item in TINY)
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"name: tiny\nbase: base.yaml\nfixed:\n{fixed}  train.steps: 2\n  train.eval_every: 0\n"
        f"grid:\n{grid}{table}"
    )
    return path


GRID = "  privacy.budget: [0.05, 0.2]\n  task.data_seed: [0, 1]\n"


def test_grid_expands_runs_skips_finished_and_aggregates(tmp_path, capsys):
    sweep = load_sweep(write_sweep(tmp_path, GRID))
    cells = sweep.cells()
    assert len(cells) == 4 and cells[0] == {"privacy.budget": 0.05, "task.data_seed": 0}
    out = tmp_path / "out"
    assert len(emit_commands(sweep, out)) == 4
    run_sweep(sweep, out)
    assert all((out / cell_name(c) / "summary.json").is_file() for c in cells)
    assert emit_commands(sweep, out) == []  # everything finished
    mtime = (out / cell_name(cells[0]) / "summary.json").stat().st_mtime_ns
    run_sweep(sweep, out)
    assert "skip (finished)" in capsys.readouterr().out
    assert (out / cell_name(cells[0]) / "summary.json").stat().st_mtime_ns == mtime
    markdown, records = aggregate(sweep, out)
    assert [r["n"] for r in records] == [2, 2] and [r["privacy.budget"] for r in records] == [0.05, 0.2]
    assert markdown.count("(n=2)") == 2 and (out / "table.csv").is_file()
    assert "| privacy.budget | test.accuracy |" in markdown


def test_emitted_commands_run_the_same_cell(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, GRID))
    command = emit_commands(sweep, tmp_path / "out")[0]
    assert command.startswith("paczero train --config ") and "--set privacy.budget=0.05" in command
    assert "--output-dir" in command and cell_name(sweep.cells()[0]) in command


def test_bad_sweeps_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="neither the table's rows"):
        load_sweep(write_sweep(tmp_path, GRID + "  train.lr: [0.1]\n"))
    with pytest.raises(ConfigError, match="unknown config key"):
        load_sweep(write_sweep(tmp_path, "  privacy.bugdet: [0.1]\n", table=""))
    with pytest.raises(ConfigError, match="non-empty list"):
        load_sweep(write_sweep(tmp_path, "  privacy.budget: 0.1\n", table=""))


def test_cli_sweep_emit(tmp_path, capsys):
    path = write_sweep(tmp_path, GRID)
    assert main(["sweep", str(path), "--output-dir", str(tmp_path / "o"), "--emit"]) == 0
    assert capsys.readouterr().out.count("paczero train") == 4


def test_config_files_can_be_a_grid_dimension(tmp_path):
    for name, mech in (("zpl.yaml", "paczero-zpl"), ("mezo.yaml", "mezo")):
        (tmp_path / name).write_text(f"privacy:\n  mechanism: {mech}\n")
    path = tmp_path / "cells.yaml"
    sets = "".join(f"  {item.split('=')[0]}: {item.split('=', 1)[1]}\n" for item in TINY)
    path.write_text(
        f"fixed:\n{sets}  train.steps: 1\ngrid:\n  config: [zpl.yaml, mezo.yaml]\n  task.data_seed: [0]\n"
        "table:\n  rows: config\n"
    )
    sweep = load_sweep(path)
    assert [cell_name(c) for c in sweep.cells()] == [
        "config=zpl,task.data_seed=0",
        "config=mezo,task.data_seed=0",
    ]
    commands = emit_commands(sweep, tmp_path / "out")
    assert str(tmp_path / "zpl.yaml") in commands[0] and str(tmp_path / "mezo.yaml") in commands[1]
