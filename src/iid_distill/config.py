"""Reading params.yaml, the single source of configuration, into the package's dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from .utils import UserError

T = TypeVar("T")
DEFAULT_PARAMS_FILE = Path("params.yaml")


class ConfigError(UserError):
    pass


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load a params file; with no path, ``./params.yaml`` if present, else no overrides (the paper's defaults)."""
    if path is None:
        if not DEFAULT_PARAMS_FILE.exists():
            return {}
        path = DEFAULT_PARAMS_FILE
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; pass --params PATH or run from the repository root")
    try:
        params = yaml.safe_load(path.read_text())
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
    """Instantiate ``cls`` from ``values``; unknown keys are an error naming their path (``where.key``)."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
    return cls(**values)


def check_keyword_options(func: Callable[..., Any], values: dict[str, Any], where: str) -> None:
    """Reject keys that ``func`` does not take as keyword-only options, naming their path (``where.key``)."""
    names = {name for name, p in inspect.signature(func).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"params key '{where}.{unknown[0]}' is unknown; valid keys: {', '.join(sorted(names))}")
