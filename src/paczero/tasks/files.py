"""Records of a local data file or folder, each with where it came from (``file:line`` or ``file row i``).

JSON Lines, JSON (an array of objects, or JSON Lines), CSV and TSV need nothing beyond Python; Parquet files
and ``datasets.save_to_disk`` folders need the ``hub`` extra (``pyarrow``, ``datasets``). A file is read
whole or not at all: the first bad record raises an error naming the file and its line or row (rows count
from 0, as ``datasets`` and ``pyarrow`` index them).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from paczero.tasks.data import _json_record

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
FOLDER = "a datasets.save_to_disk folder"
Records = list[tuple[str, dict[str, Any]]]


def is_readable_source(path: str | Path) -> bool:
    """Whether ``path`` names a format this module reads: a known extension, or a folder."""
    return Path(path).suffix.lower() in FORMATS or Path(path).is_dir()


def read_records(path: str | Path, split: str | None = None) -> Records:
    """Every record of a file (or of ``split`` of a ``save_to_disk`` folder), with where it came from."""
    path = Path(path)
    if path.is_dir():
        records = _read_disk(path, split)
    elif not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    elif path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"{path}: unknown format; use one of {', '.join(FORMATS)} as the extension, or {FOLDER}"
        )
    elif FORMATS[path.suffix.lower()] == "parquet":
        records = _read_parquet(path)
    else:
        records = _read_text(path, FORMATS[path.suffix.lower()])
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def is_table(path: str | Path) -> bool:
    """CSV or TSV: every record has the header's fields (checked once, on the header)."""
    return FORMATS.get(Path(path).suffix.lower()) in ("csv", "tsv")


def _read_text(path: Path, fmt: str) -> Records:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start}); re-save the file as UTF-8"
        ) from None
    if fmt == "json" and text.lstrip().startswith("["):
        return _read_json_array(text, path)
    if fmt in ("json", "jsonl"):
        return _read_jsonl(text, path)
    return _read_table(text, path, fmt)


def _read_jsonl(text: str, path: Path) -> Records:
    return [
        (f"{path}:{lineno}", _json_record(line, path, lineno))
        for lineno, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def _read_json_array(text: str, path: Path) -> Records:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a JSON file must hold an array of objects, or one object per line")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path} row {i}: each record must be a JSON object, got {type(row).__name__}")
    return [(f"{path} row {i}", row) for i, row in enumerate(rows)]


def _read_table(text: str, path: Path, fmt: str) -> Records:
    # TSV as GLUE writes it: no quoting (a tab cannot occur inside a field); CSV with standard quoting
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",", quoting=quoting, strict=True
    )
    records = []
    try:
        header = reader.fieldnames
        if not header:
            return []
        if len(set(header)) != len(header):
            raise ValueError(f"{path}:1: header repeats a column name: {header}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or None in row.values():
                got = len(header) + len(row.get(None, [])) - sum(v is None for v in row.values())
                raise ValueError(f"{where}: {got} columns, the header has {len(header)}")
            records.append((where, row))
    except csv.Error as err:
        raise ValueError(f"{path}:{reader.line_num}: malformed {fmt.upper()} ({err})") from None
    return records


def _read_parquet(path: Path) -> Records:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError(f"{path}: Parquet needs pyarrow (pip install 'paczero[hub]')") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    return [(f"{path} row {i}", row) for i, row in enumerate(rows)]


def _read_disk(path: Path, split: str | None) -> Records:
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{path}: {FOLDER} needs `datasets` (pip install 'paczero[hub]')") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises several error types for folders it did not write
        raise ValueError(f"{path}: not {FOLDER} ({err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path}: no split {split!r} (it has {', '.join(loaded)})")
        loaded, path = loaded[split], Path(f"{path} [{split}]")
    return [(f"{path} row {i}", dict(row)) for i, row in enumerate(loaded)]
