"""``paczero compare``: several mechanisms on one task, model, data sample and seeds, in one table.

Each entry is a config file (or a sweep cell) plus overrides; every run gets its own directory under the
output directory, and ``comparison.md`` / ``comparison.csv`` hold one row per run: utility (the task's
primary metric on test, and on dev at the selected step), the membership-attack success bound, ε (DP runs)
or MI (PAC runs) with the matched value of the other, steps, wall time and peak memory. Runs are "matched at
the attack level" when their bounds on attack success are equal (docs/comparison.md).
"""

from __future__ import annotations

import csv
import gc
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from paczero.bench.machine import reset_peak_rss, status_kib
from paczero.config import SECRET_KEYS, ConfigError, RunConfig, load_config
from paczero.privacy.ledger import Guarantee
from paczero.sweep import cell_name, load_sweep

SHARED_SECTIONS = ("task", "model")  # must be identical across the compared runs
SHARED_KEYS = (("train", "seed"), ("privacy", "seed"))  # direction seeds and the privacy generator


@dataclass
class Entry:
    """One run of a comparison: its name (the directory), config file and overrides."""

    name: str
    config: Path | None
    overrides: list[str]

    def load(self) -> RunConfig:
        return load_config(self.config, self.overrides)


@dataclass
class Row:
    """One line of the comparison table (None where a value does not apply, e.g. ε of a PAC run)."""

    name: str
    mechanism: str
    guarantee: str
    metric: str
    test: float | None
    dev: float | None
    attack_bound: float | None
    epsilon: float | None  # DP: ε spent at δ
    delta: float | None
    mi: float | None  # PAC: MI spent (nats)
    matched_epsilon: float | None  # PAC: the ε (δ = 0) with the same attack bound
    matched_mi: float | None  # DP: the MI with the same attack bound
    steps_run: int
    steps_planned: int
    wall_time_s: float
    peak_rss_mib: float | None
    peak_gpu_mib: float | None
    run_dir: str


def entries_from(
    configs: list[str], sweep: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> list[Entry]:
    """Entries from ``--config`` files (named by their stem) and a sweep file's cells, each with the
    common ``--set`` overrides appended; duplicate names get a numeric suffix."""
    found: list[tuple[str, Path | None, list[str]]] = [(Path(c).stem, Path(c), []) for c in configs]
    if sweep is not None:
        plan = load_sweep(sweep)
        found += [(cell_name(cell), plan.config_path(cell), plan.overrides(cell)) for cell in plan.cells()]
    if not found:
        raise ConfigError("compare needs at least one --config or a --sweep file")
    entries, seen = [], {}
    for name, path, sets in found:
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name}-{seen[name]}"
        entries.append(Entry(unique, path, [*sets, *overrides]))
    return entries


def check_comparable(configs: dict[str, RunConfig]) -> None:
    """Refuse a comparison whose runs differ in task, model, data sample or seeds (mechanism settings may).

    The privacy seed is compared but never printed: it predicts the secret, the coins and the noise.
    """
    (first_name, first), *rest = configs.items()
    reference = first.to_dict(redact_secret=False)
    shared = [(section, key) for section in SHARED_SECTIONS for key in reference[section]] + list(SHARED_KEYS)
    for name, cfg in rest:
        tree = cfg.to_dict(redact_secret=False)
        diffs = [
            f"{section}.{key}"
            + (
                ""
                if f"{section}.{key}" in SECRET_KEYS
                else f": {reference[section][key]!r} ({first_name}) vs {tree[section][key]!r} ({name})"
            )
            for section, key in shared
            if reference[section][key] != tree[section][key]
        ]
        if diffs:
            raise ConfigError(
                "compared runs must share task, model, data sample and seeds; they differ in "
                + "; ".join(diffs)
            )


