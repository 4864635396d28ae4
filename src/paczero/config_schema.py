"""A JSON Schema of run configs, generated from the config dataclasses and shipped in the package, so that
an editor completes keys, shows their meaning and flags typos and wrong types while a config is written.

``python -m paczero.config_schema --write`` regenerates the shipped file (tests/test_config_schema.py fails
when it is stale); ``--path`` prints where it is installed. Types and defaults come from the dataclasses,
meanings and allowed values from the configuration reference, and the names from the live registries.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

from paczero.config_reference import ALLOWED, SECTION_TITLES, SECTIONS, field_comments, meaning

SCHEMA_FILE = "config.schema.json"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _enums() -> dict[str, tuple[str, ...]]:
    """Keys whose values a registry lists in full."""
    from paczero.mechanisms import MECHANISMS
    from paczero.models.config import DTYPES, TRACKS
    from paczero.tasks.config import TASKS
    from paczero.tasks.custom import KINDS
    from paczero.tracking import REPORT_TO

    return {
        "task.name": tuple(TASKS),
        "task.custom.kind": KINDS,
        "model.dtype": DTYPES,
        "model.track": TRACKS,
        "privacy.mechanism": tuple(MECHANISMS),
        "train.report_to": REPORT_TO,
    }


def type_schema(tp: Any, enum: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The JSON Schema of a type hint (a nested dataclass is a section of its own)."""
    if dataclasses.is_dataclass(tp):
        return section_schema(tp, _prefix_of(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(arg, enum) for arg in typing.get_args(tp)]}
    if typing.get_origin(tp) is list:
        return {"type": "array", "items": type_schema(typing.get_args(tp)[0], enum)}
    found: dict[str, Any] = {"type": JSON_TYPES[tp]}
    if enum is not None and tp is str:
        found["enum"] = list(enum)
    return found


def _prefix_of(cls: type) -> str:
    return next(prefix for prefix, section in SECTIONS if section is cls)


def _default(f: dataclasses.Field[Any]) -> Any:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return None if dataclasses.is_dataclass(value) else value


def section_schema(cls: type, prefix: str) -> dict[str, Any]:
    """One config section: its keys with type, default and meaning; no other keys."""
    hints, comments, enums = typing.get_type_hints(cls), field_comments(cls), _enums()
    properties = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        prop = type_schema(hints[f.name], enums.get(key))
        allowed = ALLOWED[key]() if key in ALLOWED else ""
        text = meaning(prefix, f, comments) or ""
        prop["description"] = f"{text} (allowed: {allowed})" if allowed else text
        if not dataclasses.is_dataclass(hints[f.name]):
            prop["default"] = _default(f)
        properties[f.name] = prop
    return {
        "type": "object",
        "description": SECTION_TITLES[prefix],
        "properties": properties,
        "additionalProperties": False,
    }


def config_schema() -> dict[str, Any]:
    """The schema of a whole config file: the sections, and ``base:`` (configs it extends)."""
    top = {prefix: section_schema(cls, prefix) for prefix, cls in SECTIONS if "." not in prefix}
    base = {
        "description": "configs this one extends (paths relative to this file; later ones win)",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "paczero run config",
        "type": "object",
        "properties": {"base": base, **top},
        "additionalProperties": False,
    }


def schema_text() -> str:
    """The schema as the shipped file holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_path() -> Path:
    """Where the installed package keeps the schema (what an editor should point at)."""
    return Path(str(resources.files("paczero.configs").joinpath(SCHEMA_FILE)))


if __name__ == "__main__":
    if sys.argv[1:] == ["--path"]:
        print(shipped_schema_path())
    elif sys.argv[1:] == ["--write"]:
        shipped_schema_path().write_text(schema_text(), encoding="utf-8")
    else:
        print(schema_text(), end="")
