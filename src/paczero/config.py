"""Run configuration: nested dataclasses loaded from YAML, with inheritance and checked overrides.

A YAML file may name ``base:`` (a path or a list of paths, relative to the file) whose contents it
extends. ``--set a.b=value`` overrides any key; unknown keys and wrong types are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from paczero.models import ModelConfig
from paczero.tasks import TaskConfig


@dataclass
class TrainConfig:
    """The optimisation: steps, learning rate, ZO perturbation, clipping, evaluation cadence."""

    steps: int = 1000
    lr: float = 1e-4
    schedule: str = "linear"  # linear decay to 0, or constant
    zo_eps: float = 1e-3
    clip: float | None = 25.0  # per-example clip of g_i; null or 0 turns it off
    directions: int = 1  # K
    micro_batch_size: int = 32
    batch_size: int | None = None  # public minibatch of the pool per step; null = the whole pool (paper)
    eval_every: int = 100  # 0 = only at the end
    select_by: str = "dev_loss"  # best-dev checkpoint selection: dev_loss or dev_accuracy
    seed: int = 0  # public generator: direction seeds
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "train.steps must be at least 1")
        _require(self.lr >= 0, "train.lr must be non-negative")
        _require(self.schedule in ("linear", "constant"), "train.schedule must be 'linear' or 'constant'")
        _require(self.zo_eps > 0, "train.zo_eps must be positive")
        _require(self.directions >= 1, "train.directions (K) must be at least 1")
        _require(self.micro_batch_size >= 1, "train.micro_batch_size must be at least 1")
        _require(self.batch_size is None or self.batch_size >= 2, "train.batch_size must be >= 2 or null")
        _require(self.eval_every >= 0, "train.eval_every must be >= 0")
        _require(
            self.select_by in ("dev_loss", "dev_accuracy"), "train.select_by must be dev_loss or dev_accuracy"
        )


@dataclass
class PrivacyConfig:
    """The release mechanism, the candidate subsets and the privacy generator."""

    mechanism: str = "paczero-zpl"
    subsets: int = 128  # M
    budget: float | None = None  # MI budget in nats (paczero-mi)
    budget_schedule: str = "adaptive"  # adaptive (B − spent)/(T − t), or uniform B/T
    seed: int = 0  # privacy generator (secret, coins, noise)
    secure: bool = False  # draw the privacy generator from the OS CSPRNG (seed ignored)
    secret_index: int | None = None  # fix J (audits and tests); default: drawn from the privacy generator

    def __post_init__(self) -> None:
        from paczero.mechanisms import get_mechanism

        get_mechanism(self.mechanism)
        _require(self.subsets >= 2 and self.subsets % 2 == 0, "privacy.subsets (M) must be even and >= 2")
        _require(self.budget is None or self.budget > 0, "privacy.budget must be positive (nats)")
        _require(self.budget_schedule in ("adaptive", "uniform"), "privacy.budget_schedule: adaptive|uniform")
        _require(
            self.secret_index is None or 0 <= self.secret_index < self.subsets,
            "privacy.secret_index must lie in [0, subsets)",
        )
        if self.mechanism == "paczero-mi":
            _require(self.budget is not None, "paczero-mi needs privacy.budget (MI in nats, e.g. 0.33)")


@dataclass
class RunConfig:
    """Everything a run needs: config → task + model → trainer → mechanism → ledger → outputs."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def to_dict(self, redact_secret: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if redact_secret and data["privacy"]["secret_index"] is not None:
            data["privacy"]["secret_index"] = "<redacted>"
        return data


class ConfigError(ValueError):
    """A configuration problem, reported with the offending key."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def load_yaml_tree(path: str | Path) -> dict[str, Any]:
    """Read a YAML config, resolving ``base:`` inheritance depth-first (later files win)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = data.pop("base", None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, load_yaml_tree(path.parent / base))
    return _deep_merge(merged, data)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = (
            _deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a raw config tree."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.sub=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def build_config(tree: dict[str, Any]) -> RunConfig:
    """Turn a raw tree into a validated RunConfig, rejecting unknown keys and wrong types."""
    return _build(RunConfig, tree, "")


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    tree = load_yaml_tree(path) if path else {}
    for assignment in overrides:
        apply_override(tree, assignment)
    return build_config(tree)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}; known: {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{key} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")
