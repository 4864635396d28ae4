"""Examples, the MeZO data protocol, and readers for local SST-2 files or the Hugging Face hub."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
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


def load_sst2(data_dir: str | None) -> tuple[list[Example], list[Example]]:
    """SST-2 train and validation splits from a local directory, else from the hub (``stanfordnlp/sst2``)."""
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"SST-2 data directory not found: {root}")
        splits = []
        for split, names in SST2_FILES.items():
            found = [root / n for n in names if (root / n).is_file()]
            if not found:
                raise FileNotFoundError(f"{root}: no {split} file (looked for {', '.join(names)})")
            splits.append(read_sentence_label_file(found[0]))
        return splits[0], splits[1]
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            "no local SST-2 data (task.data_dir is unset) and the `datasets` package is not installed "
            "to fetch stanfordnlp/sst2 from the hub: set task.data_dir to a folder with train.tsv and dev.tsv"
        ) from None
    try:
        ds = datasets.load_dataset("stanfordnlp/sst2")
    except Exception as err:  # the hub raises many kinds of errors when offline
        raise RuntimeError(
            f"could not load stanfordnlp/sst2 from the hub ({type(err).__name__}); "
            "set task.data_dir to a local folder with train.tsv and dev.tsv"
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
