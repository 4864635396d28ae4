"""The SmolLM2 campaign: every method at 5 data seeds on the fast top-block track, learning rates chosen on
seed 0's dev loss, and ZPL's M study; one process per worker loads the model once and shares its trunk.

  python benchmarks/campaign.py run grid|main [--worker I --workers N] [--methods A,B] [--out runs/campaign]
  python benchmarks/campaign.py choose   # seed 0's dev loss -> one learning rate per method (lr.json)
  python benchmarks/campaign_table.py   # the table, summary.json and plots

A cell is finished when its run directory holds summary.json; a rerun skips finished cells and restarts an
unfinished one, so a stopped campaign loses at most the cells in flight. Each finished cell's public summary
is copied to benchmarks/results/campaign/cells/. Privacy randomness comes from the OS (privacy.secure).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from paczero.config import RunConfig, load_config
from paczero.models.loaders import LoadedModel, load_model, load_trainable_state, trainable_state
from paczero.tasks.classification import last_logits
from paczero.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "configs/replication/campaign/base.yaml"
RESULTS = ROOT / "benchmarks/results/campaign"
SEEDS = (0, 1, 2, 3, 4)
M_STUDY = ((4, 16, 64, 128), (0, 1, 2))  # M values besides the main runs' M = 2, and their seeds
FIRST_ORDER_STEPS = 200  # full-batch Adam steps (epochs) of the backpropagation ceiling

# method -> (config overrides, learning-rate grid tried on seed 0)
METHODS: dict[str, tuple[list[str], tuple[float, ...]]] = {
    "mezo": (["privacy.mechanism=mezo"], (0.1, 0.3, 1.0)),
    "paczero-zpl": (["privacy.mechanism=paczero-zpl"], (0.003, 0.01, 0.03)),
    "paczero-mi": (["privacy.mechanism=paczero-mi", "privacy.budget=0.33"], (0.003, 0.01, 0.03)),
    "paczero-mi-0.05": (["privacy.mechanism=paczero-mi", "privacy.budget=0.05"], (0.003, 0.01, 0.03)),
    "dpzero": (
        ["privacy.mechanism=dpzero", "privacy.match_mi=0.33", "privacy.sampling_rate=0.5"],
        (0.03, 0.1, 0.3),
    ),
    "dpzero-eps0.5": (
        ["privacy.mechanism=dpzero", "privacy.epsilon=0.5", "privacy.sampling_rate=0.5"],
        (0.03, 0.1, 0.3),
    ),
    "first-order": ([], (3e-4, 1e-3, 3e-3)),
}


@dataclass(frozen=True)
class Cell:
    method: str
    lr: float
    seed: int
    subsets: int = 2

    @property
    def name(self) -> str:
        m = "" if self.subsets == 2 else f",M={self.subsets}"
        return f"{self.method},lr={self.lr:g},seed={self.seed}{m}"

    def config(self, smoke: list[str]) -> RunConfig:
        extra = [f"train.lr={self.lr}", f"task.data_seed={self.seed}", f"privacy.subsets={self.subsets}"]
        if self.method == "first-order":
            extra += [f"train.steps={FIRST_ORDER_STEPS}", "train.eval_every=10", "privacy.mechanism=mezo"]
        return load_config(BASE, [*METHODS[self.method][0], *extra, *smoke])


def chosen_lr() -> dict[str, float]:
    return json.loads((RESULTS / "lr.json").read_text())["chosen"]


def cells(phase: str) -> list[Cell]:
    """The phase's cells, seed by seed, so that a stopped campaign leaves paired results."""
    if phase == "grid":
        return [Cell(m, lr, 0) for m, (_, grid) in METHODS.items() for lr in grid]
    lrs = chosen_lr()
    values, m_seeds = M_STUDY
    main = []
    for seed in SEEDS[1:]:  # seed s of every method, then the M study at seed s − 1
        main += [Cell(m, lrs[m], seed) for m in METHODS if m in lrs]
        if seed - 1 in m_seeds:
            main += [Cell("paczero-zpl", lrs["paczero-zpl"], seed - 1, m) for m in values]
    return main


def train_loss(trainer: Trainer) -> float:
    """Backpropagate the mean pool cross-entropy through the cached forward, micro-batch by micro-batch."""
    pool, model, objective = trainer.pool, trainer.forward_model, trainer.objective
    rows = objective.head_rows
    columns = list(range(len(rows))) if getattr(model, "head_rows", None) == rows else rows
    total = 0.0
    for mb in pool.batches:
        scores = last_logits(model, mb, pool.keep)[:, -1, columns].float()
        loss = F.cross_entropy(scores, pool.labels[mb.rows], reduction="sum") / pool.size
        loss.backward()
        total += float(loss.detach())
    return total


