"""Sweeps: expand a grid of config overrides into cells, run or emit them, and aggregate over seeds.

A sweep file names a base config, fixed overrides and a grid; every cell is one run directory under the
output directory, named after its grid values, so finished cells (those with a ``summary.json``) are
skipped on a rerun and an external scheduler can run the emitted commands in any order.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from paczero.config import ConfigError, load_config
from paczero.rundir import SUMMARY


@dataclass
class TableLayout:
    """How cells fold into a table: one row per value of ``rows``, one column per value of ``columns``."""

    rows: str
    columns: str | None = None
    metric: str = "test.accuracy"  # a dotted path into summary.json
    seeds: str = "task.data_seed"  # averaged over: mean ± std


@dataclass
class Sweep:
    """A grid over config keys; the special grid key ``config`` ranges over config files themselves."""

    name: str
    base: Path | None
    grid: dict[str, list[Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    table: TableLayout | None = None
    root: Path = Path(".")

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of grid values, in file order."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def config_path(self, cell: dict[str, Any]) -> Path:
        return (self.root / cell["config"]).resolve() if "config" in cell else self.base

    def overrides(self, cell: dict[str, Any]) -> list[str]:
        items = {key: value for key, value in {**self.fixed, **cell}.items() if key != "config"}
        return [
            f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in items.items()
        ]


def cell_name(cell: dict[str, Any]) -> str:
    """A directory name from the cell's grid values, e.g. ``privacy.budget=0.33,task.data_seed=1``."""
    parts = [f"{key}={Path(value).stem if key == 'config' else value}" for key, value in cell.items()]
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", ",".join(parts)) or "default"


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"name", "base", "grid", "fixed", "table"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown sweep keys {sorted(unknown)} (known: name, base, grid, fixed, table)"
        )
    if not isinstance(data.get("grid"), dict) or not data["grid"]:
        raise ConfigError(f"{path}: a sweep needs a non-empty 'grid' mapping")
    if "base" not in data and "config" not in data["grid"]:
        raise ConfigError(f"{path}: a sweep needs 'base' (a config file) or a 'config' grid key")
    for key, values in data["grid"].items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid key {key!r} must map to a non-empty list")
    table = data.get("table")
    try:
        layout = TableLayout(**table) if table else None
    except TypeError as err:
        raise ConfigError(f"{path}: bad table layout: {err}") from None
    sweep = Sweep(
        name=data.get("name", path.stem),
        base=(path.parent / data["base"]).resolve() if "base" in data else None,
        grid=data["grid"],
        fixed=data.get("fixed") or {},
        table=layout,
        root=path.parent,
    )
    if layout is not None:
        folded = {layout.rows, layout.columns, layout.seeds}
        stray = [key for key in sweep.grid if key not in folded]
        if stray:
            raise ConfigError(f"{path}: grid keys {stray} are neither the table's rows, columns nor seeds")
    for cell in sweep.cells():  # validate every cell before running any
        load_config(sweep.config_path(cell), sweep.overrides(cell))
    return sweep


def emit_commands(sweep: Sweep, output_dir: str | Path, skip_finished: bool = True) -> list[str]:
    """One ``paczero train`` command per (unfinished) cell, for a SLURM array or a torchrun launcher."""
    out = Path(output_dir)
    commands = []
    for cell in sweep.cells():
        run_dir = out / cell_name(cell)
        if skip_finished and (run_dir / SUMMARY).is_file():
            continue
        sets = " ".join(f"--set {shlex.quote(o)}" for o in sweep.overrides(cell))
        config = shlex.quote(str(sweep.config_path(cell)))
        commands.append(f"paczero train --config {config} {sets} --output-dir {shlex.quote(str(run_dir))}")
    return commands


def run_sweep(sweep: Sweep, output_dir: str | Path) -> list[Path]:
    """Run the unfinished cells one after another in this process; returns the run directories."""
    from paczero.trainer import Trainer

    out = Path(output_dir)
    dirs = []
    for cell in sweep.cells():
        run_dir = out / cell_name(cell)
        dirs.append(run_dir)
        if (run_dir / SUMMARY).is_file():
            print(f"skip (finished): {run_dir.name}")
            continue
        print(f"run: {run_dir.name}")
        Trainer(load_config(sweep.config_path(cell), sweep.overrides(cell)), run_dir).run()
    return dirs


def _lookup(summary: dict[str, Any], dotted: str) -> Any:
    node: Any = summary
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def aggregate(sweep: Sweep, output_dir: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """Fold finished cells into the table layout: mean ± std of the metric over seeds; writes md and CSV."""
    layout = sweep.table or TableLayout(rows=next(iter(sweep.grid)))
    out = Path(output_dir)
    groups: dict[tuple[Any, Any], list[float]] = {}
    for cell in sweep.cells():
        path = out / cell_name(cell) / SUMMARY
        if not path.is_file():
            continue
        value = _lookup(json.loads(path.read_text()), layout.metric)
        if value is None:
            continue
        key = (cell.get(layout.rows), cell.get(layout.columns) if layout.columns else None)
        groups.setdefault(key, []).append(float(value))
    row_values = list(dict.fromkeys(k[0] for k in groups))
    col_values = list(dict.fromkeys(k[1] for k in groups))
    records = []
    for (row, col), values in groups.items():
        records.append(
            {
                layout.rows: row,
                "column": col,
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
            }
        )
    header = [layout.rows] + [str(c) if c is not None else layout.metric for c in col_values]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in row_values:
        cells = []
        for col in col_values:
            rec = next((r for r in records if r[layout.rows] == row and r["column"] == col), None)
            cells.append("" if rec is None else f"{rec['mean']:.4f} ± {rec['std']:.4f} (n={rec['n']})")
        lines.append("| " + " | ".join([str(row), *cells]) + " |")
    markdown = (
        f"### {sweep.name}: {layout.metric}, mean ± std over {layout.seeds}\n\n" + "\n".join(lines) + "\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown)
    with (out / "table.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[layout.rows, "column", "mean", "std", "n"])
        writer.writeheader()
        writer.writerows(records)
    return markdown, records
