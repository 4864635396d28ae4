"""Tasks defined in YAML over local files (:mod:`paczero.tasks.files`) or a Hugging Face hub data set.

A file is read and checked completely before any example is returned: a bad record raises an error that
names the file, the line or row and the problem (missing field, unknown label, empty text, wrong encoding,
bad JSON or CSV), so a run never starts on a partially read file.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paczero.tasks.data import Example
from paczero.tasks.files import FOLDER, FORMATS, is_readable_source, is_table, read_records

KINDS = ("classification", "generation")


@dataclass
class CustomTaskConfig:
    """Where a custom task's records come from and which fields hold the label or the answer.

    The prompt template (``task.prompt``, ``{field}`` placeholders) and the label words
    (``task.label_words``) live in the task section; the fields the template names must be in every record.
    """

    kind: str = "classification"  # classification (label words) or generation (answers, F1/EM)
    train: str | None = None  # local data file or save_to_disk folder; pool and dev are drawn from it
    test: str | None = None  # local file or folder for the test split; unset with hub unset: no test set
    hub: str | None = None  # Hugging Face data set id, instead of local files
    hub_config: str | None = None
    train_split: str = "train"
    test_split: str | None = "validation"
    label_field: str = "label"
    labels: list[str] | None = None  # label values in label_words order; unset: integers 0..C-1
    answer_field: str = "answer"  # text, list of texts, or {"text": [...]} (the SQuAD layout)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task.custom.kind must be one of {KINDS}, got {self.kind!r}")
        if (self.train is None) == (self.hub is None):
            raise ValueError("task.custom needs exactly one source: a local 'train' file or a 'hub' data set")
        if self.hub is not None and self.test is not None:
            raise ValueError("task.custom.test is for local files; with 'hub' set 'test_split' instead")
        for path in (self.train, self.test):
            if path is not None and not is_readable_source(path):
                raise ValueError(
                    f"{path}: unknown format; use one of {', '.join(FORMATS)} as the extension, or {FOLDER}"
                )
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task.custom.labels has duplicates: {self.labels}")


def template_fields(template: str) -> tuple[str, ...]:
    """The ``{field}`` names a prompt template uses, in order of first use."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"prompt placeholder {{{name}}} must be a plain field name")
            if name not in names:
                names.append(name)
    return tuple(names)


def render(template: str, example: Example) -> str:
    """The prompt of one example."""
    try:
        return template.format(**example.fields)
    except KeyError as err:
        raise ValueError(f"prompt template uses {err} which the example does not have") from None


@dataclass(frozen=True)
class RecordSchema:
    """What a record must hold: non-empty text fields, and a known label or at least one answer."""

    text_fields: tuple[str, ...]
    label_field: str | None = None
    labels: tuple[str, ...] | None = None  # allowed values in class order; None: integers 0..classes-1
    classes: int = 0
    answer_field: str | None = None

    def required(self) -> list[str]:
        return [*self.text_fields, *(f for f in (self.label_field, self.answer_field) if f is not None)]

    def example(self, record: dict[str, Any], where: str) -> Example:
        """Check one record and turn it into an Example; ``where`` (file:line) prefixes every error."""
        for name in self.required():
            if name not in record or record[name] is None:
                raise ValueError(f"{where}: missing field '{name}'")
        fields = {name: self._text(record[name], name, where) for name in self.text_fields}
        label = None if self.label_field is None else self._label(record[self.label_field], where)
        answers = () if self.answer_field is None else self._answers(record[self.answer_field], where)
        return Example(fields=fields, label=label, answers=answers)

    @staticmethod
    def _text(value: Any, name: str, where: str) -> str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: field '{name}' must be text, got a {type(value).__name__}")
        text = str(value).strip()
        if not text:
            raise ValueError(f"{where}: field '{name}' is empty")
        return text

    def _label(self, value: Any, where: str) -> int:
        raw = str(value).strip()
        if self.labels is not None:
            if raw not in self.labels:
                raise ValueError(f"{where}: unknown label {raw!r} (expected one of {list(self.labels)})")
            return self.labels.index(raw)
        try:
            label = int(raw)
        except ValueError:
            label = -1
        if isinstance(value, bool) or not 0 <= label < self.classes or str(label) != raw:
            raise ValueError(f"{where}: unknown label {raw!r} (expected an integer 0..{self.classes - 1})")
        return label

    def _answers(self, value: Any, where: str) -> tuple[str, ...]:
        texts = value.get("text") if isinstance(value, dict) else value
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(
                f"{where}: field '{self.answer_field}' must be a text, a list of texts or {{\"text\": [...]}}"
            )
        answers = tuple(t.strip() for t in texts if t.strip())
        if not answers:
            raise ValueError(f"{where}: field '{self.answer_field}' is empty")
        return answers

    def examples(self, records: Iterable[tuple[str, dict[str, Any]]]) -> list[Example]:
        return [self.example(record, where) for where, record in records]


def read_examples(path: str | Path, schema: RecordSchema, split: str | None = None) -> list[Example]:
    """All examples of a local file or folder, checked against the schema (the header first for CSV/TSV)."""
    records = read_records(path, split)
    if is_table(path):
        header = list(records[0][1])
        for name in schema.required():
            if name not in header:
                raise ValueError(f"{path}:1: missing field '{name}' (the header has {header})")
    return schema.examples(records)


def hub_examples(name: str, config: str | None, split: str, schema: RecordSchema) -> list[Example]:
    """All examples of one split of a Hugging Face hub data set, checked against the schema."""
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            f"task.custom.hub={name!r} needs the `datasets` package (pip install 'paczero[hub]'); "
            "or point task.custom.train at a local file"
        ) from None
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the hub raises many kinds of errors when offline or misnamed
        raise RuntimeError(f"could not load {name!r} split {split!r} from the hub ({err})") from None
    return schema.examples((f"hub {name} [{split}] row {i}", dict(row)) for i, row in enumerate(rows))


def record_schema(cfg: CustomTaskConfig, prompt: str, label_words: list[str]) -> RecordSchema:
    """What every record of a custom task must hold.

    The text fields are those the prompt names, and for classification those the label words name
    (multiple choice: ``" {choice1}"``).
    """
    classes = len(label_words)
    templates = [prompt, *label_words] if cfg.kind == "classification" else [prompt]
    fields = dict.fromkeys(name for t in templates for name in template_fields(t))
    if cfg.kind == "classification" and cfg.labels is not None and len(cfg.labels) != classes:
        raise ValueError(
            f"task.custom.labels has {len(cfg.labels)} values but task.label_words has {classes}"
        )
    return RecordSchema(
        text_fields=tuple(fields),
        label_field=cfg.label_field if cfg.kind == "classification" else None,
        labels=tuple(cfg.labels) if cfg.labels is not None else None,
        classes=classes,
        answer_field=cfg.answer_field if cfg.kind == "generation" else None,
    )


def load_custom(
    cfg: CustomTaskConfig, prompt: str, label_words: list[str]
) -> tuple[list[Example], list[Example]]:
    """Train and test examples of a custom task; the test list is empty when no test source is set."""
    schema = record_schema(cfg, prompt, label_words)
    if cfg.hub is not None:
        train = hub_examples(cfg.hub, cfg.hub_config, cfg.train_split, schema)
        test = hub_examples(cfg.hub, cfg.hub_config, cfg.test_split, schema) if cfg.test_split else []
        return train, test
    train = read_examples(cfg.train, schema, cfg.train_split)
    test = read_examples(cfg.test, schema, cfg.test_split) if cfg.test is not None else []
    return train, test
