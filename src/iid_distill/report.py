"""Result aggregation and the report: per-seed evaluation records -> one runs table -> tables and figures beside the paper.

Pipeline: ``iid-distill evaluate`` writes a JSON list of per-seed records per synthetic set; ``collect_records``
turns many such files into one tidy row per (dataset, ipc, method, arch, seed) (``write_runs_table`` saves it as
CSV); ``render_report`` reads that CSV and ``reports/paper_numbers.yaml`` and writes Tables 1-7 (Markdown and
LaTeX: ours as mean +- std over seeds, the paper's number, the difference), ``summary.json`` and figures.
Sweeps (``collect_sweep_records`` -> one CSV per sweep) feed Table 5 and Figure 4; ``read_convergence`` (the
distiller's ``<stem>.eval.csv``) feeds Figure 5 and ``read_continual`` Figure 7; the figures of issue 5 are drawn
by ``iid_distill.plots``.

Conventions: std is the population std (ddof=0, numpy's default, as the DM code's ``np.std``); whole-dataset runs
(method ``whole``) carry ipc 0 (the whole training set, not images per class); every file is written atomically
and byte-reproducibly (sorted rows, fixed float formatting, fixed figure metadata).
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from iid_distill.names import (
    METHOD_LABELS,
    WHOLE_METHOD,
    MethodNameError,
    canonical_method,
    method_label,
    method_rank,
)
from iid_distill.utils import UserError, atomic_path, atomic_write_json, atomic_write_text, sha256_file

STD_DDOF = 0  # population std, like np.std in the DM/IDM evaluation code
WHOLE_IPC = 0  # whole-dataset runs use the whole training set; ipc 0 marks "not images per class"
DEFAULT_ARCH = "ConvNet"
DEFAULT_PAPER_YAML = "reports/paper_numbers.yaml"

DATASET_LABELS: dict[str, str] = {
    "svhn": "SVHN",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tinyimagenet": "TinyImageNet",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "digits": "digits",
}

RUN_KEY = ("dataset", "ipc", "method", "arch", "seed")
GROUP_KEY = ("dataset", "ipc", "method", "arch")
RUN_COLUMNS = RUN_KEY + (
    "acc",
    "train_acc",
    "epochs",
    "schedule",
    "iterations",
    "synthetic_seed",
    "params_hash",
    "git_sha",
    "device",
    "wall_s",
    "records_file",
)
_INT_COLUMNS = ("ipc", "seed", "epochs")
_FLOAT_COLUMNS = ("acc", "train_acc", "wall_s")
_TEXT_COLUMNS = ("dataset", "method", "arch", "schedule", "params_hash", "git_sha", "device", "records_file")
_OPTIONAL_INT_COLUMNS = ("iterations", "synthetic_seed")  # empty where there is none (coresets, the whole dataset)
_ADDED_COLUMNS = ("iterations",)  # absent from runs tables written before they existed: read as empty
_REQUIRED_RECORD_FIELDS = ("dataset", "method", "arch", "seed", "acc", "epochs", "params_hash", "git_sha", "device", "wall_s")

MISSING = "-"
DAGGER_MD = "†"
QUOTED_NOTE = "Quoted from the paper, not re-run."


class ReportError(UserError):
    """Bad records, runs table, paper-numbers file or report arguments."""


def dataset_label(dataset: str, data_labels: Mapping[str, str] | None = None) -> str:
    """Display name of a dataset; ``data_labels`` overrides it (e.g. cifar10 -> "CIFAR-10 (JPEG copy)")."""
    if data_labels and dataset in data_labels:
        return str(data_labels[dataset])
    return DATASET_LABELS.get(dataset, dataset)


# ----------------------------------------------------------------------------------------------------------------
# Records -> runs table


def _as_int(value: Any, field: str, where: str) -> int:
    """An integer field; integral floats (3.0) are accepted, bools and fractions are not."""
    if isinstance(value, bool) or value is None:
        raise ReportError(f"{where}: {field} = {value!r}, expected an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ReportError(f"{where}: {field} = {value!r}, expected an integer")


def _as_float(value: Any, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ReportError(f"{where}: {field} = {value!r}, expected a finite number")
    return float(value)


def _record_ipc(record: Mapping[str, Any], method: str, where: str) -> int:
    if method == WHOLE_METHOD:
        return WHOLE_IPC
    ipc = _as_int(record.get("ipc"), "ipc", where)
    if ipc < 1:
        raise ReportError(f"{where}: ipc = {ipc}, expected a positive number of images per class")
    return ipc


def record_method_id(record: Mapping[str, Any]) -> str:
    """The method id a record was made by: its ``method_id``, else its set's provenance (records written before
    method_id existed), else its display label mapped back (older records still; a label names known methods only)."""
    provenance = (record.get("synthetic_params") or record.get("params") or {}).get("provenance") or {}
    method_id = record.get("method_id") or provenance.get("method_id")
    return canonical_method(method_id, custom=True) if method_id else canonical_method(record["method"])


def record_to_row(record: Mapping[str, Any], where: str, records_file: str = "") -> dict[str, Any]:
    """One runs-table row from one evaluation record (``evaluate.evaluate_synthetic_set``), validated."""
    if not isinstance(record, Mapping):
        raise ReportError(f"{where}: expected a JSON object per seed, got {type(record).__name__}")
    absent = [field for field in _REQUIRED_RECORD_FIELDS if field not in record]
    if absent:
        raise ReportError(f"{where}: missing field(s) {', '.join(absent)}; records must come from `iid-distill evaluate`")
    try:
        method = record_method_id(record)
    except MethodNameError as error:
        raise ReportError(f"{where}: {error}") from None
    dataset = record["dataset"]
    if not isinstance(dataset, str) or not dataset.strip():
        raise ReportError(f"{where}: dataset = {dataset!r}, expected a dataset name")
    acc = _as_float(record["acc"], "acc", where)
    if not 0.0 <= acc <= 100.0:
        raise ReportError(f"{where}: acc = {acc}, expected a percentage in [0, 100]")
    train_acc = record.get("train_acc")
    eval_params = record.get("eval_params") or {}
    synthetic_seed = record.get("synthetic_seed")
    iterations = (record.get("synthetic_params") or {}).get("iterations")  # a distilled set's budget
    return {
        "dataset": dataset.strip().lower(),
        "ipc": _record_ipc(record, method, where),
        "method": method,
        "arch": str(record["arch"]),
        "seed": _as_int(record["seed"], "seed", where),
        "acc": acc,
        "train_acc": float("nan") if train_acc is None else _as_float(train_acc, "train_acc", where),
        "epochs": _as_int(record["epochs"], "epochs", where),
        "schedule": str(eval_params.get("schedule", record.get("schedule", "")) or ""),
        "iterations": None if iterations is None else _as_int(iterations, "synthetic_params.iterations", where),
        "synthetic_seed": None if synthetic_seed is None else _as_int(synthetic_seed, "synthetic_seed", where),
        "params_hash": str(record["params_hash"]),
        "git_sha": str(record["git_sha"]),
        "device": str(record["device"]),
        "wall_s": _as_float(record["wall_s"], "wall_s", where),
        "records_file": records_file,
    }


def _read_records_file(path: Path) -> list[Any]:
    if not path.is_file():
        raise ReportError(f"records file {path} does not exist; run `iid-distill evaluate SET.pt --out {path}` first")
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"records file {path} is not valid JSON ({error})") from None
    if not isinstance(records, list) or not records:
        raise ReportError(f"records file {path}: expected a non-empty JSON list of per-seed records")
    return records


def _typed_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order and dtypes (synthetic_seed may be empty: whole-dataset runs have no synthetic set)."""
    runs = rows.loc[:, list(RUN_COLUMNS)].copy()
    for column in _INT_COLUMNS:
        runs[column] = runs[column].astype("int64")
    for column in _FLOAT_COLUMNS:
        runs[column] = runs[column].astype("float64")
    for column in _OPTIONAL_INT_COLUMNS:
        runs[column] = runs[column].astype("Int64")
    for column in _TEXT_COLUMNS:
        runs[column] = runs[column].astype(str)
    return runs


def _method_order(methods: pd.Series) -> pd.Series:
    """Integer report order of method ids: the known ones as listed, then the others by name."""
    order = {method: index for index, method in enumerate(sorted(set(methods), key=method_rank))}
    return methods.map(order)


def sort_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: dataset, ipc, method (report order), arch, seed."""
    keyed = runs.assign(_method_rank=_method_order(runs["method"]))
    keyed = keyed.sort_values(["dataset", "ipc", "_method_rank", "arch", "seed"], kind="mergesort")
    return keyed.drop(columns="_method_rank").reset_index(drop=True)


def check_no_duplicates(runs: pd.DataFrame, where: str) -> None:
    """Two rows with the same (dataset, ipc, method, arch, seed) would be averaged silently: refuse them."""
    duplicated = runs.duplicated(list(RUN_KEY), keep=False)
    if duplicated.any():
        clashes = runs.loc[duplicated].groupby(list(RUN_KEY), sort=True)["records_file"].apply(lambda files: sorted(set(files)))
        described = "; ".join(
            f"{_describe_key(key)} in {', '.join(files) or 'the table'}" for key, files in clashes.items()
        )
        raise ReportError(f"{where}: {int(duplicated.sum())} rows share a (dataset, ipc, method, arch, seed) key: {described}; "
                          "keep one evaluation per seed (remove the stale records file)")


def _describe_key(key: Sequence[Any]) -> str:
    dataset, ipc, method, arch, seed = key
    return f"{dataset} ipc {ipc} {method} {arch} seed {seed}"


def collect_records(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every per-seed record of the given ``iid-distill evaluate`` JSON files as one tidy, sorted runs table.

    Columns: RUN_COLUMNS (key, acc, train_acc and provenance). Duplicate keys, missing fields, unknown methods
    and unreadable files are errors naming the file and record.
    """
    rows = []
    paths = [Path(path) for path in paths]
    if not paths:
        raise ReportError("no records files given; pass the JSON files written by `iid-distill evaluate`")
    for path in paths:
        for index, record in enumerate(_read_records_file(path)):
            rows.append(record_to_row(record, f"{path} record {index}", records_file=str(path)))
    runs = _typed_runs(pd.DataFrame(rows, columns=list(RUN_COLUMNS)))
    check_no_duplicates(runs, "records")
    return sort_runs(runs)


def write_runs_table(records_df: pd.DataFrame, path: str | Path) -> Path:
    """Write the runs table as CSV (sorted rows, shortest round-trip floats, LF line ends), atomically."""
    path = Path(path)
    missing = [column for column in RUN_COLUMNS if column not in records_df.columns]
    if missing:
        raise ReportError(f"runs table for {path}: missing column(s) {', '.join(missing)}; build it with collect_records")
    runs = _typed_runs(records_df)
    check_no_duplicates(runs, f"runs table for {path}")
    with atomic_path(path) as tmp:
        sort_runs(runs).to_csv(tmp, index=False, lineterminator="\n")
    return path


def read_runs_table(path: str | Path) -> pd.DataFrame:
    """Read a runs table written by ``write_runs_table`` (validated: columns, types, methods, duplicates)."""
    path = Path(path)
    hint = f"build it with `iid-distill aggregate --records ... --out {path}`"
    required = [column for column in RUN_COLUMNS if column not in _ADDED_COLUMNS]
    runs = _read_text_csv(path, "runs table", hint, required, optional=_ADDED_COLUMNS).copy()  # an empty table would render empty tables
    for column in _INT_COLUMNS + _FLOAT_COLUMNS + _OPTIONAL_INT_COLUMNS:
        text = runs[column].str.strip()
        numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad = numbers.isna() & (text != "")
        if column in _INT_COLUMNS or column in ("acc", "wall_s"):
            bad |= text == ""
        if column in _INT_COLUMNS or column in _OPTIONAL_INT_COLUMNS:
            bad |= numbers.notna() & (numbers % 1 != 0)
        if bad.any():
            row = int(bad.idxmax())
            raise ReportError(f"runs table {path} row {row + 2}: {column} = {runs.at[row, column]!r} is not a number")
        runs[column] = numbers
    try:
        runs["method"] = runs["method"].map(lambda method: canonical_method(method, custom=True))
    except MethodNameError as error:
        raise ReportError(f"runs table {path}: {error}") from None
    runs["dataset"] = runs["dataset"].str.strip().str.lower()
    runs.loc[runs["method"] == WHOLE_METHOD, "ipc"] = WHOLE_IPC
    runs = _typed_runs(runs)
    if not runs["acc"].between(0.0, 100.0).all():
        raise ReportError(f"runs table {path}: acc values must be percentages in [0, 100]")
    check_no_duplicates(runs, f"runs table {path}")
    return sort_runs(runs)


