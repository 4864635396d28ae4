"""The configuration reference, docs/configuration.md, generated from the config dataclasses.

``python -m paczero.config_reference > docs/configuration.md`` regenerates it; tests/test_config_reference.py
fails when the page is stale. A key's meaning is its field's ``metadata["help"]`` when set, else its entry in
``HELP`` below, else the comment after the field in the source; types and defaults come from the dataclasses.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

from paczero.config import PrivacyConfig, RunConfig, TrainConfig
from paczero.models.config import DTYPES, TINY_MODELS, TRACKS, ModelConfig
from paczero.tasks.config import OBJECTIVES, TASKS, TaskConfig
from paczero.tasks.custom import KINDS, CustomTaskConfig
from paczero.tasks.files import FOLDER, FORMATS
from paczero.tracking import REPORT_TO

SECTIONS: tuple[tuple[str, type], ...] = (
    ("task", TaskConfig),
    ("task.custom", CustomTaskConfig),
    ("model", ModelConfig),
    ("train", TrainConfig),
    ("privacy", PrivacyConfig),
)

# Meanings of the keys whose field has no comment, or too terse a one to stand alone.
HELP: dict[str, str] = {
    "task.label_words": "classification: the word each class is scored by, in label order",
    "task.custom": "the data source of a custom task (next section); for, and only for, task.name: custom",
    "train.steps": "T: the number of ZO steps",
    "train.lr": "learning rate η of the update θ ← θ − (η/K)·Σ_k released_k·z_k",
    "train.zo_eps": "perturbation size ε of the two-point estimate g_i = (l⁺_i − l⁻_i)/(2ε)",
    "train.directions": "K: random directions per step, each released separately",
    "train.eval_every": "dev evaluation cadence in steps (the candidates for selection); 0: only at the end",
    "privacy.subsets": "M: public candidate subsets, each example in exactly M/2; one, secret, is trained on",
    "task.name": "the task: a built-in data set, a synthetic one for tests, or custom (see task.custom)",
    "task.dev_size": "dev examples drawn for evaluation and best-step selection",
    "task.test_size": "test examples for the final metric of the selected model; 0: no test",
    "task.data_seed": "seed of the pool/dev/test draw (public)",
    "task.custom.hub_config": "configuration name of the hub data set, if it has several",
    "task.custom.train_split": "split the pool and dev are drawn from (hub, or a folder of splits)",
    "task.custom.test_split": "split the test set is drawn from (hub or folder); null with hub: no test set",
    "task.custom.label_field": "record field holding the class label",
    "model.name": "model to fine-tune: a built-in alias, a Hugging Face id or a local folder",
    "model.dtype": "weights and forward dtype; bfloat16 halves memory on GPUs",
    "model.track": "parameters ZO perturbs: a LoRA adapter or every weight",
    "model.lora_r": "LoRA rank r",
    "model.lora_alpha": "LoRA scaling α (the update is scaled by α/r)",
    "model.lora_targets": "module names LoRA wraps; null: the attention projections of the architecture",
    "model.gguf_file": "GGUF file inside model.name to load (dequantised) instead of safetensors",
    "model.device": "where the model runs",
    "model.init_seed": "seed of the random weights of the tiny test models",
    "train.progress": "show a progress bar on the terminal",
    "privacy.mechanism": "the release rule, and with it the guarantee (see method.md)",
}


def _join(values: Any) -> str:
    return ", ".join(str(v) for v in values)


# Allowed values beyond the type, from the live registries where there is one.
ALLOWED: dict[str, Callable[[], str]] = {
    "task.name": lambda: _join(TASKS),
    "task.pool_size": lambda: "≥ 1, and ≥ privacy.subsets / 2",
    "task.dev_size": lambda: "≥ 0",
    "task.test_size": lambda: "≥ 0",
    "task.objective": lambda: "; ".join(f"{kind}: {_join(objs)}" for kind, objs in OBJECTIVES.items()),
    "task.max_new_tokens": lambda: "≥ 1 and < task.max_length",
    "task.max_length": lambda: "≥ 4",
    "task.custom.kind": lambda: _join(KINDS),
    "task.custom.train": lambda: f"a file ending in {_join(FORMATS)}, or {FOLDER}",
    "task.custom.test": lambda: f"a file ending in {_join(FORMATS)}, or {FOLDER}",
    "model.name": lambda: f"{_join(TINY_MODELS)} (random weights), smollm2-135m, a hub id or a local path",
    "model.dtype": lambda: _join(DTYPES),
    "model.track": lambda: _join(TRACKS),
    "model.lora_r": lambda: "≥ 1",
    "model.lora_alpha": lambda: "> 0",
    "model.device": lambda: "cpu, cuda, cuda:N, mps, auto",
    "train.steps": lambda: "≥ 1",
    "train.lr": lambda: "≥ 0",
    "train.schedule": lambda: "linear, constant",
    "train.zo_eps": lambda: "> 0",
    "train.clip": lambda: "> 0; null or 0: off (DP mechanisms need > 0)",
    "train.directions": lambda: "≥ 1 (dpzero and dp-zo: 1)",
    "train.micro_batch_size": lambda: "≥ 1, or auto (or 0)",
    "train.batch_size": lambda: "≥ 2 or null (DP: null)",
    "train.eval_every": lambda: "≥ 0",
    "train.checkpoint_every": lambda: "≥ 0",
    "train.select_by": lambda: "dev_loss or dev_<metric> (dev_accuracy, dev_f1, dev_exact_match)",
    "train.report_to": lambda: f"{_join(REPORT_TO)}, or a list of them (none alone)",
    "privacy.mechanism": lambda: _mechanisms(),
    "privacy.subsets": lambda: "even, ≥ 2",
    "privacy.budget": lambda: "> 0; required by paczero-mi",
    "privacy.budget_schedule": lambda: "adaptive, uniform",
    "privacy.secret_index": lambda: "0 … subsets − 1, or null",
    "privacy.epsilon": lambda: "> 0 (DP mechanisms only)",
    "privacy.delta": lambda: "[0, 1)",
    "privacy.sampling_rate": lambda: "(0, 1] (DP mechanisms only; required there)",
    "privacy.noise": lambda: "gaussian, laplace (laplace: dp-zo only)",
    "privacy.accountant": lambda: _accountants(),
    "privacy.match_mi": lambda: "> 0 (DP mechanisms only)",
    "privacy.match_epsilon": lambda: "> 0 (paczero-mi only)",
}


def _mechanisms() -> str:
    from paczero.mechanisms import MECHANISMS

    by_guarantee: dict[str, list[str]] = {}
    for name, mech in MECHANISMS.items():
        by_guarantee.setdefault(mech.guarantee, []).append(name)
    return "; ".join(f"{g}: {_join(sorted(names))}" for g, names in sorted(by_guarantee.items()))


def _accountants() -> str:
    from paczero.privacy.dp import ACCOUNTANTS

    return "; ".join(f"{noise}: {_join(names)}" for noise, names in ACCOUNTANTS.items())


def field_comments(cls: type) -> dict[str, str]:
    """The comment after each field declaration in the class body, by field name."""
    source = textwrap.dedent(inspect.getsource(cls))
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    declared: dict[int, str] = {}  # line number → field declared there
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for tok, nxt in zip(tokens, tokens[1:], strict=False):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and nxt.string == ":":
            declared[tok.start[0]] = tok.string
        elif tok.type == tokenize.COMMENT and tok.start[0] in declared:
            comments[declared[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def meaning(prefix: str, f: dataclasses.Field[Any], comments: dict[str, str]) -> str | None:
    """One line on what a key does: help metadata, else ``HELP``, else the source comment."""
    return f.metadata.get("help") or HELP.get(f"{prefix}.{f.name}") or comments.get(f.name)


def type_name(tp: Any) -> str:
    """A type hint as a user writes the value: int, float | null, list[str], mapping."""
    if dataclasses.is_dataclass(tp):
        return "mapping"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is list:
        return f"list[{type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def default_text(f: dataclasses.Field[Any]) -> str:
    """The default as YAML (flow style)."""
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if dataclasses.is_dataclass(value):
        return "(section)"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("\n...")


def rows(prefix: str, cls: type) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, allowed, meaning) for every field of one section."""
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        allowed = ALLOWED[key]() if key in ALLOWED else ""
        out.append(
            (key, type_name(hints[f.name]), default_text(f), allowed, meaning(prefix, f, comments) or "")
        )
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


