"""Reading params.yaml, the single source of configuration, into the package's dataclasses."""

from __future__ import annotations

import dataclasses
import importlib.resources
import inspect
import math
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


# The top-level keys of a params file (workflow/schemas/params.schema.yaml's properties; a test keeps the two equal).
PARAMS_KEYS = ("campaign", "continual", "convergence", "coreset", "data", "device", "distill", "evaluation", "experiments", "figures",
               "paper_numbers", "plugins", "pools", "pretrain", "report_dir", "report_labels", "results_dir", "sweeps", "whole_dataset", "workflow")


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load a params file; with no path, :func:`default_params_file`. A misspelt top-level key is an error, as in the
    workflow's schema, never a setting silently left at its default."""
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
    unknown = sorted(str(key) for key in set(params) - set(PARAMS_KEYS))
    if unknown:
        raise ConfigError(f"{path}: params key '{unknown[0]}' is unknown; valid top-level keys: {', '.join(PARAMS_KEYS)}")
    return params


def check_seeds(value: Any, where: str) -> list[int]:
    """A list of distinct non-negative integer seeds (never text: ``"10"`` is not seeds 1 and 0)."""
    if not isinstance(value, (list, tuple)) or not value or any(isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in value):
        raise ConfigError(f"params key '{where}' = {value!r}: expected a non-empty list of non-negative integers, e.g. [0, 1, 2]")
    if len(set(value)) != len(value):
        raise ConfigError(f"params key '{where}' = {list(value)!r}: a seed is given twice; give each once")
    return list(value)


def section(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"params key '{key}': expected a mapping, got {type(value).__name__}")
    return value


def non_finite_key(value: Any, where: str) -> str | None:
    """The path (``where.key[0]``...) of the first NaN or infinite number in ``value``, searched through mappings and
    lists, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next((found for path, item in items if (found := non_finite_key(item, path)) is not None), None)


def check_finite(values: Any, where: str, error: type[Exception] | None = None) -> None:
    """Refuse NaN and infinities anywhere in ``values`` (a setting, a section, a whole config): no comparison catches
    NaN (``nan <= 0`` is false), so every numeric setting goes through here where it enters."""
    found = non_finite_key(values, where)
    if found is not None:
        raise (error or ConfigError)(f"params key '{found}' is not a finite number (NaN or infinity); give a finite value")


def check_fields_finite(instance: Any, where: str, error: type[Exception]) -> None:
    """:func:`check_finite` over a config dataclass's fields, for its ``__post_init__`` (the library's entry)."""
    check_finite({field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}, where, error)


def build_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate ``cls`` from ``values``; an unknown key, a value of the wrong type or a non-finite number is an
    error naming its path (``where.key``)."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    values = {key: _exponent_number(value, hints[key]) for key, value in values.items()}
    check_finite(values, where)
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


def check_keyword_options(func: Callable[..., Any], values: dict[str, Any], where: str) -> dict[str, Any]:
    """Reject keys that ``func`` does not take as keyword-only options, or values of another type or not finite,
    naming their path (``where.key``); returns the options with exponent text (``1e-05``) read as numbers."""
    names = set(keyword_option_names(func))
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
    check_finite(values, where)
    hints = typing.get_type_hints(func)
    values = {key: _exponent_number(value, hints[key]) for key, value in values.items()}
    for key, value in values.items():
        if not _has_type(value, hints[key]):
            quoted = " (text)" if isinstance(value, str) else ""
            raise ConfigError(f"params key '{where}.{key}': expected {_type_name(hints[key])}, got {value!r}{quoted}")
    return values


_SCHEMA_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "object", type(None): "null"}


def field_schema(hint: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """The JSON-schema block of one declared setting (:func:`iid_distill.distill.settings.setting`): a shared ``$defs``
    reference, an enum of its choices, or its type and least value; with its help as the description."""
    if metadata.get("schema"):
        block: dict[str, Any] = {"$ref": f"#/$defs/{metadata['schema']}"}
    elif metadata.get("choices") is not None:
        block = {"enum": list(metadata["choices"])}
    else:
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        names = [_SCHEMA_TYPES[typing.get_origin(option) or option] for option in options]
        block = {"type": names[0] if len(names) == 1 else names}
        if metadata.get("low") is not None:
            block["minimum"] = metadata["low"]
    if metadata.get("help"):
        block["description"] = metadata["help"]
    return block