def first_order(cfg: RunConfig, loaded: LoadedModel) -> dict:
    """The non-private ceiling: full-batch Adam on the same trainable set, best dev loss kept."""
    trainer = Trainer(cfg, loaded=loaded)
    params = [p for _, p in loaded.trainable]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.train.lr)
    history = [{"step": 0, **trainer.evaluate(trainer.dev)}]
    best = (history[0]["loss"], 0, trainable_state(loaded))
    try:
        for t in range(1, cfg.train.steps + 1):
            opt.zero_grad()
            train_loss(trainer)
            opt.step()
            if t % cfg.train.eval_every == 0:
                history.append({"step": t, **trainer.evaluate(trainer.dev)})
                if history[-1]["loss"] < best[0]:
                    best = (history[-1]["loss"], t, trainable_state(loaded))
    finally:
        for p in params:
            p.requires_grad_(False)
    load_trainable_state(loaded, best[2])
    selected = next(h for h in history if h["step"] == best[1])
    return {
        "mechanism": "first-order",
        "steps_run": cfg.train.steps,
        "selected_step": best[1],
        "dev": {"start": history[0], "selected": selected, "history": history},
        "test": trainer.evaluate(trainer.test),
    }


def run_cell(cell: Cell, loaded: LoadedModel, initial: dict, out: Path, smoke: list[str]) -> dict:
    run_dir = out / cell.name
    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished cell starts again
    load_trainable_state(loaded, initial)  # every cell starts from the same θ_0
    cfg = cell.config(smoke)
    if cell.method == "first-order":
        run_dir.mkdir(parents=True)
        summary = first_order(cfg, loaded)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    else:
        summary = Trainer(cfg, run_dir, loaded=loaded).run()
    return summary


def zero_shot(loaded: LoadedModel, initial: dict) -> None:
    """The base model's test metrics (all 872 examples: the same for every seed) and seed 0's dev."""
    path = RESULTS / "zero-shot.json"
    if path.exists():
        return
    load_trainable_state(loaded, initial)
    trainer = Trainer(load_config(BASE, ["privacy.mechanism=mezo"]), loaded=loaded)
    result = {"test": trainer.evaluate(trainer.test), "dev_seed0": trainer.evaluate(trainer.dev)}
    path.write_text(json.dumps(result, indent=2) + "\n")


def run(phase: str, worker: int, workers: int, out: Path, smoke: list[str], methods: list[str]) -> None:
    torch.set_num_threads(1)  # two single-threaded workers use two cores better than one two-threaded one
    mine = [c for c in cells(phase) if not methods or c.method in methods][worker::workers]
    todo = [c for c in mine if not (out / c.name / "summary.json").exists()]
    print(f"worker {worker}/{workers}: {len(todo)} cells of phase {phase} to run", flush=True)
    if not todo:
        return
    loaded = load_model(load_config(BASE).model)
    initial = trainable_state(loaded)
    if phase == "grid" and worker == 0 and not smoke:
        zero_shot(loaded, initial)
    (RESULTS / "cells").mkdir(parents=True, exist_ok=True)
    for cell in todo:
        began = time.perf_counter()
        summary = run_cell(cell, loaded, initial, out, smoke)
        if smoke:
            continue
        shutil.copy(out / cell.name / "summary.json", RESULTS / "cells" / f"{cell.name}.json")
        acc, dev = summary["test"]["accuracy"], summary["dev"]["selected"]["loss"]
        print(
            f"{cell.name}: test {acc:.4f}, dev loss {dev:.4f}, {time.perf_counter() - began:.0f} s",
            flush=True,
        )


def choose() -> None:
    """Per method, the grid learning rate with the lowest selected dev loss on seed 0."""
    scores: dict[str, dict[str, float]] = {}
    for method, (_, grid) in METHODS.items():
        for lr in grid:
            path = RESULTS / "cells" / f"{Cell(method, lr, 0).name}.json"
            if path.exists():
                scores.setdefault(method, {})[f"{lr:g}"] = json.loads(path.read_text())["dev"]["selected"][
                    "loss"
                ]
    chosen = {m: float(min(s, key=s.get)) for m, s in scores.items()}
    grid = {m: list(g) for m, (_, g) in METHODS.items()}
    (RESULTS / "lr.json").write_text(
        json.dumps({"grid": grid, "dev_loss": scores, "chosen": chosen}, indent=2)
    )
    print(json.dumps(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "choose"])
    parser.add_argument("phase", nargs="?", default="grid", choices=["grid", "main"])
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "runs/campaign")
    parser.add_argument("--methods", type=lambda v: v.split(","), default=[], help="only these (comma list)")
    parser.add_argument("--smoke", action="append", default=[], help="override for a trial run (not kept)")
    args = parser.parse_args()
    if args.action == "choose":
        choose()
    else:
        run(args.phase, args.worker, args.workers, args.out, args.smoke, args.methods)


if __name__ == "__main__":
    main()
