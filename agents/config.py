"""Loading typed config dataclasses from TOML or YAML files with ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config dataclass."""


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} fits none of {annotation}")
    if origin is tuple:
        if isinstance(value, str) and value.lstrip().startswith("["):  # nested tuples: a JSON list of lists
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{key}: {value!r} is not a JSON list ({exc})") from exc
        items = value.split(",") if isinstance(value, str) else list(value)
        if len(items) != len(args) and not (len(args) == 2 and args[1] is Ellipsis):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {value!r}")
        item_types = [args[0]] * len(items) if args and args[-1] is Ellipsis else args
        return tuple(_coerce(v, t, key) for v, t in zip(items, item_types, strict=True))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from exc
        if annotation is int:
            if number != int(number):
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
            return int(number)
        return number
    if annotation is str:
        return str(value)
    return value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Build ``cls`` from a TOML/YAML file (optional) and ``key=value`` overrides, with typed coercion.

    Unknown keys are an error that lists the valid ones; ``__post_init__`` checks cross-field rules.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            values = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config files must end in .toml, .yaml or .yml")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        values[key.strip()] = raw.strip()
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {cls.__name__}; valid keys: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], k) for k, v in values.items()}
    return cls(**kwargs)
