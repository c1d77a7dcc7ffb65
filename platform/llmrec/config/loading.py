"""The whole configuration (:class:`Config`), read from YAML and ``--set`` overrides."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from llmrec.config.base import (
    ConfigError,
)
from llmrec.config.data import DataConfig
from llmrec.config.model import ModelConfig
from llmrec.config.operations import RayConfig, RegistryConfig, UpdateConfig
from llmrec.config.rank import RankConfig
from llmrec.config.train import TrainConfig


@dataclass(frozen=True)
class Config:
    """The whole job configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 0.0005, ...}``: the form MLflow params take."""
        return {
            f"{section}.{key}": value
            for section, values in self.to_dict().items()
            for key, value in values.items()
        }


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "rank": RankConfig,
    "registry": RegistryConfig,
    "update": UpdateConfig,
    "ray": RayConfig,
}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides.

    Args:
        path: A YAML file with any of the sections ``data, model, train, rank, registry,
            update, ray``.
        overrides: ``"section.key=value"`` strings (``section.key.entry=value`` sets one
            entry of a mapping, e.g. ``data.columns.value=rating``); values are parsed as
            YAML.

    Returns:
        The validated, frozen :class:`Config`.

    Raises:
        ConfigError: listing every unknown key, badly typed value and out-of-range value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(Path(path))
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: expected a mapping of sections, got {type(loaded).__name__}"
            )
        raw = {k: ({} if v is None else v) for k, v in loaded.items()}
    problems: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            problems.append(f"override {item!r} must look like section.key=value")
            continue
        section, _, name = key.strip().partition(".")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problems.append(f"override {item!r}: not valid YAML ({_yaml_problem(exc)})")
            continue
        # section.key.sub=value sets one entry of a mapping (data.columns.value=rating)
        *parents, leaf = [section, *name.split(".")]
        target: Any = raw
        for depth, part in enumerate(parents):
            inner = target.setdefault(part, {})
            if inner is None:
                inner = target[part] = {}
            if not isinstance(inner, dict):
                where = ".".join(parents[: depth + 1])
                problems.append(f"override {item!r}: {where} must be a mapping, got {inner!r}")
                break
            target = inner
        else:
            target[leaf] = parsed
    return config_from_dict(raw, problems, source=str(path) if path else "defaults")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong, and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what


def config_from_dict(
    raw: Mapping[str, Any], problems: list[str] | None = None, source: str = "config"
) -> Config:
    """Build a :class:`Config` from nested dicts, collecting every problem (see load_config)."""
    problems = list(problems or [])
    sections: dict[str, Any] = {}
    for section, values in raw.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            problems.append(f"unknown section {section!r} (expected one of {sorted(_SECTIONS)})")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{section} must be a mapping, got {values!r}")
            continue
        sections[section] = _build_section(section, cls, values, problems)
    # Badly typed values were left at their defaults: the value checks of the rest still
    # run, so that one report names every problem.
    cfg = Config(**sections)
    for part in (cfg.data, cfg.model, cfg.train, cfg.rank, cfg.registry, cfg.update, cfg.ray):
        problems.extend(part.problems())
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


RETIRED_KEYS: dict[str, str] = {
    "rank.max_cf_items": "the CF part scales now (rank.cf, rank.ease_max_items)",
}
"""Keys older configs (and the bundles of older versions) may hold: ignored, with why."""


def _build_section(section: str, cls: type, values: Mapping[str, Any], problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if f"{section}.{key}" in RETIRED_KEYS:
            continue
        if key not in known:
            problems.append(f"unknown key {section}.{key} (expected one of {sorted(known)})")
            continue
        coerced, ok = _coerce(value, hints[key])
        if not ok:
            problems.append(f"{section}.{key} must be {_type_name(hints[key])}, got {value!r}")
            continue
        kwargs[key] = coerced
    return cls(**kwargs)


def _coerce(value: Any, hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value, value in typing.get_args(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            return value, False
        return tuple(value), True
    if origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
        return (dict(value) if ok else value), ok
    if origin in (typing.Union, types.UnionType):
        return value, True
    if hint is bool:
        return value, isinstance(value, bool)
    if hint is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                return value, False
            return number, math.isfinite(number)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (float(value) if ok else value), ok and math.isfinite(float(value))
    if hint is str:
        return value, isinstance(value, str)
    return value, True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list of strings"
    if hint is float:
        return "a finite number"
    if typing.get_origin(hint) is dict:
        return "a mapping of names to values"
    name = getattr(hint, "__name__", str(hint))
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
