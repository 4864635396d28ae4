"""The released transcript as the model: the weight-change sequence of a step, the hash chain, and replay.

Weights change only through the ZO engine's ``StepWalk`` (``paczero.zo``), which training and replay share.
Replaying a run's ``steps.jsonl`` (seeds, learning rate, released update values) from θ_0 therefore
reproduces its trainable weights bitwise (fp32), with no forward pass.

Each line of ``steps.jsonl`` carries ``prev_hash``, the SHA-256 of the previous line (of the genesis record, a
digest of the run's public config, for the first), and ``transcript.json`` records the head: the hash of the
last line. A changed, reordered, cut or extended transcript breaks the chain or misses the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paczero.rundir import HEAD, SUMMARY, TRANSCRIPT, append_line, atomic_write, public_run_config
from paczero.zo import Directions, replay_step

FORMAT = "paczero-transcript-v1"
# Keys that neither change the released transcript nor its accounting, or that are secret.
UNBOUND_KEYS = (
    ("train", "progress"),
    ("train", "report_to"),
    ("train", "checkpoint_every"),
    ("privacy", "secret_index"),
    ("privacy", "seed"),
)


@dataclass
class StepRecord:
    """One line of ``steps.jsonl``: the public transcript of a step and its diagnostics."""

    step: int
    lr: float
    seeds: list[int]
    released: list[float]  # Y_t per direction, as published (bit or noisy value)
    update: list[float]  # b_t per direction: θ ← θ − (lr/K)·Σ b·z
    kinds: list[str]
    unanimous: list[bool]
    positive_fraction: list[float]  # fraction of candidate subsets whose mean is >= 0
    q_plus: list[float | None]
    sigma: list[float | None]
    mi_step: float | None
    mi_spent: float | None
    loss: float | None  # mean of (l+ + l−)/2 over the pool: no extra forward pass; None for DP (private)
    clip_fraction: float | None  # None for DP: it depends on the private batch
    nonfinite: int | None
    epsilon_spent: float | None = None  # DP: ε after this step at the run's δ

    @classmethod
    def from_line(cls, line: str | dict[str, Any]) -> StepRecord:
        """The record of a ``steps.jsonl`` line (text or parsed), without the chain's ``prev_hash``."""
        raw = json.loads(line) if isinstance(line, str) else line
        return cls(**{k: v for k, v in raw.items() if k != "prev_hash"})


class TranscriptError(ValueError):
    """A transcript that fails verification: tampered, reordered, truncated or not a transcript."""


def bound_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's config (``RunConfig.to_dict()``) a transcript is bound to: all but UNBOUND_KEYS."""
    out = json.loads(json.dumps(config))
    for section, key in UNBOUND_KEYS:
        out.get(section, {}).pop(key, None)
    return out


