"""Typed dataclass configs: strict conversion from dicts/YAML, overrides, stable hashing.

Unknown keys and wrongly typed values are rejected with a one-line :class:`ConfigError` that names
the key, so a typo in a YAML override never silently trains the wrong model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


class InferenceDefaults:
    """Base of model configs whose decoding defaults (Euler steps, guidance scale, …) a bundle or a user may
    change after training: they touch no weight. Subclasses name them in ``INFERENCE_FIELDS``."""

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def with_decoding(self: T, **changes: Any) -> T:
        """This config with other decoding settings (``INFERENCE_FIELDS`` only), checked as any config is."""
        other = sorted(set(changes) - set(self.INFERENCE_FIELDS))
        if other:
            raise ConfigError(f"not decoding settings: {', '.join(other)} (those are"
                              f" {', '.join(self.INFERENCE_FIELDS) or 'none'})")
        return dataclasses.replace(self, **changes)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of a config: pairs a checkpoint with its exact architecture."""
    return dict_hash(to_dict(config))


def dict_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses are built recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    values = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def override(config: T, changes: dict[str, Any], where: str = "config") -> T:
    """Return a copy of ``config`` with ``changes`` (possibly nested) applied."""
    merged = _deep_merge(to_dict(config), changes)
    return from_dict(type(config), merged, where)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {hint}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(key_hint, k, where): _coerce(value_hint, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
