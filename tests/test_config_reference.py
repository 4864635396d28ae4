"""docs/configuration.md is complete and current: every config key, with type, default and meaning."""

import dataclasses
from pathlib import Path

import pytest

from paczero import config_reference as ref
from paczero.config import ConfigError, load_config
from paczero.mechanisms import MECHANISMS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
REGENERATE = "python -m paczero.config_reference > docs/configuration.md"


def all_keys() -> list[str]:
    return [f"{prefix}.{f.name}" for prefix, cls in ref.SECTIONS for f in dataclasses.fields(cls)]


def test_the_page_is_generated_from_the_current_dataclasses():
    assert PAGE.read_text() == ref.generate(), f"docs/configuration.md is stale; regenerate: {REGENERATE}"


def test_every_key_has_a_row_with_a_type_a_default_and_a_meaning():
    page = ref.generate()
    for prefix, cls in ref.SECTIONS:
        for key, tp, default, _, meaning in ref.rows(prefix, cls):
            assert tp and default and meaning, f"{key} lacks a type, default or meaning"
            assert f"| `{key}` |" in page
    assert set(ref.top_level_sections()) <= {prefix for prefix, _ in ref.SECTIONS}


def test_help_and_allowed_values_name_only_existing_keys():
    keys = set(all_keys())
    assert not set(ref.HELP) - keys, "HELP names keys that no longer exist"
    assert not set(ref.ALLOWED) - keys, "ALLOWED names keys that no longer exist"


def test_every_registered_mechanism_is_listed():
    listed = ref.ALLOWED["privacy.mechanism"]()
    assert all(name in listed for name in MECHANISMS)


@pytest.mark.parametrize(
    "key, rejected",
    [
        ("train.schedule", "cosine"),
        ("privacy.budget_schedule", "greedy"),
        ("model.dtype", "int8"),
        ("model.track", "prefix"),
    ],
)
def test_listed_values_are_the_accepted_ones(key, rejected):
    for value in ref.ALLOWED[key]().split(", "):
        load_config(None, [f"{key}={value}"])
    with pytest.raises((ConfigError, ValueError)):
        load_config(None, [f"{key}={rejected}"])
