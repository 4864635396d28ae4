"""How well does the demo learn with LoRA at each placement in the top block? q/v runs every position; q/o,
with or without the MLP (gate, up, down), runs the scored positions only (docs/benchmarks.md).

python benchmarks/placement.py [--placements q_proj,v_proj q_proj,o_proj] [--lrs 0.03] [--steps 100]
                               [--seeds 0 1 2] [--out benchmarks/results/placement.json]

Runs the CPU demo (configs/demo.yaml: PACZero-ZPL, M = 2, N = 256, LoRA in the top block) once per
placement, learning rate, step count and data seed, privacy randomness from the OS, and records each run's
dev curve (200 examples), selected dev loss and accuracy, test accuracy, unanimity and process CPU seconds
per step.
Runs already in the output file are kept and skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from paczero.config import load_config
from paczero.models.loaders import load_model, load_trainable_state, trainable_state
from paczero.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--placements", nargs="+", default=["q_proj,v_proj", "q_proj,o_proj"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.03])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/placement.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["placement"], r.get("lr", 0.03), r.get("steps", 100), r["data_seed"]) for r in results}
    for name in args.placements:
        overrides = [f"model.lora_targets=[{name}]", "train.progress=false", f"train.steps={args.steps}"]
        todo = [(lr, s) for lr in args.lrs for s in args.seeds if (name, lr, args.steps, s) not in done]
        if not todo:
            continue
        loaded = load_model(load_config(ROOT / "configs/demo.yaml", overrides).model)
        initial = trainable_state(loaded)
        for lr, seed in todo:
            load_trainable_state(loaded, initial)
            cfg = load_config(
                ROOT / "configs/demo.yaml", [*overrides, f"task.data_seed={seed}", f"train.lr={lr}"]
            )
            trainer = Trainer(cfg, loaded=loaded)
            trainer.evaluate(trainer.pool)  # fills the trunk cache: not a step cost
            cpu = time.process_time()
            summary = trainer.run()
            results.append(
                {
                    "placement": name,
                    "lr": lr,
                    "steps": args.steps,
                    "data_seed": seed,
                    "dev_history": summary["dev"]["history"],
                    "dev_selected": summary["dev"]["selected"],
                    "test": summary["test"],
                    "unanimity": summary["privacy"]["unanimity_rate"],
                    "cpu_s_per_step_incl_eval": (time.process_time() - cpu) / cfg.train.steps,
                }
            )
            print(
                json.dumps(results[-1]["dev_selected"] | {"placement": name, "lr": lr, "seed": seed}),
                flush=True,
            )
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
