"""GovernorConfig from a plain mapping (a TOML table): strict, every bad key named by its path.

``{"policy": {"enter": 0.7}, "actions": {"storm_hold_ms": 300}}`` overrides just those fields;
everything else keeps its default. Unknown keys and wrong types are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from detectors.config import GovernorConfig
from detectors.errors import ConfigError


def governor_config_from_mapping(doc: dict[str, Any]) -> GovernorConfig:
    """Build a GovernorConfig; raise ConfigError naming the first bad key path."""
    config: GovernorConfig = _build(GovernorConfig, doc, "governor")
    return config


def load_governor_config(path: Path) -> GovernorConfig:
    """A TOML file whose top level (or ``[governor]`` table) holds GovernorConfig fields."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read governor config: {exc}") from exc
    return governor_config_from_mapping(doc.get("governor", doc))


def _build(cls: type[Any], doc: Any, path: str) -> Any:
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a table, got {type(doc).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - names)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for key, value in doc.items():
        kwargs[key] = _value(hints[key], value, f"{path}.{key}")
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _value(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array")
        inner = typing.get_args(hint)[0]
        return tuple(_value(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{path}: must be one of {list(typing.get_args(hint))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false")
        return value
    if hint is int:
        if type(value) is not int:
            raise ConfigError(f"{path}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string")
        return value
    return value