def normalise_run_key(key: Sequence[Any]) -> tuple[str, int, str, str, int]:
    """(dataset, ipc, method, arch, seed) as stored in the runs table (canonical method, ipc 0 for whole)."""
    if len(key) != len(RUN_KEY):
        raise ReportError(f"expected run key {key!r}: need (dataset, ipc, method, arch, seed)")
    dataset, ipc, method, arch, seed = key
    method = canonical_method(method, custom=True)
    ipc = WHOLE_IPC if method == WHOLE_METHOD else _as_int(ipc, "ipc", f"expected run {key!r}")
    return (str(dataset).strip().lower(), ipc, method, str(arch), _as_int(seed, "seed", f"expected run {key!r}"))


def check_complete(df: pd.DataFrame, expected: Iterable[Sequence[Any]]) -> None:
    """Raise a ReportError listing every expected (dataset, ipc, method, arch, seed) that has no row in ``df``."""
    present = set(df.loc[:, list(RUN_KEY)].itertuples(index=False, name=None))
    present = {(str(d), int(i), str(m), str(a), int(s)) for d, i, m, a, s in present}
    missing = sorted({normalise_run_key(key) for key in expected} - present)
    if not missing:
        return
    seeds_by_group: dict[tuple, list[int]] = {}
    for dataset, ipc, method, arch, seed in missing:
        seeds_by_group.setdefault((dataset, ipc, method, arch), []).append(seed)
    described = "; ".join(
        f"{dataset} ipc {ipc} {method} {arch}: seed(s) {', '.join(map(str, seeds))}"
        for (dataset, ipc, method, arch), seeds in seeds_by_group.items()
    )
    raise ReportError(f"INCOMPLETE RESULTS: {len(missing)} expected run(s) missing in {len(seeds_by_group)} setting(s): {described}")


def expected_seed_keys(df: pd.DataFrame, num_seeds: int) -> list[tuple[str, int, str, str, int]]:
    """Seeds 0..num_seeds-1 for every (dataset, ipc, method, arch) present in ``df``."""
    if num_seeds < 1:
        raise ReportError(f"--expect-seeds {num_seeds}: expected a positive number of seeds")
    groups = df.loc[:, list(GROUP_KEY)].drop_duplicates().itertuples(index=False, name=None)
    return [(str(d), int(i), str(m), str(a), seed) for d, i, m, a in groups for seed in range(num_seeds)]


# ----------------------------------------------------------------------------------------------------------------
# Sweep tables, convergence curves and continual-learning records (the inputs of Tables 5, Figures 4, 5 and 7)

SWEEP_COLUMNS = ("sweep", "parameter", "value", "dataset", "ipc", "method", "arch", "seed", "acc",
                 "params_hash", "git_sha", "device", "records_file")
SWEEP_KEY = ("sweep", "value", "arch", "seed")
_SWEEP_SETTING = ("parameter", "dataset", "ipc", "method")
_SWEEP_INT_COLUMNS = ("ipc", "seed")
_SWEEP_FLOAT_COLUMNS = ("value", "acc")
_SWEEP_TEXT_COLUMNS = ("sweep", "parameter", "dataset", "method", "arch", "params_hash", "git_sha", "device", "records_file")
# The paper's sweeps and the synthetic-set parameter each one varies.
PAPER_SWEEPS: dict[str, str] = {"table5_beta": "cc_beta", "figure4_lambda_cc": "lambda_cc", "figure4_lambda_cm": "lambda_cm"}
SWEEP_HINT = "build it with `iid-distill aggregate-sweep --name NAME --parameter KEY --records ... --out CSV`"

CONVERGENCE_COLUMNS = ("dataset", "ipc", "method", "iteration", "seed", "acc")
CONVERGENCE_KEY = ("dataset", "ipc", "method", "iteration", "seed")
CONVERGENCE_HINT = "run `iid-distill distill --eval-every N --out STEM.pt`, which writes STEM.eval.csv beside STEM.json"

