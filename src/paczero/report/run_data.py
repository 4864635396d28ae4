"""A finished run's public outputs (summary.json, steps.jsonl), read for the report: never private/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paczero.privacy.ledger import Guarantee
from paczero.report.words import guarantee_of
from paczero.rundir import SUMMARY, TRANSCRIPT


@dataclass
class RunData:
    """The public outputs of one finished run."""

    path: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str | Path) -> RunData:
        path = Path(path)
        summary_file = path / SUMMARY
        if not summary_file.is_file():
            raise FileNotFoundError(f"{path} is not a finished run: no {SUMMARY}")
        steps = path / TRANSCRIPT
        lines = steps.read_text().splitlines() if steps.is_file() else []
        return cls(path, json.loads(summary_file.read_text()), [json.loads(x) for x in lines if x.strip()])

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(step, value) for a per-step field, dropping steps where it is null."""
        pairs = [(r["step"], r[key]) for r in self.records if r.get(key) is not None]
        return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)

    def per_release(self, key: str) -> np.ndarray:
        """A per-direction field flattened over all releases, nulls dropped."""
        return np.array([v for r in self.records for v in r.get(key) or [] if v is not None], float)

    def utility(self) -> tuple[str, float | None]:
        """The headline utility: the primary metric (accuracy by default) on test, else on selected dev."""
        metric = self.summary.get("primary_metric", "accuracy")
        for split, metrics in (("test", self.summary.get("test")), ("dev", self._dev())):
            if metrics and metrics.get(metric) is not None:
                return f"{split} {metric}", float(metrics[metric])
        return metric, None

    def _dev(self) -> dict[str, Any] | None:
        return (self.summary.get("dev") or {}).get("selected")

    @property
    def guarantee(self) -> Guarantee:
        """The run's guarantee (zero-mi, mi-budget, dp, none or unbounded-leak)."""
        return guarantee_of(self.summary)


def find_runs(directory: str | Path) -> list[Path]:
    """Every run directory (holding summary.json) strictly below ``directory``, sorted by path."""
    root = Path(directory)
    return sorted(p.parent for p in root.rglob(SUMMARY) if p.parent != root)
