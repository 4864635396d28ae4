"""Command line: ``paczero train | eval | privacy``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paczero import channel


def _train(args: argparse.Namespace) -> int:
    from paczero.config import load_config
    from paczero.trainer import Trainer

    cfg = load_config(args.config, args.set)
    summary = Trainer(cfg, args.output_dir).run()
    dev = summary["dev"]["selected"]
    if "accuracy" in dev:
        print(f"dev accuracy {dev['accuracy']:.4f} (step {summary['selected_step']}), ", end="")
    if summary["test"]:
        print(f"test accuracy {summary['test']['accuracy']:.4f}", end="")
    print(f"; {summary['steps_run']} steps in {summary['wall_time_s']:.1f} s")
    print((Path(args.output_dir) / "privacy.md").read_text())
    return 0


def _eval(args: argparse.Namespace) -> int:
    from paczero.config import build_config, load_yaml_tree
    from paczero.evaluate import evaluate_run

    tree = load_yaml_tree(Path(args.run) / "config.yaml")
    tree["privacy"]["secret_index"] = None  # redacted in outputs; evaluation never needs it
    results = evaluate_run(build_config(tree), Path(args.run) / "model", args.split)
    print(json.dumps(results, indent=2))
    return 0


def _privacy(args: argparse.Namespace) -> int:
    if (args.mi is None) == (args.epsilon is None):
        raise SystemExit("give exactly one of --mi or --epsilon")
    if args.mi is not None:
        p = channel.attack_bound_from_mi(args.mi, args.prior)
        print(f"MI {args.mi:.6g} nats, prior {args.prior}")
        print(f"  attack-success bound p* = {p:.6f}   (largest p with KL(Bern(p) ‖ Bern(prior)) ≤ I)")
        if args.prior == 0.5:
            eps = channel.epsilon_from_attack_bound(p, args.delta)
            print(f"  matched ε = {eps:.6g} at δ = {args.delta:g}   (ε = log((p − δ)/(1 − p)))")
    else:
        p = channel.attack_bound_from_dp(args.epsilon, args.delta)
        mi = channel.mi_from_attack_bound(p)
        print(f"ε {args.epsilon:.6g}, δ {args.delta:g}")
        print(f"  attack-success bound p = {p:.6f}   (p = (e^ε + δ)/(1 + e^ε))")
        print(f"  matched MI = {mi:.6g} nats   (I = KL(Bern(p) ‖ Bern(1/2)) = ln 2 − h(p))")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paczero", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model with a zeroth-order mechanism")
    train.add_argument("--config", required=True, help="YAML config (may inherit with base:)")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    train.add_argument("--output-dir", required=True, help="where summary.json, steps.jsonl, model/ go")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a finished run's model on dev or test")
    ev.add_argument("--run", required=True, help="a run's output directory")
    ev.add_argument("--split", choices=("dev", "test", "both"), default="both")
    ev.set_defaults(func=_eval)

    pv = sub.add_parser("privacy", help="convert between MI, attack-success bound and DP ε")
    pv.add_argument("--mi", type=float, help="mutual information in nats")
    pv.add_argument("--epsilon", type=float, help="DP ε")
    pv.add_argument("--delta", type=float, default=0.0, help="DP δ (default 0)")
    pv.add_argument("--prior", type=float, default=0.5, help="prior membership probability (default 1/2)")
    pv.set_defaults(func=_privacy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from paczero.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"paczero: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
