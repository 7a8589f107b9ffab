"""The report's other inputs: sweep tables (Table 5, Figure 4), accuracy-vs-iteration curves (Figure 5) and
continual-learning records (Figure 7).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iid_distill.names import MethodNameError, WHOLE_METHOD, canonical_method
from iid_distill.report.records import (
    ReportError,
    _as_float,
    _as_int,
    _method_order,
    _one_line,
    _read_records_file,
    _read_text_csv,
    record_method_id,
    record_to_row,
)
from iid_distill.utils import atomic_path


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
