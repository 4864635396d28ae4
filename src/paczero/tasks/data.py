"""Examples, the MeZO data protocol, and SST-2 readers: packaged files, a local folder, or the hub."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Example:
    """One record: named text fields (used by the prompt template), a class label or gold answers."""

    fields: dict[str, str]
    label: int | None = None
    answers: tuple[str, ...] = ()  # generation tasks: every acceptable answer


@dataclass(frozen=True)
class Splits:
    """The MeZO protocol: a training pool, a dev set disjoint from it (from train), a test set."""

    pool: list[Example]
    dev: list[Example]
    test: list[Example]


def mezo_splits(
    train: list[Example], validation: list[Example], pool: int, dev: int, test: int, seed: int
) -> Splits:
    """Pool and dev drawn without overlap from train, test from validation, all with the data seed."""
    if pool + dev > len(train):
        raise ValueError(f"pool ({pool}) + dev ({dev}) exceed the {len(train)} training examples")
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(len(train))
    test_idx = rng.permutation(len(validation))[: min(test, len(validation))]
    return Splits(
        pool=[train[i] for i in order[:pool]],
        dev=[train[i] for i in order[pool : pool + dev]],
        test=[validation[i] for i in sorted(test_idx)],
    )


def read_sentence_label_file(path: Path) -> list[Example]:
    """Read a TSV (header ``sentence<TAB>label``, GLUE style) or JSONL file of sentence/label records."""
    examples: list[Example] = []
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        rec = _json_record(line, path, lineno)
                        examples.append(
                            _sentence_example(rec.get("sentence"), rec.get("label"), path, lineno)
                        )
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                if not reader.fieldnames or not {"sentence", "label"} <= set(reader.fieldnames):
                    raise ValueError(
                        f"{path}: header must name 'sentence' and 'label', got {reader.fieldnames}"
                    )
                for lineno, row in enumerate(reader, 2):
                    examples.append(_sentence_example(row["sentence"], row["label"], path, lineno))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def _json_record(line: str, path: Path, lineno: int) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}:{lineno}: each line must be a JSON object")
    return rec


def _sentence_example(sentence, label, path: Path, lineno: int) -> Example:
    if sentence is None or not str(sentence).strip():
        raise ValueError(f"{path}:{lineno}: empty or missing sentence")
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise ValueError(f"{path}:{lineno}: label {label!r} is not 0 or 1") from None
    if value not in (0, 1):
        raise ValueError(f"{path}:{lineno}: label {value} is not 0 or 1")
    return Example(fields={"sentence": str(sentence).strip()}, label=value)


SST2_FILES = {
    "train": ("train.tsv", "train.jsonl"),
    "validation": ("dev.tsv", "validation.jsonl", "dev.jsonl"),
}


HUB = "hub"  # task.data_dir value that reads the task's data set from the Hugging Face hub


class DataUnavailable(OSError):
    """A data set that cannot be read here (no `datasets` package, or the hub out of reach); the message
    names the fix."""


def packaged_data(task: str) -> Path:
    """Folder of the data shipped inside the package for ``task`` (sst2: full GLUE; squad: a sample)."""
    return Path(str(resources.files("paczero").joinpath("data", task)))


def local_files(root: Path, names: dict[str, tuple[str, ...]], what: str) -> list[Path]:
    """The first existing file of each split in ``root``, or an error naming what was looked for."""
    if not root.is_dir():
        raise FileNotFoundError(f"{what} data directory not found: {root}")
    found = []
    for split, candidates in names.items():
        paths = [root / n for n in candidates if (root / n).is_file()]
        if not paths:
            raise FileNotFoundError(f"{root}: no {split} file (looked for {', '.join(candidates)})")
        found.append(paths[0])
    return found


def load_sst2(data_dir: str | None) -> tuple[list[Example], list[Example]]:
    """SST-2 train and validation: the packaged GLUE files, a local folder, or the hub (``hub``)."""
    if data_dir == HUB:
        return _sst2_from_hub()
    root = packaged_data("sst2") if data_dir is None else Path(data_dir)
    train, validation = (read_sentence_label_file(p) for p in local_files(root, SST2_FILES, "SST-2"))
    return train, validation


def _sst2_from_hub() -> tuple[list[Example], list[Example]]:
    try:
        import datasets
    except ImportError:
        raise DataUnavailable(
            "task.data_dir: hub needs the `datasets` package (pip install 'paczero[hub]'); "
            "or leave task.data_dir unset to use the SST-2 files shipped with paczero"
        ) from None
    try:
        ds = datasets.load_dataset("stanfordnlp/sst2")
    except Exception as err:  # the hub raises many kinds of errors when offline
        raise DataUnavailable(
            f"could not load stanfordnlp/sst2 from the hub ({type(err).__name__}); leave task.data_dir unset "
            "to use the SST-2 files shipped with paczero, or set it to a folder with train.tsv and dev.tsv"
        ) from None
    train, validation = (
        [Example({"sentence": r["sentence"].strip()}, int(r["label"])) for r in ds[split]]
        for split in ("train", "validation")
    )
    return train, validation


POSITIVE = ("good", "great", "wonderful", "brilliant", "excellent", "lovely", "superb")
NEGATIVE = ("bad", "awful", "boring", "dull", "horrible", "poor", "terrible")
NOUNS = ("movie", "film")


def synthetic_sentiment(n: int, seed: int) -> list[Example]:
    """A small, separable sentiment set for tests: the adjectives decide the label."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for _ in range(n):
        label = int(rng.integers(2))
        words = POSITIVE if label else NEGATIVE
        a, b = rng.choice(len(words), size=2)
        noun = NOUNS[int(rng.integers(len(NOUNS)))]
        out.append(Example({"sentence": f"a {words[a]} {noun} , {words[b]} ."}, label))
    return out
