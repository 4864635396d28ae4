"""Run configuration: nested dataclasses loaded from YAML, with inheritance and checked overrides.

A YAML file may name ``base:`` (a path or a list of paths, relative to the file) whose contents it
extends. ``--set a.b=value`` overrides any key; unknown keys and wrong types are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from paczero.models.config import ModelConfig
from paczero.tasks.config import TaskConfig
from paczero.tracking import NONE, REPORT_TO


@dataclass
class TrainConfig:
    """The optimisation: steps, learning rate, ZO perturbation, clipping, evaluation cadence."""

    steps: int = 1000
    lr: float = 1e-4
    schedule: str = "linear"  # linear decay to 0, or constant
    zo_eps: float = 1e-3
    clip: float | None = 25.0  # per-example clip of g_i; null or 0 turns it off
    directions: int = 1  # K
    micro_batch_size: int | str = 32  # sequences per forward; 'auto' or 0: chosen from free memory
    dist_timeout: float = 300.0  # seconds before a collective with a dead or hung rank fails the job
    batch_size: int | None = None  # public minibatch of the pool per step; null = the whole pool (paper)
    eval_every: int = 100  # 0 = only at the end
    checkpoint_every: int = 100  # full-state checkpoint cadence in steps; 0 = only at the start and at exit
    select_by: str = "dev_loss"  # best-dev selection: dev_loss or dev_<metric> (dev_accuracy, dev_f1, ...)
    seed: int = 0  # public generator: direction seeds
    progress: bool = True
    report_to: str | list[str] = "tensorboard"  # trackers of public values (tensorboard, wandb, mlflow, none)

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "train.steps must be at least 1")
        _require(self.lr >= 0, "train.lr must be non-negative")
        _require(self.schedule in ("linear", "constant"), "train.schedule must be 'linear' or 'constant'")
        _require(self.zo_eps > 0, "train.zo_eps must be positive")
        _require(self.directions >= 1, "train.directions (K) must be at least 1")
        _require(
            self.micro_batch_size == "auto"
            or (isinstance(self.micro_batch_size, int) and self.micro_batch_size >= 0),
            "train.micro_batch_size must be a positive integer, or 'auto' (or 0) to size it from free memory",
        )
        _require(self.batch_size is None or self.batch_size >= 2, "train.batch_size must be >= 2 or null")
        _require(self.eval_every >= 0, "train.eval_every must be >= 0")
        _require(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0 = only at exit)")
        _require(
            self.select_by.startswith("dev_") and len(self.select_by) > 4,
            "train.select_by must be dev_loss or dev_<metric> (e.g. dev_accuracy, dev_f1)",
        )
        names = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        _require(
            all(name in REPORT_TO for name in names) and (NONE not in names or len(names) == 1),
            f"train.report_to must name trackers among {', '.join(REPORT_TO)} (none alone), got {names}",
        )


@dataclass
class PrivacyConfig:
    """The release mechanism, the candidate subsets and the privacy generator."""

    mechanism: str = "paczero-zpl"
    subsets: int = 2  # M (complementary halves: the most unanimous steps; docs/tuning.md)
    budget: float | None = None  # MI budget in nats (paczero-mi)
    budget_schedule: str = "adaptive"  # adaptive (B − spent)/(T − t), or uniform B/T
    secure: bool = True  # privacy randomness (secret, coins, noise, DP batches) from the OS CSPRNG
    seed: int | None = None  # with secure: false only: deterministic privacy randomness, NOT private
    secret_index: int | None = None  # fix J (audits and tests); default: drawn from the privacy generator
    epsilon: float | None = None  # DP target ε (dpzero, dp-aggzo, dp-zo); set from match_mi if null
    delta: float = 1e-5  # DP δ; 0 under pure ε-DP (Laplace) accounting
    sampling_rate: float | None = None  # DP Poisson sampling rate q: expected batch q·N
    noise: str = "gaussian"  # DP noise: gaussian ((ε, δ)-DP) or laplace (pure ε-DP, dp-zo only)
    accountant: str | None = None  # DP: rdp (Gaussian default) | pld | pure (Laplace default)
    match_mi: float | None = None  # DP: run at the ε whose attack-success bound equals this MI's (nats)
    match_epsilon: float | None = None  # paczero-mi: budget = the MI whose attack bound equals (ε, δ)-DP's

    def __post_init__(self) -> None:
        from paczero.mechanisms import get_mechanism

        mech = get_mechanism(self.mechanism)
        _require(0 <= self.delta < 1, "privacy.delta must lie in [0, 1)")
        try:  # the mechanism checks and completes its own keys (DP targets, the MI budget)
            mech.check_privacy(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.match_epsilon is not None:
            self._resolve_match_epsilon()
        _require(self.subsets >= 2 and self.subsets % 2 == 0, "privacy.subsets (M) must be even and >= 2")
        if self.secure:
            _require(
                self.seed is None,
                "privacy.seed makes the privacy randomness deterministic, so the run is not private; "
                "set privacy.secure: false to opt in (tests and exact reproductions only), or drop the seed",
            )
        else:
            _require(
                self.seed is not None,
                "privacy.secure: false needs privacy.seed (deterministic privacy randomness: not private)",
            )
        _require(self.budget is None or self.budget > 0, "privacy.budget must be positive (nats)")
        _require(self.budget_schedule in ("adaptive", "uniform"), "privacy.budget_schedule: adaptive|uniform")
        _require(
            self.secret_index is None or 0 <= self.secret_index < self.subsets,
            "privacy.secret_index must lie in [0, subsets)",
        )

    def _resolve_match_epsilon(self) -> None:
        """Set the MI budget to the MI whose attack-success bound equals that of (ε, δ)-DP."""
        from paczero.channel import mi_matching_epsilon

        _require(self.match_epsilon > 0, "privacy.match_epsilon must be positive")
        matched = mi_matching_epsilon(self.match_epsilon, self.delta)
        _require(
            self.budget is None or math.isclose(self.budget, matched, rel_tol=1e-9),
            f"privacy.budget = {self.budget} disagrees with privacy.match_epsilon = {self.match_epsilon} "
            f"(matched MI = {matched:.6g} nats at δ = {self.delta:g}); set only one",
        )
        self.budget = matched


@dataclass
class RunConfig:
    """Everything a run needs: config → task + model → trainer → mechanism → ledger → outputs."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        from paczero.mechanisms import get_mechanism

        mech, name = get_mechanism(self.privacy.mechanism), self.privacy.mechanism
        _require(
            self.task.pool_size >= self.privacy.subsets // 2,
            f"task.pool_size (N = {self.task.pool_size}) must be at least privacy.subsets/2 "
            f"(M/2 = {self.privacy.subsets // 2}): fewer examples than that leave candidate subsets empty "
            "or nearly so",
        )
        _require(
            mech.max_directions is None or self.train.directions <= mech.max_directions,
            f"{name} uses K = {mech.max_directions} direction(s); set train.directions or use dp-aggzo",
        )
        if mech.guarantee.is_dp:
            _require(
                self.train.clip is not None and self.train.clip > 0,
                f"{name} needs train.clip > 0: C bounds each example's contribution (the DP sensitivity)",
            )
            _require(
                self.train.batch_size is None,
                f"{name} draws a Poisson batch at privacy.sampling_rate: leave train.batch_size null",
            )
        size = self.train.batch_size
        if size is not None and size < self.task.pool_size:
            draws = expected_minibatch_draws(size, self.privacy.subsets)
            _require(
                draws <= MAX_EXPECTED_DRAWS,
                f"train.batch_size = {size} is too small for privacy.subsets = {self.privacy.subsets}: a "
                f"public minibatch must hold an example of every candidate subset, and about {draws:.3g} "
                f"draws would be needed per step; use fewer subsets or a larger minibatch (with "
                f"M = {self.privacy.subsets}, train.batch_size >= {min_batch_size(self.privacy.subsets)})",
            )

    def to_dict(self, redact_secret: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if redact_secret:  # J and the seed it may derive from are kept in the private secret file only
            data["privacy"]["secret_index"] = "<redacted>"
            data["privacy"]["seed"] = "<redacted>"
        return data

    @property
    def private(self) -> bool:
        """Whether the privacy randomness is unpredictable (OS CSPRNG), i.e. the run's guarantee holds."""
        return self.privacy.secure


MAX_EXPECTED_DRAWS = 1000.0  # public minibatch redraws per step before a config is refused


def expected_minibatch_draws(size: int, m: int) -> float:
    """1/P(every candidate subset meets a minibatch of ``size``), each example in a uniform M/2-subset.

    Inclusion–exclusion in exact rationals: P = Σ_j (−1)^j C(M, j) (C(M − j, M/2) / C(M, M/2))^size.
    """
    from fractions import Fraction

    if m * 0.5**size <= 0.5:  # union bound: P(some subset missed) <= M·2^-size
        return 1.0 / (1.0 - m * 0.5**size)
    total = math.comb(m, m // 2)
    p = sum(
        (-1) ** j * math.comb(m, j) * Fraction(math.comb(m - j, m // 2), total) ** size
        for j in range(m // 2 + 1)
    )
    return math.inf if p <= 0 else float(1 / p)


def min_batch_size(m: int) -> int:
    """The smallest public minibatch whose expected number of draws stays within MAX_EXPECTED_DRAWS."""
    size = 2
    while expected_minibatch_draws(size, m) > MAX_EXPECTED_DRAWS:
        size += 1
    return size


SECRET_KEYS = ("privacy.secret_index", "privacy.seed")  # never echoed in error messages


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
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
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
    shown = "a value (hidden: it names the secret)" if key in SECRET_KEYS else repr(value)
    raise ConfigError(f"{key} must be of type {getattr(tp, '__name__', tp)}, got {shown}")
