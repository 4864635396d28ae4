"""The ``paczero`` command line: one table of commands, the options they share, logging and exit statuses.

Exit statuses: 0 success; 2 the command line or the config is wrong (nothing ran); 1 the command ran and
failed (data, model, disk, network). ``-v``/``-q`` set the log level of paczero, transformers and
huggingface_hub; third-party progress bars show only with ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paczero import __version__, commands
from paczero.commands import UsageError
from paczero.configs import resolve_config

Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    """One ``add_argument`` call, as data."""
    return flags, options


def config_file(text: str) -> str:
    """``--config``: a YAML file, or the name of a shipped config."""
    try:
        return str(resolve_config(text))
    except FileNotFoundError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# Options several commands share, each declared once.
SHARED: dict[str, tuple[Arg, ...]] = {
    "config": (arg("--config", type=config_file, help="YAML config file or shipped config name"),),
    "set": (
        arg("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeat)"),
    ),
    "output": (
        arg("--output-dir", "--output", dest="output_dir", metavar="DIR", help="where the outputs go"),
    ),
    "run": (arg("--run", metavar="RUN_DIR", help="a run's output directory (or an export bundle)"),),
    "verbosity": (
        arg("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (repeat)"),
        arg("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="errors only"),
    ),
}


@dataclass(frozen=True)
class Command:
    """A subcommand: what it does, an example, the shared options it takes and its own."""

    name: str
    handler: Callable[[argparse.Namespace], int]
    summary: str
    description: str
    example: str
    shared: tuple[str, ...] = ()
    args: tuple[Arg, ...] = ()
    required: tuple[str, ...] = ()  # shared options this command cannot do without


COMMANDS: tuple[Command, ...] = (
    Command(
        "train",
        commands.train,
        "fine-tune a model with a zeroth-order mechanism",
        "Fine-tune the model a config names and write the run directory: summary, transcript, privacy "
        "statement, the selected model with its card, and a private area that never leaves the machine.",
        "paczero train --config demo --output-dir runs/demo",
        ("config", "set", "output"),
        (
            arg("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint"),
            arg("--overwrite", action="store_true", help="replace a run already in --output-dir"),
        ),
    ),
    Command(
        "eval",
        commands.evaluate,
        "dev/test metrics of a run's trained model, or of a base model (zero-shot)",
        "Score a run's model on the dev and test sets it was trained with, or any model (a base model with "
        "--config, or a merged export with --run) on the data a config or run names.",
        "paczero eval --run runs/demo --model runs/demo-merged/model",
        ("run", "config", "set"),
        (
            arg("--model", metavar="NAME_OR_DIR", help="this model instead of the run's (or of model.name)"),
            arg("--split", choices=("dev", "test", "both"), default="both"),
        ),
    ),
    Command(
        "replay",
        commands.replay,
        "rebuild a run's model from θ_0 and its verified transcript",
        "Rebuild a run's model without its data: verify the transcript and re-apply every released update.",
        "paczero replay --run runs/demo-release --output-dir runs/demo-replayed",
        ("output",),
        (
            arg("--run", "--transcript", dest="run", required=True, help="a run directory or export bundle"),
            arg("--base", help="base model name/directory, or a YAML config (default: the run's model)"),
            arg("--step", type=int, help="replay this many steps (default: the selected best-dev step)"),
        ),
        required=("output_dir",),
    ),
    Command(
        "export",
        commands.export,
        "a release bundle of a finished run, without secrets or checkpoints",
        "Copy what may be published (model, card, transcript, summary, privacy statement, report) into a "
        "new folder with a manifest; optionally merge a LoRA adapter into the weights or push to the Hub.",
        "paczero export --run runs/demo --output-dir runs/demo-release --merge",
        ("run", "output"),
        (
            arg("--merge", action="store_true", help="LoRA: merge the adapter into the base weights"),
            arg("--transcript-only", action="store_true", help="leave the model out (replay rebuilds it)"),
            arg("--push-to-hub", metavar="REPO_ID", help="upload the bundle to this Hugging Face repo"),
            arg("--private-repo", action="store_true", help="with --push-to-hub: create the repo private"),
            arg("--allow-insecure", action="store_true", help="export a NOT private run (it says so)"),
        ),
        required=("run", "output_dir"),
    ),
    Command(
        "privacy",
        commands.privacy,
        "convert between MI, attack-success bound and DP ε",
        "Convert a mutual-information budget to the membership-attack bound and the matched DP ε, or the "
        "other way round; with --steps and --sampling-rate, calibrate a DP noise multiplier.",
        "paczero privacy --mi 0.33",
        (),
        (
            arg("--mi", type=float, help="mutual information in nats"),
            arg("--epsilon", type=float, help="DP ε"),
            arg("--delta", type=float, default=0.0, help="DP δ (default 0)"),
            arg("--prior", type=float, default=0.5, help="prior membership probability (default 1/2)"),
            arg("--steps", type=int, help="with --epsilon and --sampling-rate: calibrate the DP noise"),
            arg("--sampling-rate", type=float, help="Poisson sampling rate q of the DP baselines"),
        ),
    ),
    Command(
        "compare",
        commands.compare,
        "run several mechanisms on the same task, model, data and seeds; one table",
        "Train each config (or each cell of a sweep) on the same task, model, data and seeds, and write one "
        "comparison table.",
        "paczero compare --config a.yaml --config b.yaml --output-dir runs/compare",
        ("set", "output"),
        (
            arg("--config", action="append", default=[], type=config_file, help="a run config (repeat)"),
            arg("--sweep", help="a sweep file whose cells are compared (e.g. a 'config' grid)"),
        ),
        required=("output_dir",),
    ),
    Command(
        "sweep",
        commands.sweep,
        "expand a grid of configs, run or emit its cells, aggregate a table",
        "Expand a grid of configs into runs, run the unfinished ones (or print one command each) and fold "
        "the finished ones into a table.",
        "paczero sweep sweep.yaml --output-dir runs/sweep --emit",
        ("output",),
        (
            arg("file", help="sweep YAML (base, fixed, grid, table)"),
            arg("--emit", action="store_true", help="print one command per unfinished cell, run nothing"),
            arg("--aggregate-only", action="store_true", help="only fold finished cells into the table"),
        ),
        required=("output_dir",),
    ),
    Command(
        "report",
        commands.report,
        "plots and a self-contained HTML page for a run or a directory of runs",
        "Plot a run (or every run below a directory) and write a self-contained report.html beside it.",
        "paczero report --run runs/demo",
        ("run",),
        (
            arg("run_positional", nargs="?", metavar="RUN_DIR", help="the run (same as --run)"),
            arg("--include-private", action="store_true", help="add the audit (private; never publish)"),
        ),
    ),
    Command(
        "bench",
        commands.bench,
        "step time vs 2 forwards and vs the reference protocol; peak memory",
        "Time a step against two forward passes and the reference protocol, and measure peak memory.",
        "paczero bench --config demo --repeats 3 --json bench.json",
        ("config", "set"),
        (
            arg("--mechanisms", default="mezo,paczero-zpl,paczero-mi", help="comma-separated names"),
            arg("--repeats", type=int, default=3, help="timed repetitions per measurement (median)"),
            arg("--no-reference", dest="reference", action="store_false", help="skip the reference step"),
            arg("--no-memory", dest="memory", action="store_false", help="skip the peak-memory phases"),
            arg("--sweep-n", help="pool sizes N for the step-time fit, e.g. 125,250,500,1000"),
            arg("--sweep-m", help="subset counts M for the flatness check, e.g. 2,128,1024"),
            arg("--threads", type=int, help="torch intra-op threads (default: torch's choice)"),
            arg("--json", help="write the full result as JSON here"),
            arg("--markdown", help="write the markdown tables here"),
        ),
    ),
)

AUDITS: tuple[Command, ...] = (
    Command(
        "mia",
        commands.audit_mia,
        "membership-inference attacks on a finished run vs its bound",
        "Attack a finished run's membership (loss, transcript replay, optional LiRA shadows) and compare the "
        "attacks' success with the run's bound; the results are private.",
        "paczero audit mia --run runs/demo",
        ("run",),
        (
            arg("--shadows", type=int, default=0, help="LiRA shadow trainings (each a full run)"),
            arg("--no-transcript", action="store_true", help="skip the transcript replay attack"),
            arg("--seed", type=int, default=0, help="auditor's seed (tie-breaks, shadow subsets)"),
        ),
        required=("run",),
    ),
    Command(
        "transcript",
        commands.audit_transcript,
        "re-run under several secrets; check releases against the ledger",
        "Re-run a config under several secret indices and check what was released against the ledger, with "
        "a negative control that must be detected.",
        "paczero audit transcript --config demo --steps 20",
        ("config", "set"),
        (
            arg("--steps", type=int, default=20, help="steps per re-run (default 20)"),
            arg("--secrets", help="comma-separated secret indices (default: 0, M/2, M-1)"),
            arg("--no-control", action="store_true", help="skip the quant_half negative control"),
        ),
        required=("config",),
    ),
)


def _add_command(sub: Any, command: Command) -> None:
    """One subparser from its table entry: shared options, its own, and the example in the help."""
    parser = sub.add_parser(
        command.name,
        help=command.summary,
        description=textwrap.fill(command.description, 88),
        epilog=f"example:\n  {command.example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flags, options in (a for name in ("verbosity", *command.shared) for a in SHARED[name]):
        dest = options.get("dest") or flags[0].lstrip("-").replace("-", "_")
        parser.add_argument(*flags, **options, **({"required": True} if dest in command.required else {}))
    for flags, options in command.args:
        parser.add_argument(*flags, **options)
    parser.set_defaults(handler=command.handler)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, built from :data:`COMMANDS` and :data:`AUDITS`."""
    parser = argparse.ArgumentParser(
        prog="paczero",
        description="PAC-private zeroth-order fine-tuning of language models. "
        "Run 'paczero COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"paczero {__version__}")
    for flags, options in SHARED["verbosity"]:
        parser.add_argument(*flags, **options)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _add_command(sub, command)
    audit = sub.add_parser(
        "audit",
        help="empirical privacy audits of a run or a config",
        description="Empirical privacy audits: membership inference on a run, or transcripts under secrets.",
        epilog="example:\n  paczero audit mia --run runs/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audits = audit.add_subparsers(dest="audit", required=True, metavar="AUDIT")
    for command in AUDITS:
        _add_command(audits, command)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler writing to the ``sys.stderr`` of the moment (tests and tools replace it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)  # -q, default, -v, -vv


def configure_logging(verbosity: int) -> None:
    """Log levels of paczero, transformers and huggingface_hub; third-party progress bars only when > 0."""
    level = LEVELS[max(-1, min(verbosity, 2)) + 1]
    root = logging.getLogger("paczero")
    root.setLevel(level)
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("paczero: %(levelname)s: %(message)s"))
        root.addHandler(handler)
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity(level)
    if "transformers" in sys.modules:  # else it reads the level from the environment when imported
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(level)
    os.environ["TRANSFORMERS_VERBOSITY"] = logging.getLevelName(level).lower()
    third_party_progress(verbosity > 0)


def third_party_progress(show: bool) -> None:
    """Show or hide the progress bars of huggingface_hub, transformers and datasets (paczero's own stay)."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if show else disable_progress_bars)()  # transformers reads this when imported
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "0" if show else "1"  # read when datasets is imported
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    if "datasets" in sys.modules:
        import datasets

        (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    from paczero.config import ConfigError
    from paczero.rundir import RunDirError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error argparse has already printed
        return int(done.code or 0)
    configure_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    try:
        return args.handler(args)
    except (UsageError, ConfigError, RunDirError) as err:
        print(f"paczero: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as err:
        print(f"paczero: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
