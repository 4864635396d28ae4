"""What each ``paczero`` command does, given its parsed arguments (the parser is in :mod:`paczero.cli`).

A handler returns the exit status; it raises :class:`UsageError` for arguments that do not fit together
(exit 2, like argparse's own errors), and lets runtime failures propagate (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

from paczero import channel


class UsageError(ValueError):
    """Arguments that do not fit together: the command did not run (exit status 2)."""


def run_dir(args: argparse.Namespace) -> str:
    """The run a command names: ``--run RUN`` or the positional ``RUN`` (one of them)."""
    given = [r for r in (getattr(args, "run", None), getattr(args, "run_positional", None)) if r is not None]
    if len(given) != 1:
        raise UsageError("name one run: --run RUN_DIR (or RUN_DIR alone)")
    return given[0]


def train(args: argparse.Namespace) -> int:
    from paczero.distributed import launched_as_main
    from paczero.rundir import RunWriteError, hold_run_dir, write_failure

    out = Path(args.resume or args.output_dir or "")
    if args.resume is None and args.output_dir is None:
        raise UsageError("train needs --output-dir (or --resume RUN_DIR)")
    if args.resume is not None and args.output_dir is not None and Path(args.output_dir) != out:
        raise UsageError(f"--resume continues the run in {out}; --output-dir must be that directory or unset")
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
        cfg = load_config(args.config, args.set)
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


def evaluate(args: argparse.Namespace) -> int:
    from paczero.config import load_config
    from paczero.evaluate import evaluate_base, evaluate_run, evaluation_config
    from paczero.rundir import MODEL, hold_run_dir

    if (args.run is None) == (args.config is None):
        raise UsageError("eval needs one of --run RUN_DIR (a trained model) or --config CFG (a base model)")
    if args.run is not None:  # --model: another folder with this run's model, e.g. a merged export
        with hold_run_dir(args.run, "eval"):
            cfg = evaluation_config(args.run, args.set)  # J unneeded
            results = evaluate_run(cfg, args.model or Path(args.run) / MODEL, args.split)
    else:
        model = [f"model.name={args.model}"] if args.model is not None else []
        results = evaluate_base(load_config(args.config, [*args.set, *model]), args.split)
    print(json.dumps(results, indent=2))
    return 0


def replay(args: argparse.Namespace) -> int:
    from paczero.models.loaders import save_model
    from paczero.rundir import MODEL, RunDirError, check_run_dir, hold_run_dir
    from paczero.transcript import replay as replay_transcript

    out = Path(args.output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"replay output {out} exists and is not an empty directory")
    check_run_dir(args.run, resume=True)  # a run directory (or export bundle) with its config
    with hold_run_dir(args.run, "replay"):  # a run that is still writing its transcript is not read
        loaded, result = replay_transcript(args.run, args.base, args.step)
    save_model(loaded, out / MODEL)
    record = {"transcript": str(args.run), **vars(result)}
    (out / "replay.json").write_text(json.dumps(record, indent=2))
    print(
        f"replayed {result.steps} of {result.records} steps (transcript head {result.head[:16]}…) "
        f"from θ_0 without a forward pass; model written to {out / MODEL}"
    )
    return 0


def export(args: argparse.Namespace) -> int:
    from paczero.export import export_run
    from paczero.rundir import hold_run_dir

    if args.push_to_hub and args.transcript_only:
        raise UsageError("--push-to-hub shares a model: it does not go with --transcript-only")
    if args.merge and args.transcript_only:
        raise UsageError("--merge writes the model and --transcript-only leaves it out: choose one")
    with hold_run_dir(args.run, "export"):
        bundle = export_run(args.run, args.output_dir, args.transcript_only, args.allow_insecure, args.merge)
    if not bundle.private:
        print("paczero: warning: exported a run that is NOT private (deterministic privacy randomness)")
    print(f"exported {len(bundle.files)} files to {bundle.path} (manifest MANIFEST.json); left out:")
    for rel, reason in bundle.skipped.items():
        print(f"  {rel}: {reason}")
    if args.push_to_hub:
        from paczero.hub import push_bundle

        url = push_bundle(bundle.path, args.push_to_hub, private=args.private_repo)
        print(f"pushed to {url}: the model and its card at the top, the rest of the bundle in release/")
    return 0


def privacy(args: argparse.Namespace) -> int:
    if (args.mi is None) == (args.epsilon is None):
        raise UsageError("give exactly one of --mi or --epsilon")
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


def compare(args: argparse.Namespace) -> int:
    from paczero.compare import entries_from, markdown_table, run_comparison

    rows = run_comparison(entries_from(args.config, args.sweep, args.set), args.output_dir)
    print(markdown_table(rows))
    return 0


def sweep(args: argparse.Namespace) -> int:
    from paczero import sweep as sw

    plan = sw.load_sweep(args.file)
    if args.emit:
        print("\n".join(sw.emit_commands(plan, args.output_dir)))
        return 0
    if not args.aggregate_only:
        sw.run_sweep(plan, args.output_dir)
    print(sw.aggregate(plan, args.output_dir)[0])
    return 0


def audit_mia(args: argparse.Namespace) -> int:
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


def audit_transcript(args: argparse.Namespace) -> int:
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


def report(args: argparse.Namespace) -> int:
    from paczero.report.html import write_report
    from paczero.rundir import hold_run_dir

    run = run_dir(args)
    with hold_run_dir(run, "report"):
        report = write_report(run, include_private=args.include_private)
    for name, path in report.figures.items():
        print(f"{name}: {path}" + (f"  ({report.notes[name]})" if name in report.notes else ""))
    print(f"report: {report.html}")
    return 0


def bench(args: argparse.Namespace) -> int:
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
