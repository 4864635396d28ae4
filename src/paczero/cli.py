"""Command line: ``paczero train | eval | replay | export | privacy | compare | sweep | audit mia |
audit transcript | report | bench`` (``paczero COMMAND --help`` for each)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

from paczero import channel
from paczero.configs import resolve_config
from paczero.rundir import MODEL


def _train(args: argparse.Namespace) -> int:
    from paczero.distributed import launched_as_main
    from paczero.rundir import RunWriteError, hold_run_dir, write_failure

    out = Path(args.resume or args.output_dir or "")
    if args.resume is None and args.output_dir is None:
        raise ValueError("train needs --output-dir (or --resume RUN_DIR)")
    if args.resume is not None and args.output_dir is not None and Path(args.output_dir) != out:
        raise ValueError(f"--resume continues the run in {out}; --output-dir must be that directory or unset")
    main_process = launched_as_main()  # under torchrun only rank 0 owns the run directory
    try:
        with hold_run_dir(out, "train", create=True) if main_process else nullcontext():
            return _train_in(out, args, main_process)
    except RunWriteError as err:  # a full disk, no permission, a read-only file system: a runtime failure
        print(f"paczero: error: {write_failure(err, out)}", file=sys.stderr)
        return 1


def _train_in(out: Path, args: argparse.Namespace, main_process: bool) -> int:
    """``train`` once the run directory is this process's."""
    from paczero.config import load_config
    from paczero.distributed import shutdown
    from paczero.interrupt import Interrupted, graceful_stop
    from paczero.report.console import train_report
    from paczero.resume import resume_config
    from paczero.rundir import check_run_dir, clear_run_dir
    from paczero.trainer import Trainer

    if main_process:
        check_run_dir(out, resume=args.resume is not None, overwrite=args.overwrite)
    if args.resume is not None:
        cfg = resume_config(out, args.config, args.set)
    else:
        cfg = load_config(resolve_config(args.config) if args.config else None, args.set)
    trainer = Trainer(cfg, out, resume=args.resume is not None)  # setup (data, model) before touching out
    if args.overwrite and args.resume is None and main_process:
        clear_run_dir(out)
    try:
        with graceful_stop(trainer.checkpoints):
            summary = trainer.run()
    except Interrupted as stop:
        print(f"paczero: {stop}; continue with: paczero train --resume {out}", file=sys.stderr)
        return 128 + stop.signum
    shutdown(trainer.dist)
    if not main_process:
        return 0
    nonfinite = sum(r.nonfinite or 0 for r in trainer.records)
    if nonfinite:
        print(
            f"paczero: warning: {nonfinite} non-finite per-example loss differences were set to 0 "
            "(the documented rule; per step in steps.jsonl 'nonfinite')",
            file=sys.stderr,
        )
    print(train_report(summary, out, trainer.timing["wall_time_s"]))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from paczero.config import load_config
    from paczero.evaluate import evaluate_base, evaluate_run, evaluation_config
    from paczero.rundir import hold_run_dir

    if (args.run is None) == (args.config is None):
        raise ValueError("eval needs one of --run RUN_DIR (a trained model) or --config CFG (a base model)")
    if args.run is not None:
        if args.model is not None:
            raise ValueError("--model goes with --config (a base model); --run evaluates the run's own model")
        with hold_run_dir(args.run, "eval"):
            cfg = evaluation_config(args.run, args.set)  # J unneeded
            results = evaluate_run(cfg, Path(args.run) / MODEL, args.split)
    else:
        model = [f"model.name={args.model}"] if args.model is not None else []
        results = evaluate_base(load_config(resolve_config(args.config), [*args.set, *model]), args.split)
    print(json.dumps(results, indent=2))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from paczero.models.loaders import save_model
    from paczero.rundir import check_run_dir
    from paczero.transcript import replay

    out = Path(args.output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"replay output {out} exists and is not an empty directory")
    check_run_dir(args.transcript, resume=True)  # a run directory (or export bundle) with its config
    loaded, result = replay(args.transcript, args.base, args.step)
    save_model(loaded, out / MODEL)
    record = {"transcript": str(args.transcript), **vars(result)}
    (out / "replay.json").write_text(json.dumps(record, indent=2))
    print(
        f"replayed {result.steps} of {result.records} steps (transcript head {result.head[:16]}…) "
        f"from θ_0 without a forward pass; model written to {out / MODEL}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from paczero.export import export_run
    from paczero.rundir import hold_run_dir

    with hold_run_dir(args.run, "export"):
        bundle = export_run(args.run, args.output, args.transcript_only, args.allow_insecure)
    if not bundle.private:
        print("paczero: warning: exported a run that is NOT private (deterministic privacy randomness)")
    print(f"exported {len(bundle.files)} files to {bundle.path} (manifest MANIFEST.json); left out:")
    for rel, reason in bundle.skipped.items():
        print(f"  {rel}: {reason}")
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
        if args.steps is not None and args.sampling_rate is not None:
            from paczero.privacy.dp import calibrate_multiplier

            sigma = calibrate_multiplier(args.epsilon, args.delta, args.steps, args.sampling_rate)
            print(
                f"  noise multiplier σ = {sigma:.6g} for {args.steps} steps at Poisson rate "
                f"{args.sampling_rate:g}   (RDP, add/remove; the smallest σ with ε(σ) ≤ target)"
            )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from paczero.compare import entries_from, markdown_table, run_comparison

    rows = run_comparison(entries_from(args.config, args.sweep, args.set), args.output_dir)
    print(markdown_table(rows))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from paczero import sweep as sw

    plan = sw.load_sweep(args.file)
    if args.emit:
        print("\n".join(sw.emit_commands(plan, args.output_dir)))
        return 0
    if not args.aggregate_only:
        sw.run_sweep(plan, args.output_dir)
    print(sw.aggregate(plan, args.output_dir)[0])
    return 0


def _audit_mia(args: argparse.Namespace) -> int:
    from paczero.audit.mia import membership_audit, write_membership_audit
    from paczero.rundir import hold_run_dir

    with hold_run_dir(args.run, "audit mia"):
        audit = membership_audit(
            args.run, shadows=args.shadows, transcript=not args.no_transcript, seed=args.seed
        )
        out = write_membership_audit(audit, args.run)
    print(audit.to_markdown())
    print(
        f"written to {out}/mia.json and mia.md: private (scored against the secret subset; export never "
        "ships them); see them in a report with: paczero report --include-private RUN"
    )
    return 0


def _audit_transcript(args: argparse.Namespace) -> int:
    from paczero.audit.transcript import transcript_audit
    from paczero.config import load_config

    cfg = load_config(args.config, [*args.set, f"train.steps={args.steps}"])
    secrets = [int(x) for x in args.secrets.split(",")] if args.secrets else None
    result = transcript_audit(cfg, secrets, control=not args.no_control)
    print(json.dumps(result.to_dict(), indent=2))
    verdict = "PASS" if result.passed else "FAIL"
    print(f"{cfg.privacy.mechanism}: {verdict} (claim {result.guarantee})", end="")
    if result.control is not None:
        print(
            f"; negative control {result.control.mechanism}: "
            f"{'detected' if result.control_detected else 'NOT DETECTED (the audit is not trustworthy)'}",
            end="",
        )
    print()
    return 0 if result.passed and result.control_detected is not False else 1


def _report(args: argparse.Namespace) -> int:
    from paczero.report.html import write_report
    from paczero.rundir import hold_run_dir

    with hold_run_dir(args.dir, "report"):
        report = write_report(args.dir, include_private=args.include_private)
    for name, path in report.figures.items():
        print(f"{name}: {path}" + (f"  ({report.notes[name]})" if name in report.notes else ""))
    print(f"report: {report.html}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from paczero.bench.markdown import markdown
    from paczero.bench.step import BenchOptions, run_bench

    def ints(text: str | None) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split(",")) if text else ()

    options = BenchOptions(
        mechanisms=tuple(args.mechanisms.split(",")),
        repeats=args.repeats,
        reference=args.reference,
        memory=args.memory,
        sweep_n=ints(args.sweep_n),
        sweep_m=ints(args.sweep_m),
        threads=args.threads,
    )
    out = run_bench(args.config, args.set, options)
    text = markdown(out)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paczero", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fine-tune a model with a zeroth-order mechanism")
    train.add_argument("--config", help="YAML config (may inherit with base:); default: all defaults")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    train.add_argument("--output-dir", help="where summary.json, steps.jsonl, model/ go")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --output-dir")
    train.set_defaults(func=_train)

    rep = sub.add_parser("replay", help="rebuild a run's model from θ_0 and its verified transcript")
    rep.add_argument("--transcript", required=True, help="a run directory or export bundle")
    rep.add_argument("--base", help="base model name/directory, or a YAML config (default: the run's model)")
    rep.add_argument("--output-dir", required=True, help="where model/ and replay.json go")
    rep.add_argument("--step", type=int, help="replay this many steps (default: the selected best-dev step)")
    rep.set_defaults(func=_replay)

    ex = sub.add_parser("export", help="a release bundle of a finished run, without secrets or checkpoints")
    ex.add_argument("--run", required=True, help="a finished run's output directory")
    ex.add_argument("--output", required=True, help="a new or empty bundle directory")
    ex.add_argument("--transcript-only", action="store_true", help="leave the model out (replay rebuilds it)")
    ex.add_argument(
        "--allow-insecure",
        action="store_true",
        help="export a run with deterministic privacy randomness (NOT private; the bundle says so)",
    )
    ex.set_defaults(func=_export)

    ev = sub.add_parser(
        "eval", help="dev/test metrics of a run's trained model, or of a base model (zero-shot)"
    )
    ev.add_argument("--run", help="a run's output directory: evaluate its trained model")
    ev.add_argument("--config", help="a config (file or shipped name): evaluate its base model, untrained")
    ev.add_argument("--model", metavar="NAME_OR_DIR", help="with --config: this model instead of model.name")
    ev.add_argument("--split", choices=("dev", "test", "both"), default="both")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --run: task.test_size, task.dev_size or train.micro_batch_size; with --config: any key",
    )
    ev.set_defaults(func=_eval)

    pv = sub.add_parser("privacy", help="convert between MI, attack-success bound and DP ε")
    pv.add_argument("--mi", type=float, help="mutual information in nats")
    pv.add_argument("--epsilon", type=float, help="DP ε")
    pv.add_argument("--delta", type=float, default=0.0, help="DP δ (default 0)")
    pv.add_argument("--prior", type=float, default=0.5, help="prior membership probability (default 1/2)")
    pv.add_argument("--steps", type=int, help="with --epsilon and --sampling-rate: calibrate the DP noise")
    pv.add_argument("--sampling-rate", type=float, help="Poisson sampling rate q of the DP baselines")
    pv.set_defaults(func=_privacy)
    cmp = sub.add_parser(
        "compare", help="run several mechanisms on the same task, model, data and seeds; one table"
    )
    cmp.add_argument("--config", action="append", default=[], help="a run config (repeat for each run)")
    cmp.add_argument("--sweep", help="a sweep file whose cells are compared (e.g. a 'config' grid)")
    cmp.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="an override applied to every run"
    )
    cmp.add_argument("--output-dir", required=True, help="run directories and comparison.md/.csv go here")
    cmp.set_defaults(func=_compare)
    sw = sub.add_parser("sweep", help="expand a grid of configs, run or emit its cells, aggregate a table")
    sw.add_argument("file", help="sweep YAML (base, fixed, grid, table)")
    sw.add_argument("--output-dir", required=True, help="one run directory per cell goes here")
    sw.add_argument("--emit", action="store_true", help="print one command per unfinished cell, run nothing")
    sw.add_argument("--aggregate-only", action="store_true", help="only fold finished cells into the table")
    sw.set_defaults(func=_sweep)
    au = sub.add_parser("audit", help="empirical privacy audits of a run or a config")
    au_sub = au.add_subparsers(dest="audit", required=True)
    mia = au_sub.add_parser("mia", help="membership-inference attacks on a finished run vs its bound")
    mia.add_argument(
        "--run", required=True, help="a finished run's output directory (with its private/secret.json)"
    )
    mia.add_argument("--shadows", type=int, default=0, help="LiRA shadow trainings (each a full run)")
    mia.add_argument("--no-transcript", action="store_true", help="skip the transcript replay attack")
    mia.add_argument("--seed", type=int, default=0, help="auditor's seed (tie-breaks, shadow subsets)")
    mia.set_defaults(func=_audit_mia)
    tr = au_sub.add_parser(
        "transcript", help="re-run under several secrets; check releases against the ledger"
    )
    tr.add_argument("--config", required=True, type=resolve_config, help="YAML config (or a shipped name)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tr.add_argument("--steps", type=int, default=20, help="steps per re-run (default 20)")
    tr.add_argument("--secrets", help="comma-separated secret indices (default: 0, M/2, M-1)")
    tr.add_argument("--no-control", action="store_true", help="skip the quant_half negative control")
    tr.set_defaults(func=_audit_transcript)
    rp = sub.add_parser(
        "report", help="plots and a self-contained HTML page for a run or a directory of runs"
    )
    rp.add_argument("dir", help="a run directory, or a directory with run directories below it")
    rp.add_argument(
        "--include-private",
        action="store_true",
        help="add the membership-inference audit; written to DIR/private/report (never publish it)",
    )
    rp.set_defaults(func=_report)
    bn = sub.add_parser("bench", help="step time vs 2 forwards and vs the reference protocol; peak memory")
    bn.add_argument("--config", help="YAML config of the run to measure")
    bn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    bn.add_argument("--mechanisms", default="mezo,paczero-zpl,paczero-mi", help="comma-separated names")
    bn.add_argument("--repeats", type=int, default=3, help="timed repetitions per measurement (median)")
    bn.add_argument("--no-reference", dest="reference", action="store_false", help="skip the reference step")
    bn.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory phases")
    bn.add_argument("--sweep-n", help="pool sizes N for the step-time fit, e.g. 125,250,500,1000")
    bn.add_argument("--sweep-m", help="subset counts M for the flatness check, e.g. 2,128,1024")
    bn.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    bn.add_argument("--json", help="write the full result as JSON here")
    bn.add_argument("--markdown", help="write the markdown tables here")
    bn.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from paczero.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, OSError, ValueError, KeyError) as err:
        print(f"paczero: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