def genesis_hash(config: dict[str, Any]) -> str:
    """The chain's start: a digest of the public config, so a transcript cannot be replayed under another."""
    canonical = json.dumps(bound_config(config), sort_keys=True, separators=(",", ":"))
    return _sha256(f"{FORMAT}\n{canonical}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TranscriptWriter:
    """Appends records to ``steps.jsonl`` with their chain hash; writes the head to ``transcript.json``."""

    def __init__(self, run_dir: Path, genesis: str, lines: Iterable[str] = ()):
        """Start a transcript, or (``lines``: the lines a checkpoint holds) rewrite it back to them."""
        self.run_dir, self.genesis = Path(run_dir), genesis
        self.lines = list(lines)
        self.head = _chain(self.lines, genesis)
        atomic_write(self.path, "".join(line + "\n" for line in self.lines).encode())

    @property
    def path(self) -> Path:
        return self.run_dir / TRANSCRIPT

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({**record, "prev_hash": self.head})
        append_line(self.path, line, 0o644)  # fsynced; a failed write leaves the file as it was
        self.lines.append(line)
        self.head = _sha256(line)

    def head_info(self) -> dict[str, Any]:
        return {"format": FORMAT, "genesis": self.genesis, "records": len(self.lines), "head": self.head}

    def write_head(self) -> None:
        atomic_write(self.run_dir / HEAD, json.dumps(self.head_info(), indent=2).encode())


def _chain(lines: list[str], genesis: str) -> str:
    """Verify that each line names its predecessor's hash; returns the head hash."""
    head = genesis
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TranscriptError(
                f"transcript line {number} is not valid JSON ({err.msg}): refused"
            ) from None
        if not isinstance(record, dict) or record.get("prev_hash") != head:
            raise TranscriptError(
                f"transcript line {number} does not follow line {number - 1} (hash chain broken): "
                "the transcript was changed, reordered or spliced; refused"
            )
        head = _sha256(line)
    return head


def read_transcript(run_dir: str | Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The verified step records of a run (without ``prev_hash``), checked against its config and head.

    Refuses (TranscriptError) a transcript whose chain is broken, that does not start from this config's
    genesis, or that does not end at the head recorded in ``transcript.json`` (and in ``summary.json``).
    """
    run_dir = Path(run_dir)
    path, head_path = run_dir / TRANSCRIPT, run_dir / HEAD
    for needed in (path, head_path):
        if not needed.is_file():
            raise TranscriptError(f"no transcript: {needed} is missing")
    try:
        raw = path.read_bytes().decode()
        head = json.loads(head_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TranscriptError(f"transcript files in {run_dir} are unreadable ({err}): refused") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise TranscriptError(f"{head_path} is not a {FORMAT} head record")
    if head.get("genesis") != genesis_hash(config):
        raise TranscriptError("the transcript was not made under this config (genesis hash differs): refused")
    if raw and not raw.endswith("\n"):
        raise TranscriptError(f"{path} ends in a partial line: the transcript was cut; refused")
    lines = raw.splitlines()
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        recorded = json.loads(summary_path.read_text()).get("transcript")
        if recorded is not None and recorded != head:
            raise TranscriptError("transcript.json and summary.json record different heads: refused")
    if _chain(lines, head["genesis"]) != head.get("head") or len(lines) != head.get("records"):
        raise TranscriptError(
            f"the transcript has {len(lines)} records and does not end at the recorded head "
            f"({head.get('records')} records): it was truncated or extended; refused"
        )
    records = [json.loads(line) for line in lines]
    for number, record in enumerate(records, 1):
        record.pop("prev_hash")
        if record.get("step") != number:
            raise TranscriptError(f"transcript line {number} holds step {record.get('step')}: refused")
    return records


@dataclass
class ReplayResult:
    """Where a replay stopped and what it reproduced."""

    steps: int  # steps applied from θ_0
    records: int  # steps in the transcript
    head: str


def replay(run_dir: str | Path, base: str | None = None, step: int | None = None):
    """Rebuild a run's trainable weights from θ_0 and its verified transcript alone (no forward pass).

    ``base`` replaces the config's model (a model name or directory, or a YAML config whose ``model``
    section is used), e.g. where the base weights live elsewhere; θ_0 is that base plus the deterministic
    LoRA init. ``step`` defaults to the run's selected (best-dev) step from ``summary.json``, else the last
    step. Returns the loaded model (a :class:`~paczero.models.loaders.LoadedModel`) and a
    :class:`ReplayResult`.
    """
    from paczero.config import load_config
    from paczero.mechanisms import get_mechanism
    from paczero.models.loaders import load_model

    run_dir = Path(run_dir)
    cfg = public_run_config(run_dir)
    records = read_transcript(run_dir, cfg.to_dict())
    if base is not None:
        base_path = Path(base)
        if base_path.suffix in (".yaml", ".yml"):
            cfg.model = load_config(base_path).model
        else:
            cfg.model.name = base
    if step is None:
        summary_path = run_dir / SUMMARY
        step = (
            json.loads(summary_path.read_text())["selected_step"] if summary_path.is_file() else len(records)
        )
    if not 0 <= step <= len(records):
        raise TranscriptError(f"cannot replay to step {step}: the transcript holds {len(records)} steps")
    loaded = load_model(cfg.model)
    directions = Directions([p for _, p in loaded.trainable])
    mechanism = get_mechanism(cfg.privacy.mechanism)
    for record in records[:step]:
        step_size = mechanism.step_size(record["lr"], len(record["seeds"]))
        replay_step(directions, cfg.train.zo_eps, record["seeds"], record["update"], step_size)
    head = json.loads((run_dir / HEAD).read_text())["head"]
    return loaded, ReplayResult(steps=step, records=len(records), head=head)
