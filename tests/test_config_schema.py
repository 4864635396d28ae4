"""The JSON Schema shipped for editors is generated from the config classes, current, and describes the real
configs: every shipped config passes it, and typos and wrong types fail it."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from paczero import config_schema
from paczero.config import TrainConfig
from paczero.config_reference import SECTIONS
from paczero.mechanisms import MECHANISMS
from paczero.tasks.config import TASKS
from paczero.tracking import REPORT_TO

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "paczero" / "configs" / "config.schema.json"
REGENERATE = "python -m paczero.config_schema --write"
CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "grid" not in (yaml.safe_load(p.read_text()) or {})
)
JSON = {"boolean": bool, "integer": int, "number": (int, float), "string": str, "null": type(None)}


def violations(schema: dict, value, where: str = "config") -> list[str]:
    """What a value breaks in a schema (the parts this schema uses: type, enum, anyOf, items, properties)."""
    if "anyOf" in schema:
        found = [violations(option, value, where) for option in schema["anyOf"]]
        return [] if any(not v for v in found) else found[0]
    kind = schema["type"]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        props = schema["properties"]
        return [f"{where}.{k}: unknown key" for k in value if k not in props] + [
            v for k, item in value.items() if k in props for v in violations(props[k], item, f"{where}.{k}")
        ]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [v for i, item in enumerate(value) for v in violations(schema["items"], item, f"{where}[{i}]")]
    if not isinstance(value, JSON[kind]) or (kind in ("integer", "number") and isinstance(value, bool)):
        return [f"{where}: not {kind}"]
    return [f"{where}: {value!r} not allowed"] if value not in schema.get("enum", [value]) else []


def test_the_shipped_schema_is_generated_from_the_current_config_classes():
    assert SHIPPED.read_text(encoding="utf-8") == config_schema.schema_text(), (
        f"stale schema; run {REGENERATE}"
    )
    assert config_schema.shipped_schema_path().read_text(encoding="utf-8") == SHIPPED.read_text(
        encoding="utf-8"
    )


@dataclasses.dataclass
class TrainWithWarmup(TrainConfig):
    warmup: int = 0  # steps of linear warm-up


def test_the_staleness_check_sees_a_new_key(monkeypatch):
    """Negative control: a key added to a config class makes the shipped schema stale."""
    sections = tuple((p, TrainWithWarmup if cls is TrainConfig else cls) for p, cls in SECTIONS)
    monkeypatch.setattr(config_schema, "SECTIONS", sections)
    assert config_schema.schema_text() != SHIPPED.read_text(encoding="utf-8")
    assert "warm-up" in json.dumps(
        config_schema.config_schema()["properties"]["train"]["properties"]["warmup"]
    )


def test_every_key_is_described_with_its_default_and_registries_give_the_names():
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    for prefix, cls in SECTIONS:
        node = schema
        for part in prefix.split("."):
            node = node["properties"][part]
            node = next((o for o in node.get("anyOf", []) if o.get("type") == "object"), node)
        for f in dataclasses.fields(cls):
            prop = node["properties"][f.name]
            assert prop["description"], f"{prefix}.{f.name}"
            assert "default" in prop or f.name == "custom"
    props = schema["properties"]
    assert props["task"]["properties"]["name"]["enum"] == list(TASKS)
    assert props["privacy"]["properties"]["mechanism"]["enum"] == list(MECHANISMS)
    assert props["train"]["properties"]["report_to"]["anyOf"][0]["enum"] == list(REPORT_TO)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_passes_the_schema(path):
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert violations(schema, yaml.safe_load(path.read_text()) or {}) == []


def test_the_schema_flags_a_typo_a_wrong_type_and_an_unknown_name():
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    bad = {"train": {"stpes": 3, "lr": "fast"}, "privacy": {"mechanism": "paczero-zlp"}, "base": 1}
    assert violations(schema, bad) == [
        "config.train.stpes: unknown key",
        "config.train.lr: not number",
        "config.privacy.mechanism: 'paczero-zlp' not allowed",
        "config.base: not string",
    ]
