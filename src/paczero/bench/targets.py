"""The cost targets a benchmark result is checked against, and the check."""

from __future__ import annotations

import statistics
from typing import Any

from paczero.bench.trunk import TARGETS as TRUNK_TARGETS
from paczero.bench.trunk import trunk_target_values
from paczero.mechanisms import get_mechanism

TARGETS = {  # name: (comparison, threshold)
    "step / 2 forwards (lora)": ("<=", 1.10),
    "step / 2 forwards (full)": ("<=", 1.25),
    "reference / ours": (">=", 3.0),
    "train peak / inference peak": ("<=", 1.10),
    "privacy bookkeeping / step": ("<", 0.01),
    "step(M max) / step(M min)": ("<=", 1.10),
    **TRUNK_TARGETS,
}


def check_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target the run can check: its value, threshold and whether it is met."""
    values: dict[str, float] = {}
    track = out["config"]["track"]
    for name, step in out["steps"].items():
        if not get_mechanism(name).guarantee.is_dp:  # a DP step runs on a secret sample, not the pool
            key = f"step / 2 forwards ({track})"
            values[key] = max(values.get(key, 0.0), step["ratio_to_two_forwards"])
    if "reference" in out:
        values["reference / ours"] = out["reference"]["ratio"]
    if "memory" in out:
        values["train peak / inference peak"] = out["memory"]["ratio"]
    if "bookkeeping" in out and out["steps"]:
        step_s = statistics.median(s["step_s"] for s in out["steps"].values())
        values["privacy bookkeeping / step"] = max(b["seconds"] for b in out["bookkeeping"].values()) / step_s
    if "trunk" in out:
        values.update(trunk_target_values(out["trunk"]))
    if "sweep_m" in out:
        values["step(M max) / step(M min)"] = out["sweep_m"]["max_over_min"]
    checks = []
    for name, value in values.items():
        op, threshold = TARGETS[name]
        met = value <= threshold if op == "<=" else value >= threshold if op == ">=" else value < threshold
        checks.append({"target": name, "value": value, "op": op, "threshold": threshold, "met": bool(met)})
    return checks
