"""Reading params.yaml, the single source of configuration, into the package's dataclasses."""

from __future__ import annotations

import dataclasses
import importlib.resources
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from .utils import UserError

T = TypeVar("T")
DEFAULT_PARAMS_FILE = Path("params.yaml")


class ConfigError(UserError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last value
    silently, while DVC refuses the whole file, so a duplicated params key would mean different runs to the two."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (lines {lines[key]} and {line}); keep one", key_node.start_mark)
            except TypeError:  # an unhashable key: the base class reports it
                break
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML a user wrote (a params file, a ``--set`` value), safely, refusing a key given twice in one mapping."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def packaged_file(name: str) -> Path:
    """A file the package carries in ``iid_distill/defaults/``: the repository's params.yaml and
    reports/paper_numbers.yaml (symbolic links in a checkout, copies in a wheel), for runs outside a checkout."""
    return Path(str(importlib.resources.files("iid_distill") / "defaults" / name))


def default_params_file() -> Path:
    """``./params.yaml`` if present (a checkout, or your own), else the params.yaml the package carries."""
    return DEFAULT_PARAMS_FILE if DEFAULT_PARAMS_FILE.exists() else packaged_file("params.yaml")


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load a params file; with no path, :func:`default_params_file`."""
    if path is None:
        path = default_params_file()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; pass --params PATH or run from the repository root")
    try:
        params = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"params key '{key}': expected a mapping, got {type(value).__name__}")
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate ``cls`` from ``values``; an unknown key or a value of the wrong type is an error naming its path
    (``where.key``)."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    values = {key: _exponent_number(value, hints[key]) for key, value in values.items()}
    for key, value in values.items():
        if not _has_type(value, hints[key]):
            quoted = " (text)" if isinstance(value, str) else ""
            raise ConfigError(f"params key '{where}.{key}': expected {_type_name(hints[key])}, got {value!r}{quoted}")
    return cls(**values)


EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponent_number(value: Any, hint: Any) -> Any:
    """PyYAML reads ``1e-05`` (no dot) as text: such text is the number it spells where a float is expected."""
    if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()) and _has_type(0.5, hint):
        return float(value)
    return value


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a YAML-read value fits a field annotation (int, float, bool, str, dict, list, X | None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # YAML reads 1e-05 as a string, so a float field accepts an int but not text
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is Any:
        return True
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping", list: "a list",
             type(None): "null"}
    return names.get(typing.get_origin(hint) or hint, str(hint))


def field_names(cls: type) -> list[str]:
    """The fields of a config dataclass, in order (the keys ``--set`` takes)."""
    return [field.name for field in dataclasses.fields(cls)]


def keyword_option_names(func: Callable[..., Any]) -> list[str]:
    """The keyword-only options of ``func`` (e.g. select_coreset's: the ``coreset`` params keys)."""
    return [name for name, p in inspect.signature(func).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_keyword_options(func: Callable[..., Any], values: dict[str, Any], where: str) -> None:
    """Reject keys that ``func`` does not take as keyword-only options, naming their path (``where.key``)."""
    names = set(keyword_option_names(func))
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