INTRO = """# Configuration reference

For anyone writing or changing a run config: every key, its type, its default, the values it accepts and
what it does. Start from a shipped config (configs/) and change only what you need; the
[tuning guide](tuning.md) says which keys matter most and where to start them.

A config is a YAML file with the sections below. `base:` (a path or a list of paths, relative to the file)
names configs it extends, later files winning; `--set section.key=value` on the command line overrides any
key, with the value read as YAML (`null`, `true`, numbers, lists). Unknown keys and wrong types are errors.
Some defaults are filled in when the config is checked: `task.prompt`, `task.max_length` and
`task.objective` from the task, `privacy.accountant` from the noise and `privacy.epsilon` or
`privacy.budget` from `privacy.match_mi` or `privacy.match_epsilon`.

This page is generated from the configuration classes (`python -m paczero.config_reference`); the
defaults are those of the installed version.

## Editor support: the JSON Schema

paczero ships a JSON Schema of this page (`config.schema.json`, generated from the same classes), so an
editor completes keys, shows what each one means and flags unknown keys and wrong types as you type.
`python -m paczero.config_schema --path` prints where the installed copy is; in the repository it is
`src/paczero/configs/config.schema.json`. With the YAML language server (VS Code's YAML extension, Neovim,
Helix, Zed and others), name it in the first line of a config:

```yaml
# yaml-language-server: $schema=/path/printed/by/paczero/config.schema.json
```

or map it to your config files once, e.g. in VS Code's `settings.json`:
`"yaml.schemas": {"/path/printed/by/paczero/config.schema.json": ["configs/**/*.yaml"]}`.
The schema checks keys and types; the rules between keys (an even `privacy.subsets`, a budget for
`paczero-mi`) are checked when paczero reads the config.
"""

