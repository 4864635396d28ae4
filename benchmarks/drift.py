"""Parameter drift of the ±εz round trip in low precision (issue #6, item 4). Plain Python, CPU, ~1 minute.

Each step applies +εz, −2εz and the restore +εz exactly as ``Trainer.step`` does with a zero update (η = 0),
so any change of θ after T steps is rounding drift. Reported per dtype and track: the largest and the RMS
change, relative to the RMS of θ₀ and to the size of one paper-scale update (η·|z| with η = 1e-4).

    .venv/bin/python benchmarks/drift.py --steps 1000 --model tiny-llama
"""

from __future__ import annotations

import argparse
import json

import torch

from paczero.models.config import ModelConfig
from paczero.models.loaders import load_model
from paczero.zo import Directions


def drift(model: str, track: str, dtype: str, steps: int, eps: float) -> dict[str, float]:
    loaded = load_model(ModelConfig(name=model, track=track, dtype=dtype))
    params = [p for _, p in loaded.trainable]
    if track == "lora":  # B = 0 at init would hide the drift of half its entries: start from a trained-like B
        gen = torch.Generator().manual_seed(1)
        for name, p in loaded.trainable:
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    theta0 = torch.cat([p.detach().double().flatten() for p in params])
    directions = Directions(params)
    for seed in range(steps):
        directions.apply([(seed, eps)])
        directions.apply([(seed, -2 * eps)])
        directions.apply([(seed, eps)])  # the fused restore with η·b = 0
    delta = torch.cat([p.detach().double().flatten() for p in params]) - theta0
    rms0 = float(theta0.pow(2).mean().sqrt())
    return {
        "model": model,
        "track": track,
        "dtype": dtype,
        "param_dtype": str(params[0].dtype).removeprefix("torch."),
        "steps": steps,
        "parameters": theta0.numel(),
        "max_abs_drift": float(delta.abs().max()),
        "rms_drift": float(delta.pow(2).mean().sqrt()),
        "rms_drift_over_rms_theta": float(delta.pow(2).mean().sqrt()) / rms0,
        "rms_drift_over_one_update": float(delta.pow(2).mean().sqrt()) / 1e-4,  # η·E|z|² ^½ = 1e-4
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        drift(args.model, track, dtype, args.steps, args.eps)
        for track in ("full", "lora")
        for dtype in ("float32", "bfloat16", "float16")
    ]
    print(
        "| track | model dtype | trainable dtype | max |Δθ| | RMS Δθ | RMS Δθ / RMS θ | RMS Δθ / one update |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['track']} | {r['dtype']} | {r['param_dtype']} | {r['max_abs_drift']:.2e} | "
            f"{r['rms_drift']:.2e} | {r['rms_drift_over_rms_theta']:.2e} | "
            f"{r['rms_drift_over_one_update']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
