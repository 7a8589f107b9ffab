"""The workflow's plan, computed from its merged config: what the params schema cannot check, the experiment grid
and the families' cells, which report files the enabled families produce, and the report's family options.

``workflow/rules/common.smk`` keeps only what Snakemake's template keeps (schema validation, path templates, input
functions) and asks this module everything else, so the logic is unit-tested here (tests/test_plan.py).
Every function takes the merged config (params.yaml + overlays, schema defaults filled) explicitly.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import check_finite, parse_yaml
from .utils import UserError

Config = Mapping[str, Any]


class PlanError(UserError):
    """A params problem the schema does not see: one line naming the key."""


# ------------------------------------------------------------------------------------------ checks


def key_path(parts: Sequence[Any]) -> str:
    """['experiments', 'table1_2', 'ipc', 0] -> 'experiments.table1_2.ipc[0]'."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe_schema_error(error) -> str:
    """One line naming the offending params key, from a jsonschema ValidationError."""
    parts = list(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        unexpected = re.findall(r"'([^']*)'", error.message.rpartition("(")[2])
        if unexpected:
            known = sorted(error.schema.get("properties", {}))
            hint = f"; valid keys here: {', '.join(known)}" if error.validator == "additionalProperties" and known else ""
            return f"params key '{key_path(parts + [unexpected[0]])}' is unknown{hint}"
    if "propertyNames" in error.absolute_schema_path:
        return f"params key '{key_path(parts + [error.instance])}' is not a valid name here: {error.message}"
    return f"params key '{key_path(parts)}': {error.message}"


def check_config_files(paths: Iterable[str | Path], config: Config) -> None:
    """What the schema cannot see: a key given twice in a configfile (Snakemake's reader keeps the last one silently)
    and NaN or infinite numbers (no schema bound refuses NaN)."""
    for path in paths:
        try:
            parse_yaml(Path(path).read_text())
        except Exception as error:  # yaml.YAMLError, or an unreadable file: one line naming it
            raise PlanError(f"{path}: {str(error).splitlines()[0]}") from None
    check_finite(dict(config), "", PlanError)


def check_merged_config(config: dict[str, Any], configfiles: Iterable[str | Path], validate: Callable[[dict[str, Any]], None]) -> None:
    """Everything the workflow checks in its merged config before building anything, the schema's defaults filled in
    place by ``validate`` (snakemake.utils.validate bound to the schema, called from the Snakefile or the campaign):
    the config files, the schema, the user's host modules, then :func:`check_params`."""
    from .coreset import coreset_methods
    from .distill import import_plugins, method_ids

    check_config_files(configfiles, config)
    try:
        validate(config)
    except Exception as error:  # Snakemake's WorkflowError around jsonschema's ValidationError: one line naming the key
        cause = error.__context__
        if cause is None or not hasattr(cause, "absolute_path"):
            raise
        raise PlanError(f"{describe_schema_error(cause)} (schema: workflow/schemas/params.schema.yaml)") from None
    import_plugins(config.get("plugins"))  # the user's hosts register before ids resolve
    check_params(config, method_ids(), coreset_methods())


def check_params(config: Config, distill_ids: Iterable[str], coreset_ids: Iterable[str]) -> None:
    """The checks after the schema: the device, at least one grid, and every method id and cross-reference known."""
    if re.fullmatch(r"cuda:[0-9]+", config["device"]):
        raise PlanError(f"params key 'device': {config['device']!r} names one GPU, but the workflow gives every job its own "
                        "(iid_distill.gpu_slots); use auto or cuda")
    enabled = [name for name, grid in config["experiments"].items() if grid["enabled"]]
    if not enabled:
        raise PlanError("params key 'experiments': every grid has enabled: false; nothing to build")
    distill_ids = set(distill_ids) | set(config["distill"]["methods"])
    known = set(coreset_ids) | distill_ids
    _check_families(config, distill_ids, known)
    for name in enabled:
        for index, method in enumerate(config["experiments"][name]["methods"]):
            if method not in known:
                raise PlanError(f"params key 'experiments.{name}.methods[{index}]': unknown method {method!r}; "
                                f"known: {', '.join(sorted(known))} (add new ids under distill.methods)")
    _check_campaign_order(config, known)
    _check_method_pools(config)


def _check_method_pools(config: Config) -> None:
    """Every distill.methods entry's named pool is one of params pools (the check its jobs make, made up front)."""
    from .distill.settings import method_pool

    for method_id in config["distill"]["methods"]:
        try:
            method_pool(dict(config), method_id)
        except UserError as error:
            raise PlanError(str(error)) from None


def _check_campaign_order(config: Config, methods: set[str]) -> None:
    from .rule_jobs import RULE_JOBS  # it imports this module

    for index, name in enumerate(config.get("campaign", {}).get("order", [])):
        if name not in methods and name not in RULE_JOBS:
            raise PlanError(f"params key 'campaign.order[{index}]': {name!r} is neither a method id nor a rule "
                            f"({', '.join(RULE_JOBS)})")


def _check_methods(where: str, methods: Sequence[str], allowed: set[str], what: str) -> None:
    for index, method in enumerate(methods):
        if method not in allowed:
            raise PlanError(f"params key '{where}[{index}]': {method!r} is not a {what}; known: {', '.join(sorted(allowed))}")


def _check_families(config: Config, distill_ids: set[str], known: set[str]) -> None:
    """Method ids and cross-references of the sweeps, convergence, continual and figures blocks."""
    for name, sweep in config["sweeps"].items():
        if is_enabled(sweep):
            _check_methods(f"sweeps.{name}.method", [sweep["method"]], distill_ids, "distill method id")
    if is_enabled(config["convergence"]):
        _check_methods("convergence.methods", config["convergence"]["methods"], distill_ids, "distill method id")
    if is_enabled(config["continual"]):
        _check_methods("continual.methods", config["continual"]["methods"], known, "method")
    figures = config["figures"]
    if is_enabled(figures.get("tsne")):
        _check_methods("figures.tsne.methods", figures["tsne"]["methods"], distill_ids, "distill method id")
    if is_enabled(figures.get("image_grids")):
        _check_methods("figures.image_grids.method", [figures["image_grids"]["method"]], known, "method")
    if is_enabled(figures.get("tsne_sweep")):
        sweep = figures["tsne_sweep"]["sweep"]
        if not is_enabled(config["sweeps"].get(sweep)):
            enabled = ", ".join(sorted(enabled_sweeps(config))) or "none"
            raise PlanError(f"params key 'figures.tsne_sweep.sweep': {sweep!r} is not an enabled sweep; enabled: {enabled}")


# ------------------------------------------------------------------------------------------ cells


def is_enabled(block: Mapping[str, Any] | None) -> bool:
    """A family block takes part unless it says enabled: false (absent blocks are off)."""
    return bool(block) and block.get("enabled", True)


def grid_enabled(config: Config, name: str) -> bool:
    grid = config["experiments"].get(name)
    return bool(grid) and grid["enabled"]


def grid_cells(config: Config) -> list[tuple[str, int, str, str]]:
    """(dataset, ipc, method, arch) of every evaluation the enabled grids ask for, sorted, without repeats."""
    cells = set()
    for grid in config["experiments"].values():
        if not grid["enabled"]:
            continue
        for dataset, ipc, method, arch in product(grid["datasets"], grid["ipc"], grid["methods"], grid["archs"]):
            cell = {"dataset": dataset, "ipc": ipc, "method": method, "arch": arch}
            if not any(all(cell[key] == value for key, value in rule.items()) for rule in grid["exclude"]):
                cells.add((dataset, ipc, method, arch))
    return sorted(cells)


def enabled_sweeps(config: Config) -> dict[str, Mapping[str, Any]]:
    return {name: sweep for name, sweep in config["sweeps"].items() if is_enabled(sweep)}


def sweep_value_text(value: float) -> str:
    """A sweep value as it appears in file names: 0.7 -> '0.7', 0.0 -> '0', 0.0075 -> '0.0075'."""
    return f"{float(value):g}"


def sweep_value(config: Config, sweep: str, text: str) -> float:
    for value in config["sweeps"][sweep]["values"]:
        if sweep_value_text(value) == text:
            return value
    raise PlanError(f"sweep {sweep}: no value {text!r} in params sweeps.{sweep}.values")


def sweep_arch(config: Config, sweep: str) -> str:
    return config["sweeps"][sweep].get("arch") or config["evaluation"]["arch"]


def _family_cells(block: Mapping[str, Any] | None, *keys: str) -> list[tuple]:
    return sorted(product(*(block[key] for key in keys))) if is_enabled(block) else []


def convergence_cells(config: Config) -> list[tuple[str, int, str]]:
    return _family_cells(config["convergence"], "datasets", "ipc", "methods")


def continual_cells(config: Config) -> list[tuple[int, int, str]]:
    return _family_cells(config["continual"], "steps", "orders", "methods")


def whole_cells(config: Config) -> list[tuple[str, str]]:
    return _family_cells(config["whole_dataset"], "datasets", "archs")


# ------------------------------------------------------------------------------------------ the report


def report_stems(config: Config, kind: str) -> list[str]:
    """The registered report outputs of ``kind`` (iid_distill.report.registry) the config's families enable."""
    from .report.registry import report_outputs

    return [output.stem for output in report_outputs(kind) if output.in_workflow(config)]


def report_figure_stems(config: Config) -> list[str]:
    """The figures `iid-distill report` draws, for the families that are enabled."""
    return report_stems(config, "figure")


def set_figure_stems(config: Config) -> list[str]:
    """Figures 1, 3 and 8, drawn from the synthetic sets by their own rules, where enabled."""
    return report_stems(config, "set_figure")


def report_table_files(config: Config) -> list[str]:
    """The tables' files the report rule writes: every enabled registered table (.md, .tex) and runs_summary.md."""
    from .report.registry import REPORT_OUTPUTS

    return [name for stem in report_stems(config, "table") for name in REPORT_OUTPUTS[stem].files()] + ["runs_summary.md"]


REPORT_FILES_BESIDE_THE_REGISTRY = ("runs_summary.md", "convergence.md", "summary.json", "metrics.json")


def dvc_report_drift(dvc_stages: Mapping[str, Any], stage: str = "paper") -> tuple[list[str], list[str]]:
    """(registered report files the DVC stage does not list, report files it lists that nothing writes): both empty
    when dvc.yaml's ``stage`` (its outs, metrics and plots under ``${report_dir}/``) follows the registry."""
    from .report.registry import REPORT_OUTPUTS

    listed = set()
    for section in ("outs", "metrics", "plots"):
        for entry in dvc_stages["stages"][stage].get(section, []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if path.startswith("${report_dir}/"):
                listed.add(path.removeprefix("${report_dir}/"))
    expected = {name for output in REPORT_OUTPUTS.values() for name in output.files()} | set(REPORT_FILES_BESIDE_THE_REGISTRY)
    return sorted(expected - listed), sorted(listed - expected)


def report_family_options(config: Config) -> list[str]:
    """What the report needs to know about the families: the datasets of Tables 3/4, 6 and 7 and Table 7's IPCs."""
    options = []
    experiments = config["experiments"]
    if grid_enabled(config, "cross_arch"):
        options.append(f"--cross-arch-dataset {experiments['cross_arch']['datasets'][0]}")
    if grid_enabled(config, "table6"):
        options.append(f"--ablation-datasets {' '.join(experiments['table6']['datasets'])}")
    if grid_enabled(config, "high_ipc"):
        dataset = experiments["high_ipc"]["datasets"][0]
        ipcs = sorted({ipc for cell_dataset, ipc, _, _ in grid_cells(config) if cell_dataset == dataset})
        options.append(f"--compression-dataset {dataset} --compression-ipcs {' '.join(map(str, ipcs))}")
    return options


__all__ = [
    "PlanError",
    "check_config_files",
    "check_params",
    "continual_cells",
    "convergence_cells",
    "describe_schema_error",
    "dvc_report_drift",
    "enabled_sweeps",
    "grid_cells",
    "grid_enabled",
    "is_enabled",
    "key_path",
    "report_family_options",
    "report_figure_stems",
    "report_stems",
    "report_table_files",
    "set_figure_stems",
    "sweep_arch",
    "sweep_value",
    "sweep_value_text",
    "whole_cells",
]
