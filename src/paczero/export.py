"""Release bundles: what may leave the machine from a run directory, and nothing else.

A bundle holds the public outputs of a finished run (summary, privacy statement, config, the verified
transcript and its head, the model unless ``transcript_only``) and a manifest of SHA-256 digests. It never
holds ``secret.json``, the checkpoints (their ``privacy.json`` predicts the coins and noise), temporary files,
or any file created private (not readable by group or others).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from paczero.checkpoint import CHECKPOINTS, SECRET, RunDirError, public_run_config
from paczero.transcript import HEAD, TRANSCRIPT, read_transcript

EXCLUDED = (SECRET, CHECKPOINTS)
MANIFEST = "MANIFEST.json"


@dataclass
class Bundle:
    """What an export wrote and what it left out (with the reason)."""

    path: Path
    files: dict[str, str]  # relative path -> SHA-256
    skipped: dict[str, str]  # relative path -> reason


def _reason_to_skip(rel: Path, path: Path, transcript_only: bool) -> str | None:
    if rel.parts[0] in EXCLUDED:
        return "secret or checkpoint"
    if any(part.startswith(".") for part in rel.parts):
        return "temporary or hidden"
    if path.is_symlink():
        return "symbolic link"
    if path.stat().st_mode & 0o044 == 0:
        return "private file (mode 0600)"
    if transcript_only and rel.parts[0] == "model":
        return "model left out (--transcript-only): replay rebuilds it from the transcript"
    return None


def export_run(run_dir: str | Path, output: str | Path, transcript_only: bool = False) -> Bundle:
    """Copy a finished run's public outputs to ``output`` (a new or empty directory) with a manifest."""
    run_dir, output = Path(run_dir), Path(output)
    for needed in ("summary.json", "privacy.md", TRANSCRIPT, HEAD):
        if not (run_dir / needed).is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished run: no {needed}")
    read_transcript(run_dir, public_run_config(run_dir).to_dict())  # refuse a broken transcript
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RunDirError(f"export destination {output} exists and is not an empty directory")
    output_resolved, run_resolved = output.resolve(), run_dir.resolve()
    if output_resolved == run_resolved or run_resolved in output_resolved.parents:
        raise RunDirError("export destination must lie outside the run directory")
    files, skipped = {}, {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if path.is_dir() and not path.is_symlink():
            continue
        reason = _reason_to_skip(rel, path, transcript_only)
        if reason is not None:
            skipped[rel.as_posix()] = reason
            continue
        target = output / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        files[rel.as_posix()] = hashlib.sha256(target.read_bytes()).hexdigest()
    (output / MANIFEST).write_text(json.dumps({"files": files}, indent=2))
    return Bundle(path=output, files=files, skipped=skipped)