SECTION_TITLES = {
    "task": "the data, its split sizes, the prompt and the per-example objective",
    "task.custom": "the data source of `task.name: custom` (set it only for that task)",
    "model": "what to load, in which dtype and where, and which parameters ZO perturbs",
    "train": "steps, learning rate, perturbation, clipping, batching, evaluation and checkpoints",
    "privacy": "the release mechanism, the candidate subsets, the budget and the privacy generator",
}


def generate() -> str:
    """The whole Markdown page."""
    parts = [INTRO]
    for prefix, cls in SECTIONS:
        parts.append(f"\n## `{prefix}`: {SECTION_TITLES[prefix]}\n")
        parts.append("| key | type | default | allowed | meaning |\n|---|---|---|---|---|")
        for key, tp, default, allowed, text in rows(prefix, cls):
            parts.append(f"| `{key}` | {_cell(tp)} | `{_cell(default)}` | {_cell(allowed)} | {_cell(text)} |")
    return "\n".join(parts) + "\n"


def top_level_sections() -> list[str]:
    """The sections a RunConfig holds (each must have a part on the page)."""
    return [f.name for f in dataclasses.fields(RunConfig)]


__all__ = ["HELP", "ALLOWED", "SECTIONS", "generate", "rows", "field_comments", "top_level_sections"]

if __name__ == "__main__":
    print(generate(), end="")