def run_entry(entry: Entry, cfg: RunConfig, output_dir: Path) -> Row:
    """Train one entry in this process, with the peak memory of this run alone (CUDA allocator peak; CPU
    resident-set high-water mark reset before the run where Linux allows it, else the process peak)."""
    from paczero.trainer import Trainer

    run_dir = output_dir / entry.name
    gc.collect()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    trainer = Trainer(cfg, run_dir)
    summary = trainer.run()
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    rss = status_kib("VmHWM") / 1024
    return row_from_summary(entry.name, summary, str(run_dir), rss, peak_gpu, trainer.timing["wall_time_s"])


def row_from_summary(
    name: str,
    summary: dict[str, Any],
    run_dir: str,
    peak_rss_mib: float | None,
    peak_gpu_mib: float | None,
    wall_time_s: float,
) -> Row:
    """One table row; the wall time comes from the run's private timing (it is not in the public summary)."""
    p = summary["privacy"]
    metric = summary.get("primary_metric", "accuracy")
    dp = Guarantee(p["guarantee"]).is_dp
    return Row(
        name=name,
        mechanism=summary["mechanism"],
        guarantee=p["guarantee"],
        metric=metric,
        test=(summary.get("test") or {}).get(metric),
        dev=summary["dev"]["selected"].get(metric),
        attack_bound=p.get("attack_bound"),
        epsilon=p["epsilon_spent"] if dp else None,
        delta=p["delta"] if dp else None,
        mi=None if dp else p.get("mi_spent"),
        matched_epsilon=None if dp else p.get("matched_epsilon"),
        matched_mi=p["matched_mi"] if dp else None,
        steps_run=summary["steps_run"],
        steps_planned=summary["steps_planned"],
        wall_time_s=wall_time_s,
        peak_rss_mib=peak_rss_mib,
        peak_gpu_mib=peak_gpu_mib,
        run_dir=run_dir,
    )


def run_comparison(entries: list[Entry], output_dir: str | Path) -> list[Row]:
    """Validate every config and their comparability first, then run them one after another."""
    out = Path(output_dir)
    configs = {entry.name: entry.load() for entry in entries}
    check_comparable(configs)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in entries:
        print(f"compare: {entry.name} ({configs[entry.name].privacy.mechanism})", flush=True)
        rows.append(run_entry(entry, configs[entry.name], out))
    write_tables(rows, out)
    return rows


def _num(value: float | None, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)


def markdown_table(rows: list[Row]) -> str:
    """The comparison as markdown; derived (matched) values are marked with ≙."""
    metric = rows[0].metric if len({r.metric for r in rows}) == 1 else "utility"
    lines = [
        f"| run | mechanism | test {metric} | dev {metric} | attack bound p | ε (δ) | MI (nats) | steps "
        "| wall (s) | peak RSS (MiB) | peak GPU (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if Guarantee(r.guarantee).is_dp:
            eps, mi = f"{_num(r.epsilon)} ({_num(r.delta, 'g')})", f"≙ {_num(r.matched_mi)}"
        elif r.mi is not None:
            eps, mi = f"≙ {_num(r.matched_epsilon)} (0)", _num(r.mi)
        else:
            eps, mi = "none", "none"
        bound = _num(r.attack_bound) if r.attack_bound is not None else "none (no guarantee)"
        lines.append(
            f"| {r.name} | {r.mechanism} | {_num(r.test)} | {_num(r.dev)} | {bound} | {eps} | {mi} "
            f"| {r.steps_run}/{r.steps_planned} | {r.wall_time_s:.1f} | {_num(r.peak_rss_mib, '.0f')} "
            f"| {_num(r.peak_gpu_mib, '.0f')} |"
        )
    lines.append("")
    lines.append(
        "Attack bound: largest membership-inference success at prior 1/2 (PAC: KL(Bern(p) ‖ Bern(1/2)) ≤ I; "
        "DP: p = (e^ε + δ)/(1 + e^ε)). ≙ marks the other side's value at the same bound."
    )
    return "\n".join(lines) + "\n"


def write_tables(rows: list[Row], output_dir: Path) -> str:
    """Write comparison.md, comparison.csv and comparison.json; returns the markdown."""
    text = markdown_table(rows)
    (output_dir / "comparison.md").write_text(text)
    with (output_dir / "comparison.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Row)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    (output_dir / "comparison.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return text
