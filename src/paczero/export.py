"""Release bundles: what may leave the machine from a run directory, and nothing else.

A bundle holds the public outputs of a finished run (:func:`paczero.rundir.is_public`: summary, privacy
statement, config, the verified transcript and its head, the model with its card unless ``transcript_only``,
the public report) and a manifest of SHA-256 digests. With ``merge``, a LoRA run's model is the adapter merged
into the base weights: a folder plain transformers loads. Everything else is left out by rule, not by file
mode: the private area (secret, per-step private state, timings, audits against the ground truth), the
checkpoints, temporary files, links and any file the run did not write as a public output. A run with
deterministic privacy randomness is not private; it is exported only when asked for explicitly, and the bundle
then says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from paczero.config import RunConfig
from paczero.report.card import model_card
from paczero.rundir import (
    HEAD,
    INSECURE_NOTE,
    LOCK,
    MODEL,
    STATEMENT,
    SUMMARY,
    TRANSCRIPT,
    RunDirError,
    is_public,
    public_run_config,
)
from paczero.transcript import read_transcript

MANIFEST = "MANIFEST.json"
NOT_PRIVATE = "NOT-PRIVATE.txt"


class InsecureExportError(RunDirError):
    """An export of a run whose privacy randomness was deterministic, without ``--allow-insecure``."""


@dataclass
class Bundle:
    """What an export wrote and what it left out (with the reason)."""

    path: Path
    files: dict[str, str]  # relative path -> SHA-256
    skipped: dict[str, str]  # relative path -> reason
    private: bool


def _reason_to_skip(rel: str, path: Path, transcript_only: bool) -> str | None:
    if rel == LOCK:
        return "the run directory's lock (run-internal: it exists while a command uses the run)"
    if path.is_symlink():
        return "symbolic link"
    if not is_public(rel):
        return "not a public output (private area, checkpoints or unknown file)"
    if transcript_only and rel.startswith(f"{MODEL}/"):
        return "model left out (--transcript-only): replay rebuilds it from the transcript"
    return None


def _check_exportable(run_dir: Path, output: Path, allow_insecure: bool) -> RunConfig:
    """The run's public config, once the run is finished, its transcript verified and ``output`` usable."""
    for needed in (SUMMARY, STATEMENT, TRANSCRIPT, HEAD):
        if not (run_dir / needed).is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished run: no {needed}")
    cfg = public_run_config(run_dir)
    read_transcript(run_dir, cfg.to_dict())  # refuse a broken transcript
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RunDirError(f"export destination {output} exists and is not an empty directory")
    output_resolved, run_resolved = output.resolve(), run_dir.resolve()
    if output_resolved == run_resolved or run_resolved in output_resolved.parents:
        raise RunDirError("export destination must lie outside the run directory")
    if not cfg.private and not allow_insecure:
        raise InsecureExportError(
            f"{run_dir} is not private: {INSECURE_NOTE} Export it anyway with --allow-insecure (the bundle "
            f"then carries {NOT_PRIVATE})."
        )
    return cfg


def _write_merged(run_dir: Path, cfg: RunConfig, model_dir: Path) -> None:
    """The run's selected LoRA model with the adapter merged into the base weights, and its card."""
    from paczero.models.loaders import load_finetuned, save_merged

    save_merged(load_finetuned(cfg.model, run_dir / MODEL), model_dir)
    summary = json.loads((run_dir / SUMMARY).read_text())
    (model_dir / "README.md").write_text(model_card(summary, merged=True))


def export_run(
    run_dir: str | Path,
    output: str | Path,
    transcript_only: bool = False,
    allow_insecure: bool = False,
    merge: bool = False,
) -> Bundle:
    """Copy a finished run's public outputs to ``output`` (a new or empty directory) with a manifest.

    ``merge``: for a LoRA run, ``model/`` holds the adapter merged into the base weights (a plain transformers
    model) instead of the adapter; a full-track run's ``model/`` already is one.
    """
    run_dir, output = Path(run_dir), Path(output)
    if merge and transcript_only:
        raise ValueError("--merge writes the model and --transcript-only leaves it out: choose one")
    cfg = _check_exportable(run_dir, output, allow_insecure)
    merge = merge and cfg.model.track == "lora"
    skipped = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        reason = _reason_to_skip(rel, path, transcript_only)
        if reason is None and merge and rel.startswith(f"{MODEL}/"):
            reason = "adapter replaced by the merged model (--merge)"
        if reason is not None:
            skipped[rel] = reason
            continue
        target = output / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if merge:
        _write_merged(run_dir, cfg, output / MODEL)
    if not cfg.private:
        (output / NOT_PRIVATE).write_text(INSECURE_NOTE + "\n")
    files = {}
    for path in sorted(p for p in output.rglob("*") if p.is_file()):
        path.chmod(0o644)
        files[path.relative_to(output).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {"private": cfg.private, "files": files}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Bundle(path=output, files=files, skipped=skipped, private=cfg.private)