CONTINUAL_COLUMNS = ("dataset", "steps", "order", "method", "step", "classes_seen", "model_seed", "acc")
CONTINUAL_KEY = ("dataset", "steps", "order", "method", "step", "model_seed")
CONTINUAL_HINT = "write it with `iid-distill continual`"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _read_text_csv(path: Path, what: str, hint: str, columns: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV with every cell as text (a hex hash such as "12e45678" must never become a float), columns checked;
    ``optional`` columns are kept where present and empty where not."""
    if not path.is_file():
        raise ReportError(f"{what} {path} does not exist; {hint}")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:  # binary: ValueError
        raise ReportError(f"{what} {path} is not a readable CSV ({_one_line(error)}); {hint}") from None
    missing = [column for column in columns if column not in raw.columns]
    if missing:
        raise ReportError(f"{what} {path}: missing column(s) {', '.join(missing)}; {hint}")
    if raw.empty:
        raise ReportError(f"{what} {path} has no rows; {hint}")
    for column in optional:
        if column not in raw.columns:
            raw[column] = ""
    return raw.loc[:, [*columns, *optional]].reset_index(drop=True)


def _numeric_column(raw: pd.DataFrame, column: str, where: str, integer: bool) -> pd.Series:
    """A column of finite numbers (integers if ``integer``); the first bad cell is named with its CSV line."""
    text = raw[column].str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")
    bad = ~np.isfinite(values)
    if integer:
        bad |= values % 1 != 0
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ReportError(f"{where} line {row + 2}: {column} = {raw.at[row, column]!r} is not {'an integer' if integer else 'a finite number'}")
    return values.astype("int64" if integer else "float64")


def _check_percent(values: pd.Series, where: str) -> None:
    if not values.between(0.0, 100.0).all():
        row = int((~values.between(0.0, 100.0)).to_numpy().argmax())
        raise ReportError(f"{where}: acc = {values.iloc[row]} is not a percentage in [0, 100]")


def _check_name(value: Any, option: str) -> str:
    """A sweep or parameter name: letters, digits, '_', '.', '-' (it becomes a file name and a table label)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", value.strip()):
        raise ReportError(f"{option} {value!r}: expected a name of letters, digits, '_', '.' or '-', e.g. table5_beta")
    return value.strip()


def _sweep_value(record: Mapping[str, Any], parameter: str, where: str) -> float:
    params = record.get("synthetic_params")
    if not isinstance(params, Mapping):
        raise ReportError(f"{where}: no synthetic_params (an evaluation from before they were recorded); "
                          "re-run `iid-distill evaluate` on the synthetic set")
    if params.get(parameter) is None:
        raise ReportError(f"{where}: synthetic_params has no {parameter!r}; check --parameter, or re-run `iid-distill evaluate` "
                          "on a synthetic set distilled with it")
    return _as_float(params[parameter], f"synthetic_params[{parameter!r}]", where)


def _typed_sweeps(rows: pd.DataFrame) -> pd.DataFrame:
    sweeps = rows.loc[:, list(SWEEP_COLUMNS)].copy()
    for column in _SWEEP_INT_COLUMNS:
        sweeps[column] = sweeps[column].astype("int64")
    for column in _SWEEP_FLOAT_COLUMNS:
        sweeps[column] = sweeps[column].astype("float64")
    for column in _SWEEP_TEXT_COLUMNS:
        sweeps[column] = sweeps[column].astype(str)
    return sweeps


def sort_sweeps(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: sweep, value, arch, seed."""
    return sweeps.sort_values(["sweep", "value", "arch", "seed"], kind="mergesort").reset_index(drop=True)


def check_sweeps(sweeps: pd.DataFrame, where: str) -> None:
    """One (parameter, dataset, ipc, method) per sweep, the paper's sweeps on their parameter, one row per (value, arch, seed)."""
    for name, group in sweeps.groupby("sweep", sort=True):
        settings = group.loc[:, list(_SWEEP_SETTING)].drop_duplicates()
        if len(settings) > 1:
            described = "; ".join(f"{p} on {d} ipc {i} {m}" for p, d, i, m in settings.itertuples(index=False, name=None))
            raise ReportError(f"{where}: sweep {name!r} mixes {described}; a sweep varies one parameter of one (dataset, ipc, method): "
                              "give each its own --name")
        expected = PAPER_SWEEPS.get(name)
        parameter = settings.iloc[0]["parameter"]
        if expected is not None and parameter != expected:
            raise ReportError(f"{where}: sweep {name!r} is the paper's {expected} sweep, not {parameter}; pass --parameter {expected}")
    duplicated = sweeps.duplicated(list(SWEEP_KEY), keep=False)
    if duplicated.any():
        clashes = sweeps.loc[duplicated].groupby(list(SWEEP_KEY), sort=True)["records_file"].apply(lambda files: sorted(set(files)))
        (sweep, value, arch, seed), files = next(iter(clashes.items()))
        parameter = sweeps.loc[sweeps["sweep"] == sweep, "parameter"].iloc[0]
        raise ReportError(f"{where}: {int(duplicated.sum())} rows share a (sweep, value, arch, seed) key, e.g. sweep {sweep} "
                          f"{parameter}={value:g} {arch} seed {seed} in {', '.join(files)}; keep one evaluation per value and seed")


def collect_sweep_records(paths: Iterable[str | Path], sweep: str, parameter: str) -> pd.DataFrame:
    """The per-seed records of one sweep's synthetic sets as a sweep table (SWEEP_COLUMNS), sorted by value.

    ``value`` is ``record["synthetic_params"][parameter]`` (the synthetic set's distillation parameter).
    """
    sweep, parameter = _check_name(sweep, "--name"), _check_name(parameter, "--parameter")
    if PAPER_SWEEPS.get(sweep, parameter) != parameter:
        raise ReportError(f"sweep {sweep!r} is the paper's {PAPER_SWEEPS[sweep]} sweep, not {parameter}; pass --parameter {PAPER_SWEEPS[sweep]}")
    paths = [Path(path) for path in paths]
    if not paths:
        raise ReportError(f"sweep {sweep}: no records files given; pass the JSON files written by `iid-distill evaluate`")
    rows = []
    for path in paths:
        for index, record in enumerate(_read_records_file(path)):
            where = f"{path} record {index}"
            run = record_to_row(record, where, records_file=str(path))
            if run["method"] == WHOLE_METHOD:
                raise ReportError(f"{where}: a whole-dataset record has no synthetic set, so it cannot be part of sweep {sweep}")
            rows.append({"sweep": sweep, "parameter": parameter, "value": _sweep_value(record, parameter, where),
                         **{column: run[column] for column in SWEEP_COLUMNS[3:]}})
    sweeps = _typed_sweeps(pd.DataFrame(rows, columns=list(SWEEP_COLUMNS)))
    check_sweeps(sweeps, f"sweep {sweep}")
    return sort_sweeps(sweeps)


def write_sweep_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a sweep table as CSV (sorted rows, shortest round-trip floats, LF line ends), atomically."""
    path = Path(path)
    missing = [column for column in SWEEP_COLUMNS if column not in df.columns]
    if missing:
        raise ReportError(f"sweep table for {path}: missing column(s) {', '.join(missing)}; build it with collect_sweep_records")
    sweeps = _typed_sweeps(df)
    check_sweeps(sweeps, f"sweep table for {path}")
    with atomic_path(path) as tmp:
        sort_sweeps(sweeps).to_csv(tmp, index=False, lineterminator="\n")
    return path


def _read_sweep_table(path: Path) -> pd.DataFrame:
    raw = _read_text_csv(path, "sweep table", SWEEP_HINT, SWEEP_COLUMNS)
    sweeps = raw.copy()
    for column in _SWEEP_INT_COLUMNS + _SWEEP_FLOAT_COLUMNS:
        sweeps[column] = _numeric_column(raw, column, f"sweep table {path}", integer=column in _SWEEP_INT_COLUMNS)
    try:
        sweeps["method"] = sweeps["method"].map(lambda method: canonical_method(method, custom=True))
        sweeps["sweep"] = sweeps["sweep"].map(lambda name: _check_name(name, "sweep"))
        sweeps["parameter"] = sweeps["parameter"].map(lambda name: _check_name(name, "parameter"))
    except (ReportError, MethodNameError) as error:
        raise ReportError(f"sweep table {path}: {error}") from None
    sweeps["dataset"] = sweeps["dataset"].str.strip().str.lower()
    _check_percent(sweeps["acc"], f"sweep table {path}")
    return _typed_sweeps(sweeps)


def read_sweep_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Sweep tables written by ``write_sweep_table``, concatenated and validated (an empty table for no paths)."""
    tables = [_read_sweep_table(Path(path)) for path in paths]
    if not tables:
        return _typed_sweeps(pd.DataFrame(columns=list(SWEEP_COLUMNS)))
    sweeps = pd.concat(tables, ignore_index=True)
    check_sweeps(sweeps, "sweep tables " + ", ".join(str(path) for path in paths))
    return sort_sweeps(sweeps)


def _read_json(path: Path, what: str, hint: str) -> Any:
    if not path.is_file():
        raise ReportError(f"{what} {path} does not exist; {hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{what} {path} is not valid JSON ({_one_line(error)}); {hint}") from None


def convergence_record_path(eval_csv: str | Path) -> Path:
    """``<stem>.eval.csv`` -> ``<stem>.json``, the distillation record beside it."""
    eval_csv = Path(eval_csv)
    if not eval_csv.name.endswith(".eval.csv"):
        raise ReportError(f"convergence file {eval_csv}: expected a <stem>.eval.csv; {CONVERGENCE_HINT}")
    return eval_csv.with_suffix("").with_suffix(".json")


def _convergence_setting(record_path: Path) -> tuple[str, int, str]:
    """(dataset, ipc, method id) of the distillation that wrote the curve."""
    record = _read_json(record_path, "distillation record", CONVERGENCE_HINT)
    if not isinstance(record, Mapping) or not all(key in record for key in ("dataset", "ipc", "method")):
        raise ReportError(f"distillation record {record_path}: expected a JSON object with dataset, ipc and method; {CONVERGENCE_HINT}")
    try:
        method = record_method_id(record)
    except MethodNameError as error:
        raise ReportError(f"distillation record {record_path}: {error}") from None
    dataset = record["dataset"]
    if not isinstance(dataset, str) or not dataset.strip():
        raise ReportError(f"distillation record {record_path}: dataset = {dataset!r}, expected a dataset name")
    ipc = _as_int(record["ipc"], "ipc", f"distillation record {record_path}")
    return dataset.strip().lower(), ipc, method


def _sort_by(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Sort by ``columns``, the method column in report order."""
    keyed = df.assign(_method_rank=_method_order(df["method"]))
    keys = ["_method_rank" if column == "method" else column for column in columns]
    return keyed.sort_values(keys, kind="mergesort").drop(columns="_method_rank").reset_index(drop=True)


def _refuse_duplicates(df: pd.DataFrame, key: Sequence[str], files: pd.Series, what: str) -> None:
    duplicated = df.duplicated(list(key), keep=False)
    if duplicated.any():
        first = df.loc[duplicated].iloc[0]
        same = (df.loc[:, list(key)] == first[list(key)]).all(axis=1)
        described = " ".join(f"{column} {first[column]}" for column in key)
        raise ReportError(f"{what}: {int(duplicated.sum())} rows share a ({', '.join(key)}) key, e.g. {described} "
                          f"in {', '.join(sorted(set(files[same])))}; pass each run once")


def read_convergence(eval_csv_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Accuracy-vs-iteration curves (``<stem>.eval.csv``), each labelled from its ``<stem>.json`` record.

    Columns: dataset, ipc, method (canonical id), iteration, seed (evaluation seed), acc.
    """
    frames, files = [], []
    for path in (Path(path) for path in eval_csv_paths):
        dataset, ipc, method = _convergence_setting(convergence_record_path(path))
        raw = _read_text_csv(path, "convergence file", CONVERGENCE_HINT, ("iteration", "seed", "acc"))
        curve = pd.DataFrame({column: _numeric_column(raw, column, f"convergence file {path}", integer=column != "acc")
                              for column in ("iteration", "seed", "acc")})
        if (curve["iteration"] < 0).any():
            raise ReportError(f"convergence file {path}: negative iteration; {CONVERGENCE_HINT}")
        _check_percent(curve["acc"], f"convergence file {path}")
        frames.append(curve.assign(dataset=dataset, ipc=ipc, method=method).loc[:, list(CONVERGENCE_COLUMNS)])
        files += [str(path)] * len(curve)
    if not frames:
        raise ReportError(f"no convergence files given; {CONVERGENCE_HINT}")
    conv = pd.concat(frames, ignore_index=True)
    _refuse_duplicates(conv, CONVERGENCE_KEY, pd.Series(files), "convergence files")
    return _sort_by(conv, CONVERGENCE_KEY)


def _continual_rows(path: Path) -> list[dict[str, Any]]:
    record = _read_json(path, "continual record", CONTINUAL_HINT)
    if not isinstance(record, Mapping) or record.get("kind") != "continual":
        raise ReportError(f"continual record {path}: expected a JSON object with kind 'continual'; {CONTINUAL_HINT}")
    absent = [key for key in ("dataset", "method", "steps", "order", "records") if key not in record]
    if absent:
        raise ReportError(f"continual record {path}: missing field(s) {', '.join(absent)}; {CONTINUAL_HINT}")
    where = f"continual record {path}"
    try:
        method = canonical_method(record["method"], custom=True)
    except MethodNameError as error:
        raise ReportError(f"{where}: {error}") from None
    steps, order = _as_int(record["steps"], "steps", where), _as_int(record["order"], "order", where)
    if steps < 1 or order < 0:
        raise ReportError(f"{where}: steps = {steps}, order = {order}; expected steps >= 1 and order >= 0")
    entries = record["records"]
    if not isinstance(entries, list) or not entries:
        raise ReportError(f"{where}: records must be a non-empty list of per-step results; {CONTINUAL_HINT}")
    rows = []
    for index, entry in enumerate(entries):
        at = f"{where} records[{index}]"
        if not isinstance(entry, Mapping) or not all(key in entry for key in ("step", "classes_seen", "model_seed", "acc")):
            raise ReportError(f"{at}: expected an object with step, classes_seen, model_seed and acc")
        step = _as_int(entry["step"], "step", at)
        if not 1 <= step <= steps:
            raise ReportError(f"{at}: step = {step}, expected 1..{steps} (steps count from 1)")
        classes_seen = _as_int(entry["classes_seen"], "classes_seen", at)
        if classes_seen < 1:
            raise ReportError(f"{at}: classes_seen = {classes_seen}, expected a positive number of classes")
        acc = _as_float(entry["acc"], "acc", at)
        if not 0.0 <= acc <= 100.0:
            raise ReportError(f"{at}: acc = {acc}, expected a percentage in [0, 100]")
        rows.append({"dataset": str(record["dataset"]).strip().lower(), "steps": steps, "order": order, "method": method,
                     "step": step, "classes_seen": classes_seen, "model_seed": _as_int(entry["model_seed"], "model_seed", at),
                     "acc": acc})
    return rows


def read_continual(record_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Continual-learning records (one JSON object per dataset, steps, order and method) as one row per model and step.

    Columns: dataset, steps, order, method (canonical id), step, classes_seen, model_seed, acc.
    """
    rows, files = [], []
    for path in (Path(path) for path in record_paths):
        new = _continual_rows(path)
        rows += new
        files += [str(path)] * len(new)
    if not rows:
        raise ReportError(f"no continual records given; {CONTINUAL_HINT}")
    cl = pd.DataFrame(rows, columns=list(CONTINUAL_COLUMNS))
    for column in ("steps", "order", "step", "classes_seen", "model_seed"):
        cl[column] = cl[column].astype("int64")
    cl["acc"] = cl["acc"].astype("float64")
    _refuse_duplicates(cl, CONTINUAL_KEY, pd.Series(files), "continual records")
    return _sort_by(cl, ("dataset", "steps", "method", "order", "step", "model_seed"))


# ----------------------------------------------------------------------------------------------------------------
# Statistics and cells


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0) of per-seed accuracies."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.mean(array)), float(np.std(array, ddof=STD_DDOF))


def seed_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, ipc, method, arch): n, seeds, mean, std (ddof=0) and the provenance hashes seen."""
    rows = []
    for key, group in df.groupby(list(GROUP_KEY), sort=True):
        group = group.sort_values("seed")
        mean, std = mean_std(group["acc"].to_numpy())
        rows.append(
            {
                **dict(zip(GROUP_KEY, key)),
                "n": int(len(group)),
                "seeds": [int(seed) for seed in group["seed"]],
                "mean": mean,
                "std": std,
                "epochs": sorted({int(epochs) for epochs in group["epochs"]}),
                "params_hashes": sorted(set(group["params_hash"])),
                "git_shas": sorted(set(group["git_sha"])),
            }
        )
    columns = list(GROUP_KEY) + ["n", "seeds", "mean", "std", "epochs", "params_hashes", "git_shas"]
    stats = pd.DataFrame(rows, columns=columns)
    return sort_runs(stats.assign(seed=0)).drop(columns="seed") if len(stats) else stats


def format_diff(ours_mean: float, paper_mean: float) -> str:
    """ours - paper in points, signed, one decimal ("+0.0" rather than "-0.0")."""
    text = f"{ours_mean - paper_mean:+.1f}"
    return "+0.0" if text == "-0.0" else text


@dataclass(frozen=True)
class Cell:
    """One (row, dataset, ipc) entry: ours over seeds and the paper's number (None where absent)."""

    label: str
    method: str | None
    quoted: bool
    dataset: str
    ipc: int
    n: int
    seeds: tuple[int, ...]
    mean: float | None
    std: float | None
    paper_mean: float | None
    paper_std: float | None
    params_hashes: tuple[str, ...] = ()
    git_shas: tuple[str, ...] = ()
    column: str | None = None  # the table column when it is not (dataset, ipc): an arch (Tables 3/4), "cc_beta" (Table 5)

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.paper_mean is None:
            return None
        return self.mean - self.paper_mean

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.column is None else {"column": self.column}
        return {
            **extra,
            "label": self.label,
            "method": self.method,
            "quoted": self.quoted,
            "dataset": self.dataset,
            "ipc": self.ipc,
            "n": self.n,
            "seeds": list(self.seeds),
            "mean": self.mean,
            "std": self.std,
            "ddof": STD_DDOF,
            "paper_mean": self.paper_mean,
            "paper_std": self.paper_std,
            "diff": self.diff,
            "params_hashes": list(self.params_hashes),
            "git_shas": list(self.git_shas),
        }


def _paper_pair(value: Any, where: str) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ReportError(f"paper numbers {where}: expected [mean, std] or null, got {value!r}")
    return float(value[0]), float(value[1])


def _make_cell(label: str, method: str | None, quoted: bool, dataset: str, ipc: int, accs: pd.DataFrame | None, paper: Any, where: str,
               column: str | None = None) -> Cell:
    """``paper``: [mean, std], null, or (Table 7, means only) a bare number."""
    if isinstance(paper, numbers.Real) and not isinstance(paper, bool):
        paper_mean, paper_std = float(paper), None
    else:
        paper_mean, paper_std = _paper_pair(paper, where)
    if accs is None or quoted or len(accs) == 0:
        return Cell(label, method, quoted, dataset, ipc, 0, (), None, None, paper_mean, paper_std, column=column)
    accs = accs.sort_values("seed")
    mean, std = mean_std(accs["acc"].to_numpy())
    return Cell(
        label, method, quoted, dataset, ipc, int(len(accs)), tuple(int(s) for s in accs["seed"]), mean, std,
        paper_mean, paper_std, tuple(sorted(set(accs["params_hash"]))), tuple(sorted(set(accs["git_sha"]))), column,
    )


# ----------------------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class RenderedTable:
    """One table in both formats, plus its cells for summary.json."""

    table_id: str
    title: str
    header: str
    markdown: str
    latex: str
    cells: tuple[Cell, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)  # table-specific results for summary.json (drops, % of whole)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "header": self.header, "cells": [cell.to_json() for cell in self.cells], **self.extra}


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _seed_count_text(counts: Sequence[int]) -> str:
    if not counts:
        return "none run yet (paper numbers only)"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high} (cells with fewer than {high} are marked n=K)"


def _protocol_text(runs: pd.DataFrame, arch: str) -> str:
    """Evaluation protocol of the runs shown: arch, epochs and schedule as recorded."""
    if runs.empty:
        return f"{arch}, final-model test accuracy"
    epochs = sorted({int(value) for value in runs["epochs"]})
    schedules = sorted({value for value in runs["schedule"] if value})
    epochs_text = "/".join(map(str, epochs)) + " epochs" + (" (mixed)" if len(epochs) > 1 else "")
    schedule_text = f" ({'/'.join(schedules)} schedule{' (mixed)' if len(schedules) > 1 else ''})" if schedules else ""
    return f"{arch}, {epochs_text}{schedule_text}, final-model test accuracy"


def _budget_text(runs: pd.DataFrame) -> str:
    """The distillation budget of the distilled sets shown (the paper's DM/IDM runs use 20,000 iterations)."""
    budgets = sorted({int(value) for value in runs["iterations"].dropna()}) if "iterations" in runs else []
    if not budgets:
        return ""
    return f" Distillation: {'/'.join(f'{budget:,}' for budget in budgets)} iterations{' (mixed)' if len(budgets) > 1 else ''}."


def _header_line(runs: pd.DataFrame, datasets: Sequence[str], arch: str, cells: Sequence[Cell], data_labels: Mapping[str, str] | None) -> str:
    labels = ", ".join(dataset_label(dataset, data_labels) for dataset in datasets)
    counts = [cell.n for cell in cells if cell.n]
    return f"Data: {labels}. Protocol: {_protocol_text(runs, arch)}.{_budget_text(runs)} Seeds per cell: {_seed_count_text(counts)}."


def _legend_text(latex: bool) -> str:
    pm, minus = (r"$\pm$", "$-$") if latex else ("±", "−")
    return (
        f"Each cell: ours (mean {pm} std over evaluation seeds; std with ddof=0, numpy's default as in the DM code) / "
        f"paper (mean {pm} std) / difference ours {minus} paper in points, from the unrounded mean. "
        f"{'--' if latex else MISSING}: no run of ours, or not reported in the paper."
    )


def _ours_text(cell: Cell, max_n: int, latex: bool) -> str | None:
    if cell.mean is None:
        return None
    marker = f" (n={cell.n})" if cell.n < max_n else ""
    if latex:
        return f"${_fmt(cell.mean)} \\pm {_fmt(cell.std)}$" + (f"\\textsuperscript{{n={cell.n}}}" if marker else "")
    return f"{_fmt(cell.mean)} ± {_fmt(cell.std)}{marker}"


def _paper_text(cell: Cell, latex: bool, decimals: int = 1) -> str | None:
    """The paper's mean +- std; its mean alone, with the paper's own ``decimals``, where it gives means only (Table 7)."""
    if cell.paper_mean is None:
        return None
    if cell.paper_std is None:
        return f"${cell.paper_mean:.{decimals}f}$" if latex else f"{cell.paper_mean:.{decimals}f}"
    std = _fmt_paper_std(cell.paper_std)
    return f"${_fmt(cell.paper_mean)} \\pm {std}$" if latex else f"{_fmt(cell.paper_mean)} ± {std}"


def _fmt_paper_std(std: float) -> str:
    """One decimal, as the paper; a published std below 0.05 (Table 3: 0.02) keeps its digits rather than reading 0.0."""
    return f"{std:g}" if 0 < abs(std) < 0.05 else _fmt(std)


def markdown_cell(cell: Cell, max_n: int, paper_decimals: int = 1) -> str:
    """"ours / paper / diff", "-" for an absent part, or only the paper's number for a quoted row."""
    paper = _paper_text(cell, latex=False, decimals=paper_decimals)
    if cell.quoted:
        return paper or MISSING
    ours = _ours_text(cell, max_n, latex=False)
    if ours is None and paper is None:
        return MISSING
    diff = format_diff(cell.mean, cell.paper_mean) if cell.diff is not None else MISSING
    return f"{ours or MISSING} / {paper or MISSING} / {diff}"


def latex_cell(cell: Cell, max_n: int, paper_decimals: int = 1) -> str:
    """Ours on the first line, the paper's number and the difference below it in small type."""
    paper = _paper_text(cell, latex=True, decimals=paper_decimals)
    if cell.quoted:
        return paper or "--"
    ours = _ours_text(cell, max_n, latex=True)
    if ours is None and paper is None:
        return "--"
    second = paper or "--"
    if cell.diff is not None:
        second += f" (${format_diff(cell.mean, cell.paper_mean)}$)"
    return f"\\shortstack{{{ours or '--'}\\\\{{\\tiny {second}}}}}"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def _runs_for(df: pd.DataFrame, datasets: Sequence[str], arch: str) -> pd.DataFrame:
    return df.loc[df["dataset"].isin(list(datasets)) & (df["arch"] == arch)]


def _build_cells(runs: pd.DataFrame, paper_rows: Sequence[Mapping[str, Any]], datasets: Sequence[str], ipcs: Sequence[int], table_id: str) -> list[list[Cell]]:
    groups = {key: group for key, group in runs.groupby(["dataset", "ipc", "method"], sort=True)}
    table = []
    for row in paper_rows:
        label, quoted = str(row["label"]), bool(row.get("quoted", False))
        method = None if row.get("method") is None else canonical_method(row["method"])
        if method is None and not quoted:
            raise ReportError(f"paper numbers {table_id} row {label!r}: a row without a method must be quoted: true")
        acc = row.get("acc") or {}
        table.append([
            _make_cell(label, method, quoted, dataset, int(ipc), groups.get((dataset, int(ipc), method)),
                       (acc.get(dataset) or {}).get(ipc), f"{table_id} {label} {dataset} ipc {ipc}")
            for dataset in datasets for ipc in ipcs
        ])
    return table


def _whole_cells(runs: pd.DataFrame, whole_dataset: Mapping[str, Any], datasets: Sequence[str], table_id: str) -> list[Cell]:
    whole_runs = runs.loc[runs["method"] == WHOLE_METHOD]
    return [
        _make_cell(METHOD_LABELS[WHOLE_METHOD], WHOLE_METHOD, False, dataset, WHOLE_IPC,
                   whole_runs.loc[whole_runs["dataset"] == dataset], whole_dataset.get(dataset), f"{table_id} whole_dataset {dataset}")
        for dataset in datasets
    ]


def _row_note(paper_rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Which method each row re-runs, when the paper's row labels are not method names (Table 6: Baseline = dm)."""
    renamed = [
        f"{row['label']} = {canonical_method(row['method'])}"
        for row in paper_rows
        if row.get("method") is not None and str(row["label"]) != METHOD_LABELS[canonical_method(row["method"])]
    ]
    return f"Rows re-run as: {', '.join(renamed)}." if renamed else None


def _markdown_table(title: str, header: str, datasets, ipcs, labels, cell_rows, whole_row, max_n, data_labels, any_quoted) -> str:
    columns = [f"{dataset_label(d, data_labels)} IPC {ipc}" for d in datasets for ipc in ipcs]
    lines = [f"## {title}", "", header, "", "| Method | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for label, cells in zip(labels, cell_rows):
        lines.append(f"| {label} | " + " | ".join(markdown_cell(cell, max_n) for cell in cells) + " |")
    if whole_row is not None:
        # One whole-dataset number per dataset, under its first IPC column (it does not depend on IPC).
        spans = [[markdown_cell(cell, max_n)] + [""] * (len(ipcs) - 1) for cell in whole_row]
        lines.append(f"| {METHOD_LABELS[WHOLE_METHOD]} | " + " | ".join(text for span in spans for text in span) + " |")
    lines += ["", _legend_text(latex=False)]
    if any_quoted:
        lines.append(f"{DAGGER_MD} {QUOTED_NOTE}")
    return "\n".join(lines) + "\n"


def _latex_table(table_id: str, title: str, header: str, datasets, ipcs, labels, cell_rows, whole_row, max_n, data_labels, any_quoted) -> str:
    width = len(ipcs)
    first = " & ".join(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(dataset_label(d, data_labels))}}}" for d in datasets)
    rules = "".join(f"\\cmidrule(lr){{{2 + i * width}-{1 + (i + 1) * width}}}" for i in range(len(datasets)))
    second = " & ".join(f"IPC {ipc}" for _ in datasets for ipc in ipcs)
    lines = [
        f"% {title}: generated by iid_distill.report (needs \\usepackage{{booktabs}})",
        "\\begin{table*}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(title)}. {latex_escape(header)}}}",
        f"\\label{{tab:{table_id}}}",
        "\\scriptsize",
        "\\begin{tabular}{l" + "c" * (width * len(datasets)) + "}",
        "\\toprule",
        f" & {first} \\\\",
        rules,
        f"Method & {second} \\\\",
        "\\midrule",
    ]
    for label, cells in zip(labels, cell_rows):
        lines.append(f"{label} & " + " & ".join(latex_cell(cell, max_n) for cell in cells) + " \\\\")
    if whole_row is not None:
        spans = " & ".join(f"\\multicolumn{{{width}}}{{c}}{{{latex_cell(cell, max_n)}}}" for cell in whole_row)
        lines += ["\\midrule", f"{latex_escape(METHOD_LABELS[WHOLE_METHOD])} & {spans} \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}", "", "\\smallskip", f"{{\\footnotesize {_legend_text(latex=True)}"]
    if any_quoted:
        lines[-1] += f" $^\\dagger$ {QUOTED_NOTE}"
    lines[-1] += "}"
    lines.append("\\end{table*}")
    return "\n".join(lines) + "\n"


def render_method_table(
    df: pd.DataFrame,
    paper_rows: Sequence[Mapping[str, Any]],
    datasets: Sequence[str],
    ipcs: Sequence[int],
    *,
    table_id: str,
    title: str,
    whole_dataset: Mapping[str, Any] | None = None,
    arch: str = DEFAULT_ARCH,
    data_labels: Mapping[str, str] | None = None,
) -> RenderedTable:
    """A methods x (dataset, IPC) table in Markdown and LaTeX: ours vs the paper per cell, rows in the paper's order.

    ``paper_rows``: paper_numbers.yaml rows (label, method, quoted, acc[dataset][ipc] = [mean, std] | null);
    ``whole_dataset``: dataset -> [mean, std] adds the whole-dataset row (ours = method ``whole``). Only runs with
    ``arch`` count.
    """
    runs = _runs_for(df, datasets, arch)
    cell_rows = _build_cells(runs, paper_rows, datasets, ipcs, table_id)
    whole_row = _whole_cells(runs, whole_dataset, datasets, table_id) if whole_dataset is not None else None
    all_cells = [cell for cells in cell_rows for cell in cells] + list(whole_row or [])
    shown_methods = {cell.method for cell in all_cells if cell.n}
    shown_runs = runs.loc[runs["method"].isin(shown_methods) & runs["ipc"].isin(list(ipcs) + [WHOLE_IPC])]
    header = _header_line(shown_runs, datasets, arch, all_cells, data_labels)
    row_note = _row_note(paper_rows)
    if row_note:
        header += " " + row_note
    max_n = max((cell.n for cell in all_cells), default=0)
    any_quoted = any(bool(row.get("quoted")) for row in paper_rows)
    md_labels = [f"{row['label']}{DAGGER_MD if row.get('quoted') else ''}" for row in paper_rows]
    tex_labels = [latex_escape(str(row["label"])) + ("$^\\dagger$" if row.get("quoted") else "") for row in paper_rows]
    args = (datasets, ipcs)
    markdown = _markdown_table(title, header, *args, md_labels, cell_rows, whole_row, max_n, data_labels, any_quoted)
    latex = _latex_table(table_id, title, header, *args, tex_labels, cell_rows, whole_row, max_n, data_labels, any_quoted)
    return RenderedTable(table_id, title, header, markdown, latex, tuple(all_cells))


def _paper_table(paper: Mapping[str, Any], table_id: str) -> Mapping[str, Any]:
    table = paper.get(table_id)
    if not isinstance(table, Mapping) or "rows" not in table:
        raise ReportError(f"paper numbers: no {table_id} with rows; use reports/paper_numbers.yaml")
    return table


def _render_paper_table(df: pd.DataFrame, paper: Mapping[str, Any], table_id: str, number: int, data_labels, arch: str,
                        datasets: Sequence[str] | None = None) -> RenderedTable:
    table = _paper_table(paper, table_id)
    datasets = list(table["datasets"]) if datasets is None else [str(dataset).strip().lower() for dataset in datasets]
    return render_method_table(
        df, table["rows"], datasets, [int(ipc) for ipc in table["ipcs"]], table_id=table_id,
        title=f"{table['title']} (paper Table {number})", whole_dataset=table.get("whole_dataset"), arch=arch, data_labels=data_labels,
    )


def render_table1(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 1: SVHN, CIFAR-10, CIFAR-100 at IPC 1/10/50 with the whole-dataset row."""
    return _render_paper_table(df, paper, "table1", 1, data_labels, arch)


def render_table2(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 2: TinyImageNet at IPC 1/10/50 with the whole-dataset row."""
    return _render_paper_table(df, paper, "table2", 2, data_labels, arch)


def render_table6(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH,
                  datasets: Sequence[str] | None = None) -> RenderedTable:
    """Table 6: component ablation on DM at IPC 10 (dm, dm_cc, dm_cm, dm_iid), on the paper's CIFAR-10 and CIFAR-100
    or on ``datasets`` (e.g. the digits demo: no paper numbers there)."""
    return _render_paper_table(df, paper, "table6", 6, data_labels, arch, datasets)


PAPER_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "table1": ("title", "datasets", "ipcs", "rows"),
    "table2": ("title", "datasets", "ipcs", "rows"),
    "table3": ("title", "dataset", "ipc", "archs", "rows"),
    "table4": ("title", "dataset", "ipc", "archs", "rows"),
    "table5": ("title", "dataset", "ipc", "method", "rows"),
    "table6": ("title", "datasets", "ipcs", "rows"),
    "table7": ("title", "dataset", "ipcs", "rows"),
}


def load_paper_numbers(path: str | Path) -> dict[str, Any]:
    """reports/paper_numbers.yaml, checked to hold the method tables the report renders."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"paper numbers {path} do not exist; pass --paper reports/paper_numbers.yaml")
    try:
        paper = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ReportError(f"paper numbers {path} are not valid YAML ({error})") from None
    if not isinstance(paper, dict):
        raise ReportError(f"paper numbers {path}: expected a mapping of tables")
    for table_id, keys in PAPER_TABLE_KEYS.items():
        table = paper.get(table_id)
        if not isinstance(table, dict) or not all(key in table for key in keys):
            raise ReportError(f"paper numbers {path}: {table_id} needs {', '.join(keys)}")
        if not isinstance(table["rows"], list) or not all(isinstance(row, dict) for row in table["rows"]):
            raise ReportError(f"paper numbers {path}: {table_id} rows must be a list of mappings")
    if not all("beta" in row and "acc" in row for row in paper["table5"]["rows"]):
        raise ReportError(f"paper numbers {path}: every table5 row needs beta and acc")
    return paper


def paper_method_table(paper: Mapping[str, Any], dataset: str) -> Mapping[str, Any]:
    """The paper's main results table (Table 1 or 2) that reports ``dataset``."""
    for table_id in ("table1", "table2"):
        table = _paper_table(paper, table_id)
        if dataset in table["datasets"]:
            return table
    raise ReportError(f"dataset {dataset!r} is in neither Table 1 nor Table 2 of the paper")


# ----------------------------------------------------------------------------------------------------------------
# Tables 3, 4 (cross-architecture), 5 (beta sweep) and 7 (compression): one row label column, free column headers


def _grid_markdown(title: str, header: str, corner: str, columns: Sequence[str], row_labels: Sequence[str],
                   rows: Sequence[Sequence[str]], notes: Sequence[str]) -> str:
    lines = [f"## {title}", "", header, "", f"| {corner} | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += [f"| {label} | " + " | ".join(texts) + " |" for label, texts in zip(row_labels, rows)]
    return "\n".join(lines + [""] + list(notes)) + "\n"


def _grid_latex(table_id: str, title: str, header: str, corner: str, columns: Sequence[str], row_labels: Sequence[str],
                rows: Sequence[Sequence[str]], notes: Sequence[str], rule_before: Sequence[int] = ()) -> str:
    """Like the Markdown table; ``corner``, ``columns``, labels, cells and notes come LaTeX-ready (title/header are escaped)."""
    lines = [
        f"% {title}: generated by iid_distill.report (needs \\usepackage{{booktabs}})",
        "\\begin{table*}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(title)}. {latex_escape(header)}}}",
        f"\\label{{tab:{table_id}}}",
        "\\scriptsize",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        f"{corner} & " + " & ".join(columns) + " \\\\",
        "\\midrule",
    ]
    for index, (label, texts) in enumerate(zip(row_labels, rows)):
        if index in rule_before:
            lines.append("\\midrule")
        lines.append(f"{label} & " + " & ".join(texts) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "", "\\smallskip", "{\\footnotesize " + " ".join(notes) + "}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


def _quoted_notes(any_quoted: bool, latex: bool) -> list[str]:
    if not any_quoted:
        return []
    return [f"$^\\dagger$ {QUOTED_NOTE}" if latex else f"{DAGGER_MD} {QUOTED_NOTE}"]


def _row_labels(labels: Sequence[str], quoted: Sequence[bool]) -> tuple[list[str], list[str]]:
    """Markdown and LaTeX row labels, quoted rows marked with the dagger."""
    md = [f"{label}{DAGGER_MD if q else ''}" for label, q in zip(labels, quoted)]
    tex = [latex_escape(label) + ("$^\\dagger$" if q else "") for label, q in zip(labels, quoted)]
    return md, tex


def _max_n(cells: Iterable[Cell]) -> int:
    return max((cell.n for cell in cells), default=0)


def _group_map(runs: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, pd.DataFrame]:
    return {key if isinstance(key, tuple) else (key,): group for key, group in runs.groupby(list(keys), sort=True)}


def cross_arch_drop(means: Mapping[str, float | None], reference: str = DEFAULT_ARCH) -> tuple[float, str] | None:
    """(``reference`` mean minus the lowest mean of the other archs, that arch); None without both.

    Ties go to the arch first in alphabetical order, so the named arch is deterministic.
    """
    others = {arch: mean for arch, mean in means.items() if arch != reference and mean is not None}
    if means.get(reference) is None or not others:
        return None
    worst = min(sorted(others), key=lambda arch: others[arch])
    return float(means[reference]) - float(others[worst]), worst


def _drop_texts(ours: tuple[float, str] | None, paper: tuple[float, str] | None, quoted: bool) -> tuple[str, str]:
    """Markdown and LaTeX "ours (arch) / paper (arch) / diff" for the drop column; the paper's drop only for quoted rows."""
    def part(drop, latex):
        if drop is None:
            return "--" if latex else MISSING
        value, arch = drop
        return f"${_fmt(value)}$ ({arch})" if latex else f"{_fmt(value)} ({arch})"

    if quoted:
        return part(paper, False), part(paper, True)
    if ours is None and paper is None:
        return MISSING, "--"
    diff = format_diff(ours[0], paper[0]) if ours is not None and paper is not None else None
    markdown = f"{part(ours, False)} / {part(paper, False)} / {diff or MISSING}"
    second = part(paper, True) + (f" (${diff}$)" if diff else "")
    return markdown, f"\\shortstack{{{part(ours, True)}\\\\{{\\tiny {second}}}}}"


def per_arch_drops(cells: Sequence[Cell], reference: str = DEFAULT_ARCH) -> dict[str, tuple[float | None, float | None]]:
    """Per other architecture: (ours, paper) drop from ``reference``, i.e. its mean minus the architecture's; None where
    either mean is absent."""
    by_arch = {cell.column: cell for cell in cells}
    base = by_arch.get(reference)

    def drop(a, b):
        return None if a is None or b is None else float(a) - float(b)

    return {arch: (drop(base and base.mean, cell.mean), drop(base and base.paper_mean, cell.paper_mean))
            for arch, cell in by_arch.items() if arch != reference}


def _per_arch_drop_text(ours: float | None, paper: float | None, quoted: bool, latex: bool) -> str:
    missing = "--" if latex else MISSING
    show = (lambda value: missing if value is None else (f"${_fmt(value)}$" if latex else _fmt(value)))
    return show(paper) if quoted else f"{show(ours)} / {show(paper)}"


def render_cross_arch_table(df: pd.DataFrame, paper: Mapping[str, Any], table_id: str, dataset: str = "cifar10",
                            data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 3 (``table3``, IPC 10) or Table 4 (``table4``, IPC 50): methods x evaluation architectures at one IPC.

    Rows: the paper's rows (quoted ones only when ``dataset`` is the paper's), then every other method evaluated on an
    architecture other than ConvNet (a ConvNet-only method, e.g. the Table 6 ablation, is not a cross-architecture run);
    columns: the paper's archs, any other arch run, and the drop from ConvNet (ConvNet minus the worst other arch).
    Paper numbers only when ``dataset`` is the paper's (CIFAR-10).
    """
    table = _paper_table(paper, table_id)
    number, ipc, paper_dataset = int(table_id.removeprefix("table")), int(table["ipc"]), str(table["dataset"])
    dataset = dataset.strip().lower()
    use_paper = dataset == paper_dataset
    runs = df.loc[(df["dataset"] == dataset) & (df["ipc"] == ipc) & (df["method"] != WHOLE_METHOD)]
    archs = [str(arch) for arch in table["archs"]]
    archs += sorted(set(runs["arch"]) - set(archs))
    paper_rows = [row for row in table["rows"] if use_paper or not row.get("quoted")]
    listed = {canonical_method(row["method"]) for row in paper_rows if row.get("method") is not None}
    cross_methods = set(runs.loc[runs["arch"] != DEFAULT_ARCH, "method"])
    extra_methods = [method for method in METHOD_LABELS if method in cross_methods - listed]
    rows = [(str(row["label"]), None if row.get("method") is None else canonical_method(row["method"]), bool(row.get("quoted")),
             (row.get("acc") or {}) if use_paper else {}) for row in paper_rows]
    rows += [(METHOD_LABELS[method], method, False, {}) for method in extra_methods]
    for label, method, quoted, _ in rows:
        if method is None and not quoted:
            raise ReportError(f"paper numbers {table_id} row {label!r}: a row without a method must be quoted: true")

    groups = _group_map(runs, ["method", "arch"])
    cell_rows = [[_make_cell(label, method, quoted, dataset, ipc, groups.get((method, arch)), acc.get(arch),
                             f"{table_id} {label} {arch}", column=arch) for arch in archs]
                 for label, method, quoted, acc in rows]
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells)
    drops = []
    for (label, method, quoted, _), cells in zip(rows, cell_rows):
        ours = None if quoted else cross_arch_drop({cell.column: cell.mean for cell in cells})
        theirs = cross_arch_drop({cell.column: cell.paper_mean for cell in cells})
        drops.append({"label": label, "method": method, "quoted": quoted,
                      "ours_drop": None if ours is None else ours[0], "ours_worst_arch": None if ours is None else ours[1],
                      "paper_drop": None if theirs is None else theirs[0], "paper_worst_arch": None if theirs is None else theirs[1],
                      "_texts": _drop_texts(ours, theirs, quoted)})

    shown = runs.loc[runs["method"].isin({cell.method for cell in all_cells if cell.n})]
    counts = [cell.n for cell in all_cells if cell.n]
    header = (f"Data: {dataset_label(dataset, data_labels)}, IPC {ipc}. Protocol: {_protocol_text(shown, 'each column architecture')}.{_budget_text(shown)} "
              f"Seeds per cell: {_seed_count_text(counts)}.")
    if use_paper:
        title = f"{table['title']} (paper Table {number})"
    else:
        title = f"Cross-architecture generalisation, {dataset_label(dataset, data_labels)} IPC {ipc} (as paper Table {number})"
        header += f" The paper reports this table for {dataset_label(paper_dataset, data_labels)} only: no paper numbers."
    drop_note = (f"Drop from {DEFAULT_ARCH}: {DEFAULT_ARCH} mean minus the lowest mean of the other architectures (named), "
                 "ours over the architectures run, the paper's over its four.")
    any_quoted = any(quoted for _, _, quoted, _ in rows)
    md_labels, tex_labels = _row_labels([row[0] for row in rows], [row[2] for row in rows])
    drop_column = f"Drop from {DEFAULT_ARCH}"
    markdown = _grid_markdown(title, header, "Method", archs + [drop_column], md_labels,
                              [[markdown_cell(cell, max_n) for cell in cells] + [drop["_texts"][0]] for cells, drop in zip(cell_rows, drops)],
                              [_legend_text(latex=False), drop_note] + _quoted_notes(any_quoted, latex=False))
    latex = _grid_latex(table_id, title, header, "Method", [latex_escape(arch) for arch in archs] + [drop_column], tex_labels,
                        [[latex_cell(cell, max_n) for cell in cells] + [drop["_texts"][1]] for cells, drop in zip(cell_rows, drops)],
                        [_legend_text(latex=True), latex_escape(drop_note)] + _quoted_notes(any_quoted, latex=True))
    # The drop of every architecture, not only the worst: a second table under the first.
    other_archs = [arch for arch in archs if arch != DEFAULT_ARCH]
    per_arch = [per_arch_drops(cells) for cells in cell_rows]
    per_arch_title = f"Drop from {DEFAULT_ARCH} per architecture, {dataset_label(dataset, data_labels)} IPC {ipc}"
    per_arch_header = f"Positive: the architecture is worse than {DEFAULT_ARCH}."
    per_arch_note = (f"Each cell: ours / paper, {DEFAULT_ARCH} mean minus the architecture's mean in points (quoted rows: the "
                     "paper's only); -: a mean is missing.")
    markdown += "\n" + _grid_markdown(
        per_arch_title, per_arch_header, "Method", other_archs, md_labels,
        [[_per_arch_drop_text(*drops_of[arch], row[2], latex=False) for arch in other_archs] for row, drops_of in zip(rows, per_arch)],
        [per_arch_note])
    latex += "\n" + _grid_latex(
        f"{table_id}_drops", per_arch_title, per_arch_header, "Method", [latex_escape(arch) for arch in other_archs], tex_labels,
        [[_per_arch_drop_text(*drops_of[arch], row[2], latex=True) for arch in other_archs] for row, drops_of in zip(rows, per_arch)],
        [latex_escape(per_arch_note)])
    extra = {"dataset": dataset, "ipc": ipc, "archs": archs,
             "drops": [{key: value for key, value in drop.items() if key != "_texts"} for drop in drops],
             "per_arch_drops": [{"label": row[0], **{arch: {"ours": ours, "paper": theirs} for arch, (ours, theirs) in drops_of.items()}}
                                for row, drops_of in zip(rows, per_arch)]}
    return RenderedTable(table_id, title, header, markdown, latex, tuple(all_cells), extra)


def render_table3(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 3: cross-architecture generalisation at IPC 10."""
    return render_cross_arch_table(df, paper, "table3", dataset, data_labels)


def render_table4(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", data_labels: Mapping[str, str] | None = None) -> RenderedTable:
    """Table 4: cross-architecture generalisation at IPC 50."""
    return render_cross_arch_table(df, paper, "table4", dataset, data_labels)


def format_value(value: float) -> str:
    """A swept parameter value as written by people: 0.7, 2.0, 0.005 (shortest round-trip, at least one decimal)."""
    text = repr(float(value))
    return text if any(char in text for char in ".en") else text + ".0"


BETA_PARAMETER = "cc_beta"


def render_table5(sweeps: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None,
                  arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 5: accuracy per class-centralization beta, from the sweep tables whose parameter is cc_beta.

    Rows: the paper's betas and every beta run; columns: one per (dataset, ipc, method) swept, the paper's setting
    (CIFAR-10 IPC 10, DM+CC) first and the only one with paper numbers. Only evaluations with ``arch`` count.
    """
    table = _paper_table(paper, "table5")
    setting = (str(table["dataset"]), int(table["ipc"]), canonical_method(table["method"], custom=True))
    beta = sweeps.loc[(sweeps["parameter"] == BETA_PARAMETER) & (sweeps["arch"] == arch)]
    key = ["dataset", "ipc", "method", "value", "seed"]
    clash = beta.duplicated(key, keep=False)
    if clash.any():
        first = beta.loc[clash].iloc[0]
        names = sorted(set(beta.loc[(beta.loc[:, key] == first[key]).all(axis=1), "sweep"]))
        raise ReportError(f"sweeps {', '.join(names)} both hold {first['dataset']} ipc {first['ipc']} {first['method']} "
                          f"cc_beta={format_value(first['value'])} seed {first['seed']}; pass only one of them")
    seen = {(str(d), int(i), str(m)) for d, i, m in beta.loc[:, ["dataset", "ipc", "method"]].itertuples(index=False, name=None)}
    settings = [setting] + sorted(seen - {setting}, key=lambda s: (s[0], s[1], method_rank(s[2])))
    paper_acc = {float(row["beta"]): row["acc"] for row in table["rows"]}
    values = sorted(set(paper_acc) | {float(value) for value in beta["value"]})
    groups = _group_map(beta, ["dataset", "ipc", "method", "value"])
    cell_rows = [[_make_cell(format_value(value), method, False, dataset, ipc, groups.get((dataset, ipc, method, value)),
                             paper_acc.get(value) if (dataset, ipc, method) == setting else None,
                             f"table5 beta {format_value(value)}", column=BETA_PARAMETER)
                  for dataset, ipc, method in settings] for value in values]
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells)
    columns = [f"{dataset_label(d, data_labels)} IPC {i}, {method_label(m)}" for d, i, m in settings]
    counts = [cell.n for cell in all_cells if cell.n]
    swept = sorted(set(beta["sweep"]))
    header = (f"Data: {', '.join(dict.fromkeys(dataset_label(d, data_labels) for d, _, _ in settings))}. "
              f"Protocol: {arch} evaluation of each synthetic set, final-model test accuracy"
              f"{' (sweep tables: ' + ', '.join(swept) + ')' if swept else ''}. Seeds per cell: {_seed_count_text(counts)}. "
              f"Paper numbers only in the {columns[0]} column (the paper's setting).")
    if setting in seen or not seen:
        title = f"{table['title']} (paper Table 5)"
    else:  # only other settings ran (the digits demo): the title names them, not the paper's CIFAR-10
        title = f"beta sweep of class centralization, {'; '.join(columns[1:])} (as paper Table 5)"
    markdown = _grid_markdown(title, header, "β (cc_beta)", columns, [format_value(v) for v in values],
                              [[markdown_cell(cell, max_n) for cell in cells] for cells in cell_rows], [_legend_text(latex=False)])
    latex = _grid_latex("table5", title, header, "$\\beta$", [latex_escape(column) for column in columns],
                        [format_value(v) for v in values], [[latex_cell(cell, max_n) for cell in cells] for cells in cell_rows],
                        [_legend_text(latex=True)])
    extra = {"parameter": BETA_PARAMETER, "sweeps": swept, "values": values}
    return RenderedTable("table5", title, header, markdown, latex, tuple(all_cells), extra)


TABLE7_PAPER_DECIMALS = 2  # Table 7 gives means with two decimals: shown as published
_TABLE7_COLUMNS = ("random", "kcenter", "DC", "DSA", "dm", "dm_iid", "idm_iid")  # re-run method ids and quoted labels, in order
_TABLE7_OURS_LABEL = "Ours"  # the paper's column for its IDM+IID


def _table7_columns(table: Mapping[str, Any], use_paper: bool) -> list[tuple[str, str, str, str | None, bool, Mapping]]:
    """(label, Markdown header, LaTeX header, method, quoted, paper acc by IPC) per column of Table 7."""
    by_label = {str(row["label"]): row for row in table["rows"]}
    by_method = {canonical_method(row["method"]): row for row in table["rows"] if row.get("method") is not None}
    columns = []
    for name in _TABLE7_COLUMNS:
        if name in METHOD_LABELS:
            row = by_method.get(name)
            acc = (row.get("acc") or {}) if (row is not None and use_paper) else {}
            label = heading = METHOD_LABELS[name]
            if use_paper and row is not None and str(row["label"]) == _TABLE7_OURS_LABEL:
                heading = f"{label} (paper: {_TABLE7_OURS_LABEL})"  # cells: our IDM+IID / the paper's Ours / difference
            columns.append((label, heading, latex_escape(heading), name, False, acc))
        elif use_paper and name in by_label:
            row = by_label[name]
            columns.append((name, f"{name}{DAGGER_MD}", latex_escape(name) + "$^\\dagger$", None, True, row.get("acc") or {}))
    return columns


def table7_ipcs(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", ipcs: Sequence[int] | None = None,
                arch: str = DEFAULT_ARCH) -> list[int]:
    """Rows of Table 7: ``ipcs`` if given, else the paper's IPCs plus every IPC a Table 7 method was run at."""
    if ipcs is not None:
        chosen = sorted({_as_int(ipc, "ipc", "--compression-ipcs") for ipc in ipcs})
        if not chosen or chosen[0] < 1:
            raise ReportError(f"--compression-ipcs {list(ipcs)}: expected positive numbers of images per class")
        return chosen
    table = _paper_table(paper, "table7")
    runs = df.loc[(df["dataset"] == dataset) & (df["arch"] == arch) & df["method"].isin(_TABLE7_COLUMNS)]
    return sorted({int(ipc) for ipc in table["ipcs"]} | {int(ipc) for ipc in runs["ipc"]})


def _paper_whole(paper: Mapping[str, Any], dataset: str) -> Any:
    """The paper's whole-dataset accuracy of ``dataset`` (Tables 1/2), None where it gives none."""
    for table_id in ("table1", "table2"):
        whole = (paper.get(table_id) or {}).get("whole_dataset") or {}
        if dataset in whole:
            return whole[dataset]
    return None


def _percent(value: float | None, whole: float | None) -> float | None:
    return None if value is None or whole is None or whole == 0 else 100.0 * value / whole


def _percent_texts(ours: float | None, theirs: float | None, quoted: bool) -> tuple[str, str]:
    """Markdown and LaTeX "ours / paper / diff" of percentages of the whole-dataset accuracy."""
    if quoted:
        return (MISSING, "--") if theirs is None else (_fmt(theirs), f"${_fmt(theirs)}$")
    if ours is None and theirs is None:
        return MISSING, "--"
    diff = format_diff(ours, theirs) if ours is not None and theirs is not None else None
    markdown = f"{MISSING if ours is None else _fmt(ours)} / {MISSING if theirs is None else _fmt(theirs)} / {diff or MISSING}"
    second = ("--" if theirs is None else f"${_fmt(theirs)}$") + (f" (${diff}$)" if diff else "")
    return markdown, f"\\shortstack{{{'--' if ours is None else f'${_fmt(ours)}$'}\\\\{{\\tiny {second}}}}}"


def render_table7(df: pd.DataFrame, paper: Mapping[str, Any], dataset: str = "cifar10", ipcs: Sequence[int] | None = None,
                  data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 7: accuracy per IPC (compression ratio) for Random, K-Center, DC†, DSA†, DM, DM+IID and IDM+IID.

    The paper's "Ours" column (its IDM+IID) is compared with our IDM+IID; DM+IID has no paper number. Below the IPC
    rows: the whole-dataset accuracy (ours: method ``whole``; paper: Table 1/2) and each column as a percentage of it
    at the largest IPC with a run of ours (the table's largest IPC when nothing ran). Paper numbers only for CIFAR-10.
    """
    table = _paper_table(paper, "table7")
    dataset = dataset.strip().lower()
    use_paper = dataset == str(table["dataset"])
    ipcs = table7_ipcs(df, paper, dataset, ipcs, arch)
    columns = _table7_columns(table, use_paper)
    runs = df.loc[(df["dataset"] == dataset) & (df["arch"] == arch)]
    groups = _group_map(runs, ["method", "ipc"])
    cell_rows = [[_make_cell(label, method, quoted, dataset, ipc, groups.get((method, ipc)), acc.get(ipc), f"table7 {label} ipc {ipc}")
                  for label, _, _, method, quoted, acc in columns] for ipc in ipcs]
    whole = _make_cell(METHOD_LABELS[WHOLE_METHOD], WHOLE_METHOD, False, dataset, WHOLE_IPC,
                       runs.loc[runs["method"] == WHOLE_METHOD], _paper_whole(paper, dataset), f"whole_dataset {dataset}")
    all_cells = [cell for cells in cell_rows for cell in cells]
    max_n = _max_n(all_cells + [whole])
    run_ipcs = [ipc for ipc, cells in zip(ipcs, cell_rows) if any(cell.n for cell in cells)]
    percent_ipc = max(run_ipcs) if run_ipcs else max(ipcs)
    percent_cells = cell_rows[ipcs.index(percent_ipc)]
    percents = [{"label": cell.label, "method": cell.method, "quoted": cell.quoted, "ipc": percent_ipc,
                 "ours": None if cell.quoted else _percent(cell.mean, whole.mean), "paper": _percent(cell.paper_mean, whole.paper_mean)}
                for cell in percent_cells]
    percent_texts = [_percent_texts(p["ours"], p["paper"], p["quoted"]) for p in percents]

    counts = [cell.n for cell in all_cells + [whole] if cell.n]
    shown = runs.loc[runs["method"].isin({cell.method for cell in all_cells + [whole] if cell.n})]
    header = (f"Data: {dataset_label(dataset, data_labels)}. Protocol: {_protocol_text(shown, arch)}.{_budget_text(shown)} "
              f"Seeds per cell: {_seed_count_text(counts)}.")
    if use_paper:
        title = f"{table['title']} (paper Table 7)"
        header += (f" The paper gives means only (shown with its {TABLE7_PAPER_DECIMALS} decimals); its \"{_TABLE7_OURS_LABEL}\" column is "
                   "IDM+IID (IPC 1/10/50 equal Table 1), compared here with our IDM+IID; DM+IID has no paper number.")
    else:
        title = f"Accuracy at different compression ratios (high IPC), {dataset_label(dataset, data_labels)} (as paper Table 7)"
        header += f" The paper reports this table for {dataset_label(str(table['dataset']), data_labels)} only: no paper numbers."
    percent_label = f"% of whole dataset (IPC {percent_ipc})"
    notes_md = [_legend_text(latex=False),
                f"{percent_label}: each column's accuracy at IPC {percent_ipc} (the largest IPC with a run of ours) divided by the "
                "whole-dataset accuracy, ours by ours and the paper's by the paper's, in percent."]
    paper_note = table.get("note")
    if use_paper and paper_note:
        ours_paper = next((cell for cell in cell_rows[ipcs.index(max(ipcs))] if cell.method == "idm_iid"), None)
        computed = _percent(None if ours_paper is None else ours_paper.paper_mean, whole.paper_mean)
        notes_md.append(f"Paper note: \"{paper_note}\"" + (f" (its Table 7 gives {_fmt(computed)}% at IPC {max(ipcs)} against "
                                                           f"{_fmt(whole.paper_mean)}.)" if computed is not None else ""))
    any_quoted = any(column[4] for column in columns)
    notes_tex = [_legend_text(latex=True)] + [latex_escape(note) for note in notes_md[1:]] + _quoted_notes(any_quoted, latex=True)
    notes_md += _quoted_notes(any_quoted, latex=False)

    blank = [""] * (len(columns) - 1)
    md_rows = [[markdown_cell(cell, max_n, TABLE7_PAPER_DECIMALS) for cell in cells] for cells in cell_rows]
    md_rows += [[markdown_cell(whole, max_n)] + blank, [text for text, _ in percent_texts]]
    tex_rows = [[latex_cell(cell, max_n, TABLE7_PAPER_DECIMALS) for cell in cells] for cells in cell_rows]
    tex_rows += [[latex_cell(whole, max_n)] + blank, [text for _, text in percent_texts]]
    labels = [f"IPC {ipc}" for ipc in ipcs]
    markdown = _grid_markdown(title, header, "IPC", [column[1] for column in columns],
                              labels + [METHOD_LABELS[WHOLE_METHOD], percent_label], md_rows, notes_md)
    latex = _grid_latex("table7", title, header, "IPC", [column[2] for column in columns],
                        labels + [latex_escape(METHOD_LABELS[WHOLE_METHOD]), latex_escape(percent_label)], tex_rows, notes_tex,
                        rule_before=[len(ipcs)])
    extra = {"dataset": dataset, "ipcs": ipcs, "percent_of_whole": percents}
    return RenderedTable("table7", title, header, markdown, latex, tuple(all_cells + [whole]), extra)


# ----------------------------------------------------------------------------------------------------------------
# Figures

FIGURE_DPI = 150
FIGURE_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": FIGURE_DPI,
    "pdf.fonttype": 42,
    "pdf.compression": 6,
    "path.simplify": True,
    "axes.unicode_minus": True,
    "hatch.linewidth": 1.0,
}
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Software": None, "CreationDate": None}


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf, each atomically and byte-stable (fixed dpi, rcParams, no timestamps)."""
    import matplotlib

    written = []
    with matplotlib.rc_context(FIGURE_RC):
        for suffix, metadata in (("png", PNG_METADATA), ("pdf", PDF_METADATA)):
            path = Path(f"{stem}.{suffix}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=suffix, dpi=FIGURE_DPI, metadata=metadata)
            written.append(path)
    return written


def _new_figure(width: float, height: float):
    """A pyplot-free Agg figure: no global figure registry, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def method_bar_data(df: pd.DataFrame, dataset: str, ipc: int, paper: Mapping[str, Any], arch: str = DEFAULT_ARCH) -> pd.DataFrame:
    """Per method (paper order, re-run methods only): ours and the paper's mean and std (NaN where absent)."""
    table = paper_method_table(paper, dataset)
    runs = _runs_for(df, [dataset], arch)
    rows = []
    for paper_row in table["rows"]:
        if paper_row.get("quoted") or paper_row.get("method") is None:
            continue
        method = canonical_method(paper_row["method"])
        ours = runs.loc[(runs["method"] == method) & (runs["ipc"] == int(ipc)), "acc"].to_numpy()
        mean, std = mean_std(ours) if len(ours) else (math.nan, math.nan)
        paper_mean, paper_std = _paper_pair((paper_row.get("acc") or {}).get(dataset, {}).get(ipc), f"{dataset} ipc {ipc}")
        label = str(paper_row["label"])
        rows.append({"method": label, "source": "Ours", "mean": mean, "std": std, "n": int(len(ours))})
        rows.append({"method": label, "source": "Paper", "mean": math.nan if paper_mean is None else paper_mean,
                     "std": math.nan if paper_std is None else paper_std, "n": 0})
    return pd.DataFrame(rows, columns=["method", "source", "mean", "std", "n"])


def plot_method_bars(df: pd.DataFrame, dataset: str, ipc: int, paper: Mapping[str, Any], *, arch: str = DEFAULT_ARCH,
                     data_labels: Mapping[str, str] | None = None):
    """Grouped bars, ours vs paper per method (mean +- std, ours ddof=0), whole-dataset accuracy as dashed lines."""
    import matplotlib
    import seaborn as sns

    data = method_bar_data(df, dataset, ipc, paper, arch)
    order = list(dict.fromkeys(data["method"]))
    hue_order = ["Ours", "Paper"]
    palette = {"Ours": "#1f77b4", "Paper": "#bbbbbb"}
    table = paper_method_table(paper, dataset)
    whole_paper, _ = _paper_pair((table.get("whole_dataset") or {}).get(dataset), f"{dataset} whole_dataset")
    whole_runs = _runs_for(df, [dataset], arch)
    whole_ours = whole_runs.loc[whole_runs["method"] == WHOLE_METHOD, "acc"].to_numpy()
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(7.0, 3.6)
        ax = fig.add_subplot()
        # Absent values become zero-height bars so every hue keeps one bar per method (error bars stay aligned).
        sns.barplot(data=data.fillna({"mean": 0.0}), x="method", y="mean", hue="source", order=order, hue_order=hue_order,
                    palette=palette, errorbar=None, ax=ax, edgecolor="black", linewidth=0.5)
        absent_text = {"Ours": "not run", "Paper": "not reported"}
        for container, source in zip(ax.containers, hue_order):
            part = data.loc[data["source"] == source].set_index("method").loc[order]
            for bar, mean, std in zip(container, part["mean"], part["std"]):
                center = bar.get_x() + bar.get_width() / 2
                if math.isnan(mean):
                    ax.text(center, 0.0, " " + absent_text[source], ha="center", va="bottom", rotation=90, fontsize=6, color="dimgray")
                elif not math.isnan(std):
                    ax.errorbar(center, mean, yerr=std, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        if whole_paper is not None:
            ax.axhline(whole_paper, color="dimgray", linestyle="--", linewidth=0.9, label="Whole dataset (paper)")
        if len(whole_ours):
            ax.axhline(mean_std(whole_ours)[0], color="#1f77b4", linestyle=":", linewidth=1.0, label="Whole dataset (ours)")
        top = np.nanmax(np.concatenate([(data["mean"] + data["std"].fillna(0)).to_numpy(), [whole_paper or 0.0], whole_ours, [1.0]]))
        ax.set_ylim(0, float(top) * 1.1)
        ax.set_xlabel("Method")
        ax.set_ylabel("Top-1 test accuracy (%)")
        ax.set_title(f"{dataset_label(dataset, data_labels)}, IPC {ipc}, {arch}: ours vs paper")
        for tick in ax.get_xticklabels():
            tick.set(rotation=30, ha="right", rotation_mode="anchor")
        handles, labels = ax.get_legend_handles_labels()
        labels = [("Ours (mean ± std over seeds, ddof=0)" if label == "Ours" else label) for label in labels]
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=None)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# The report


def figure_settings(df: pd.DataFrame, paper: Mapping[str, Any], arch: str = DEFAULT_ARCH) -> list[tuple[str, int]]:
    """(dataset, ipc) of Tables 1 and 2 with at least one run of ours: one bar figure each."""
    settings = []
    for table_id in ("table1", "table2"):
        table = _paper_table(paper, table_id)
        for dataset in table["datasets"]:
            for ipc in table["ipcs"]:
                has_run = ((df["dataset"] == dataset) & (df["ipc"] == int(ipc)) & (df["arch"] == arch)).any()
                if has_run:
                    settings.append((dataset, int(ipc)))
    return settings


COMPARISONS = (("dm_iid", "dm"), ("idm_iid", "idm"), ("dm_cc", "dm"), ("dm_cm", "dm"))  # (with IID's constraints, host alone)
CORESET_IDS = ("random", "herding", "kcenter", "forgetting")


def outcome_lines(stats: pd.DataFrame, data_labels: Mapping[str, str] | None = None) -> list[str]:
    """Plain-language comparisons per (dataset, IPC, architecture): every distilled set against Random, and each IID
    variant against its host, with the difference of means and whether the mean +- std intervals overlap."""
    def text(row) -> str:
        return f"{row['mean']:.2f} +- {row['std']:.2f}"

    def verdict(first, second) -> str:
        overlap = abs(first["mean"] - second["mean"]) <= first["std"] + second["std"]
        return "the mean +- std intervals overlap" if overlap else "the mean +- std intervals do not overlap"

    lines = []
    for (dataset, ipc, arch), group in stats.groupby(["dataset", "ipc", "arch"], sort=True):
        rows = {row["method"]: row for row in group.to_dict(orient="records")}
        where = f"{dataset_label(dataset, data_labels)}, IPC {int(ipc)}, {arch}"
        if "random" in rows:
            base = rows["random"]
            for method, row in rows.items():
                if method in CORESET_IDS or method == WHOLE_METHOD:
                    continue
                lines.append(f"- {where}: {method_label(method)} {text(row)} vs Random {text(base)} ({row['n']} and {base['n']} seeds): "
                             f"{row['mean'] - base['mean']:+.2f} points; {verdict(row, base)}.")
        for variant, host in COMPARISONS:
            if variant in rows and host in rows:
                row, base = rows[variant], rows[host]
                lines.append(f"- {where}: {method_label(variant)} {text(row)} vs {method_label(host)} {text(base)} "
                             f"({row['n']} and {base['n']} seeds): {row['mean'] - base['mean']:+.2f} points; {verdict(row, base)}.")
    return lines


def convergence_statistics(conv: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, ipc, method) curve: the final accuracy (seed mean +- std at the last evaluation) and the best of
    run (the highest seed mean over evaluations: what the authors' DM+IID logs), with their iterations."""
    rows = []
    for (dataset, ipc, method), curve in conv.groupby(["dataset", "ipc", "method"], sort=True):
        points = {int(iteration): mean_std(group["acc"].to_numpy()) for iteration, group in curve.groupby("iteration", sort=True)}
        final_iteration = max(points)
        best_iteration = max(points, key=lambda iteration: (points[iteration][0], -iteration))  # earliest of equal means
        rows.append({"dataset": dataset, "ipc": int(ipc), "method": method, "iterations": sorted(points),
                     "seeds": int(curve.loc[curve["iteration"] == final_iteration, "seed"].nunique()),
                     "final_iteration": final_iteration, "final_mean": points[final_iteration][0], "final_std": points[final_iteration][1],
                     "best_iteration": best_iteration, "best_mean": points[best_iteration][0], "best_std": points[best_iteration][1]})
    stats = pd.DataFrame(rows)
    return _sort_by(stats, ["dataset", "ipc", "method"]) if len(stats) else stats


def _iterations_text(iterations: Sequence[int]) -> str:
    steps = {later - earlier for earlier, later in zip(iterations, iterations[1:])}
    if len(steps) == 1:
        return f"{iterations[0]:,}-{iterations[-1]:,} every {steps.pop():,}"
    return ", ".join(f"{iteration:,}" for iteration in iterations)


def render_convergence_table(conv: pd.DataFrame, data_labels: Mapping[str, str] | None = None) -> str:
    """Markdown: final and best-of-run accuracy of each accuracy-vs-iteration run, side by side, never mixed."""
    stats = convergence_statistics(conv)
    lines = ["## Accuracy against iteration: final and best of run (the runs of Figure 5)", "",
             "Each set evaluated during distillation by the evaluation protocol, mean +- std over the evaluation seeds "
             f"(ddof={STD_DDOF}). Final: at the last evaluation, the figure the tables report. Best of run: the highest "
             "mean over the evaluations, the figure the authors' DM+IID logs; shown for comparison only.", "",
             "| dataset | IPC | method | evaluated at iterations | seeds | final (iteration) | best of run (iteration) |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: |"]
    for row in stats.itertuples():
        lines.append(f"| {dataset_label(row.dataset, data_labels)} | {row.ipc} | {method_label(row.method)} | {_iterations_text(row.iterations)} "
                     f"| {row.seeds} | {row.final_mean:.2f} +- {row.final_std:.2f} ({row.final_iteration:,}) "
                     f"| {row.best_mean:.2f} +- {row.best_std:.2f} ({row.best_iteration:,}) |")
    return "\n".join(lines) + "\n"


def render_runs_summary(runs: pd.DataFrame, data_labels: Mapping[str, str] | None = None) -> str:
    """Every measured setting, paper table or not (e.g. the digits demo): Markdown, mean +- std (ddof 0) over seeds,
    opening with the outcome in words (distilled sets against Random, IID variants against their hosts)."""
    outcome = outcome_lines(seed_statistics(runs), data_labels)
    lines = [
        "# All runs",
        "",
        *(["## Outcome", "", *outcome, ""] if outcome else []),
        "## Every setting",
        "",
        f"Test accuracy (%) of the final model, mean +- std over evaluation seeds (std with ddof={STD_DDOF}).",
        "",
        "| dataset | IPC | method | arch | seeds | accuracy | epochs |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for row in seed_statistics(runs).to_dict(orient="records"):
        ipc = "whole" if int(row["ipc"]) == 0 else str(int(row["ipc"]))
        epochs = ", ".join(str(epochs) for epochs in row["epochs"])
        lines.append(f"| {dataset_label(row['dataset'], data_labels)} | {ipc} | {method_label(row['method'])} | {row['arch']} "
                     f"| {row['n']} | {row['mean']:.2f} +- {row['std']:.2f} | {epochs} |")
    return "\n".join(lines) + "\n"


def _input_files(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"file": path.name, "sha256": sha256_file(path)} for path in paths]


LAMBDA_PARAMETERS = ("lambda_cc", "lambda_cm")  # Figure 4
COMPRESSION_FIGURE_MIN_IPC = 50  # Figure 6 is drawn once a Table 7 IPC above the main tables' 50 has a run


def compression_figure_wanted(runs: pd.DataFrame, paper: Mapping[str, Any], dataset: str, ipcs: Sequence[int] | None,
                              arch: str = DEFAULT_ARCH) -> bool:
    """Figure 6 when ``dataset`` has a run at a paper Table 7 IPC above 50, or, with ``ipcs`` given, a run at one of them."""
    at = runs.loc[(runs["dataset"] == dataset) & (runs["arch"] == arch) & (runs["method"] != WHOLE_METHOD), "ipc"]
    if ipcs is not None:
        return bool(at.isin([int(ipc) for ipc in ipcs]).any())
    high = [int(ipc) for ipc in _paper_table(paper, "table7")["ipcs"] if int(ipc) > COMPRESSION_FIGURE_MIN_IPC]
    return bool(at.isin(high).any())


def render_report(runs_csv: str | Path, paper_yaml: str | Path, out_dir: str | Path, data_labels: Mapping[str, str] | None = None,
                  *, figures: bool = True, sweeps: Sequence[str | Path] | None = None, convergence: Sequence[str | Path] | None = None,
                  continual: Sequence[str | Path] | None = None, cross_arch_dataset: str = "cifar10",
                  compression_dataset: str = "cifar10", compression_ipcs: Sequence[int] | None = None,
                  ablation_datasets: Sequence[str] | None = None) -> list[Path]:
    """Write table{1..7}.md/.tex (always, "-" where nothing ran), runs_summary.md (every setting measured),
    convergence.md (final and best-of-run accuracy of the ``convergence`` curves), summary.json and the figures;
    return the paths.

    ``sweeps``: sweep-table CSVs (Table 5 from the cc_beta ones, Figure 4 from lambda_cc/lambda_cm); ``convergence``:
    ``<stem>.eval.csv`` curves (Figure 5); ``continual``: continual-learning records (Figure 7). Tables 3/4 are on
    ``cross_arch_dataset``, Table 7 / Figure 6 on ``compression_dataset`` at ``compression_ipcs`` (None: the paper's
    IPCs plus any run), Table 6 on ``ablation_datasets`` (None: the paper's). Figures: bars_<dataset>_ipc<ipc> per Table 1/2 setting with a run of ours, and
    figure4_lambda, figure5_convergence, figure6_compression, figure7_continual where their inputs are present;
    summary.json lists them.
    """
    runs_csv, out_dir = Path(runs_csv), Path(out_dir)
    sweep_paths, convergence_paths, continual_paths = ([Path(p) for p in paths or ()] for paths in (sweeps, convergence, continual))
    runs = read_runs_table(runs_csv)
    paper = load_paper_numbers(paper_yaml)
    sweep_table = read_sweep_tables(sweep_paths)
    conv = read_convergence(convergence_paths) if convergence_paths else None
    cl = read_continual(continual_paths) if continual_paths else None
    data_labels = dict(data_labels or {})
    cross_arch_dataset, compression_dataset = cross_arch_dataset.strip().lower(), compression_dataset.strip().lower()
    ipcs = table7_ipcs(runs, paper, compression_dataset, compression_ipcs)
    table6_datasets = [str(d).strip().lower() for d in ablation_datasets or _paper_table(paper, "table6")["datasets"]]
    written: list[Path] = []
    tables = [
        render_table1(runs, paper, data_labels),
        render_table2(runs, paper, data_labels),
        render_table3(runs, paper, cross_arch_dataset, data_labels),
        render_table4(runs, paper, cross_arch_dataset, data_labels),
        render_table5(sweep_table, paper, data_labels),
        render_table6(runs, paper, data_labels, datasets=table6_datasets),
        render_table7(runs, paper, compression_dataset, ipcs, data_labels),
    ]
    for table in tables:
        for suffix, text in (("md", table.markdown), ("tex", table.latex)):
            path = out_dir / f"{table.table_id}.{suffix}"
            atomic_write_text(text, path)
            written.append(path)
    summary_table = out_dir / "runs_summary.md"
    atomic_write_text(render_runs_summary(runs, data_labels), summary_table)
    written.append(summary_table)
    if conv is not None:
        written.append(out_dir / "convergence.md")
        atomic_write_text(render_convergence_table(conv, data_labels), written[-1])
    figure_paths: list[Path] = []
    if figures:
        for dataset, ipc in figure_settings(runs, paper):
            fig = plot_method_bars(runs, dataset, ipc, paper, data_labels=data_labels)
            figure_paths += save_figure(fig, out_dir / f"bars_{dataset}_ipc{ipc}")
        figure_paths += _render_issue5_figures(runs, paper, out_dir, data_labels, sweep_table, conv, cl, compression_dataset,
                                               ipcs, compression_figure_wanted(runs, paper, compression_dataset, compression_ipcs))
    groups = seed_statistics(runs)
    summary = {
        "runs_table": {"file": runs_csv.name, "sha256": sha256_file(runs_csv), "rows": int(len(runs))},
        "sweep_tables": _input_files(sweep_paths),
        "convergence_files": _input_files(convergence_paths),
        "continual_files": _input_files(continual_paths),
        "settings": {"cross_arch_dataset": cross_arch_dataset, "compression_dataset": compression_dataset, "compression_ipcs": ipcs,
                     "ablation_datasets": table6_datasets},
        "std_ddof": STD_DDOF,
        "data_labels": data_labels,
        "tables": {table.table_id: table.to_json() for table in tables},
        "groups": groups.to_dict(orient="records"),
        "figures": [path.name for path in figure_paths],
    }
    summary_path = out_dir / "summary.json"
    atomic_write_json(summary, summary_path)
    return written + [summary_path] + figure_paths


def _render_issue5_figures(runs: pd.DataFrame, paper: Mapping[str, Any], out_dir: Path, data_labels: Mapping[str, str],
                           sweeps: pd.DataFrame, conv: pd.DataFrame | None, cl: pd.DataFrame | None, compression_dataset: str,
                           ipcs: Sequence[int], compression: bool) -> list[Path]:
    """Figures 4-7 (plots.py, imported here so the tables never depend on it), each where its input is present."""
    from iid_distill import plots

    paths: list[Path] = []
    lambdas = sweeps.loc[sweeps["parameter"].isin(LAMBDA_PARAMETERS)].reset_index(drop=True)
    if len(lambdas):
        paths += save_figure(plots.plot_sweeps(lambdas, paper, data_labels=data_labels), out_dir / "figure4_lambda")
    if conv is not None:
        paths += save_figure(plots.plot_convergence(conv, paper, data_labels=data_labels), out_dir / "figure5_convergence")
    if compression:
        fig = plots.plot_compression(runs, paper, compression_dataset, list(ipcs), data_labels=data_labels)
        paths += save_figure(fig, out_dir / "figure6_compression")
    if cl is not None:
        paths += save_figure(plots.plot_continual(cl, data_labels=data_labels), out_dir / "figure7_continual")
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Command line (wired by the lead as `iid-distill report`, `iid-distill aggregate` and `iid-distill aggregate-sweep`)


def _data_label(text: str) -> tuple[str, str]:
    dataset, separator, label = text.partition("=")
    if not separator or not dataset.strip() or not label.strip():
        raise argparse.ArgumentTypeError(f"--data-label {text!r}: expected DATASET=LABEL, e.g. cifar10='CIFAR-10 (JPEG copy)'")
    return dataset.strip().lower(), label.strip()


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--runs", required=True, help="runs table CSV written by `iid-distill aggregate`")
    parser.add_argument("--out", required=True, help="output folder for table*.md/.tex, summary.json and figures")
    parser.add_argument("--paper", default=DEFAULT_PAPER_YAML, help=f"the paper's numbers (default: {DEFAULT_PAPER_YAML})")
    parser.add_argument("--data-label", dest="data_labels", type=_data_label, action="append", default=[], metavar="DATASET=LABEL",
                        help="display name of a dataset, e.g. cifar10='CIFAR-10 (JPEG copy)' (repeatable)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="write only the tables and summary.json")
    parser.add_argument("--sweeps", nargs="+", default=[], metavar="CSV",
                        help="sweep tables from `iid-distill aggregate-sweep` (Table 5: cc_beta; Figure 4: lambda_cc, lambda_cm)")
    parser.add_argument("--convergence", nargs="+", default=[], metavar="CSV",
                        help="accuracy-vs-iteration files <stem>.eval.csv of `iid-distill distill --eval-every` (Figure 5)")
    parser.add_argument("--continual", nargs="+", default=[], metavar="JSON", help="continual-learning records (Figure 7)")
    parser.add_argument("--cross-arch-dataset", dest="cross_arch_dataset", default="cifar10",
                        help="dataset of Tables 3 and 4 (default: cifar10, the paper's; others get no paper numbers)")
    parser.add_argument("--compression-dataset", dest="compression_dataset", default="cifar10",
                        help="dataset of Table 7 and Figure 6 (default: cifar10, the paper's; others get no paper numbers)")
    parser.add_argument("--compression-ipcs", dest="compression_ipcs", type=int, nargs="+", default=None, metavar="N",
                        help="IPC rows of Table 7 and Figure 6 (default: the paper's IPCs plus any run)")
    parser.add_argument("--ablation-datasets", dest="ablation_datasets", nargs="+", default=None, metavar="DATASET",
                        help="datasets of Table 6 (default: cifar10 cifar100, the paper's; others get no paper numbers)")
    return parser


def add_aggregate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--records", required=True, nargs="+", help="JSON records files written by `iid-distill evaluate`")
    parser.add_argument("--out", required=True, help="runs table CSV to write")
    parser.add_argument("--expect-seeds", dest="expect_seeds", type=int, default=None, metavar="N",
                        help="fail (writing nothing) unless every (dataset, ipc, method, arch) has seeds 0..N-1")
    return parser


def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--name", required=True, help="sweep name, e.g. table5_beta, figure4_lambda_cc, figure4_lambda_cm")
    parser.add_argument("--parameter", required=True, help="the swept synthetic-set parameter, e.g. cc_beta, lambda_cc, lambda_cm")
    parser.add_argument("--records", required=True, nargs="+", help="JSON records files written by `iid-distill evaluate`")
    parser.add_argument("--out", required=True, help="sweep table CSV to write")
    return parser


def run_report(args: argparse.Namespace) -> list[Path]:
    return render_report(args.runs, args.paper, args.out, dict(args.data_labels), figures=args.figures, sweeps=args.sweeps,
                         convergence=args.convergence, continual=args.continual, cross_arch_dataset=args.cross_arch_dataset,
                         compression_dataset=args.compression_dataset, compression_ipcs=args.compression_ipcs,
                         ablation_datasets=args.ablation_datasets)


def run_aggregate(args: argparse.Namespace) -> Path:
    runs = collect_records(args.records)
    if args.expect_seeds is not None:
        check_complete(runs, expected_seed_keys(runs, args.expect_seeds))
    return write_runs_table(runs, args.out)


def run_sweep_aggregate(args: argparse.Namespace) -> Path:
    return write_sweep_table(collect_sweep_records(args.records, args.name, args.parameter), args.out)
