"""Result aggregation and the report: per-seed evaluation records -> one runs table -> tables and figures beside the paper.

Pipeline: ``iid-distill evaluate`` writes a JSON list of per-seed records per synthetic set; ``collect_records``
turns many such files into one tidy row per (dataset, ipc, method, arch, seed) (``write_runs_table`` saves it as
CSV); ``render_report`` reads that CSV and ``reports/paper_numbers.yaml`` and writes Tables 1, 2 and 6 (Markdown and
LaTeX: ours as mean +- std over seeds, the paper's number, the difference), ``summary.json`` and bar figures.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from iid_distill.utils import UserError, atomic_path, atomic_write_json, atomic_write_text, sha256_file

STD_DDOF = 0  # population std, like np.std in the DM/IDM evaluation code
WHOLE_METHOD = "whole"
WHOLE_IPC = 0  # whole-dataset runs use the whole training set; ipc 0 marks "not images per class"
DEFAULT_ARCH = "ConvNet"
DEFAULT_PAPER_YAML = "reports/paper_numbers.yaml"

# Method ids of the workflow, in report order, with their display labels.
METHOD_LABELS: dict[str, str] = {
    "random": "Random",
    "herding": "Herding",
    "kcenter": "K-Center",
    "forgetting": "Forgetting",
    "dm": "DM",
    "dm_cc": "DM+CC",
    "dm_cm": "DM+CM",
    "dm_iid": "DM+IID",
    "idm": "IDM",
    "idm_cc": "IDM+CC",
    "idm_cm": "IDM+CM",
    "idm_iid": "IDM+IID",
    WHOLE_METHOD: "Whole dataset",
}
# Other spellings seen in the paper and in hand-written records.
METHOD_ALIASES: dict[str, str] = {
    "DM+Ours": "dm_iid",
    "IDM+Ours": "idm_iid",
    "Full dataset": WHOLE_METHOD,
    "Full": WHOLE_METHOD,
}
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
_REQUIRED_RECORD_FIELDS = ("dataset", "method", "arch", "seed", "acc", "epochs", "params_hash", "git_sha", "device", "wall_s")

MISSING = "-"
DAGGER_MD = "†"
QUOTED_NOTE = "Quoted from the paper, not re-run."


class ReportError(UserError):
    """Bad records, runs table, paper-numbers file or report arguments."""


# ----------------------------------------------------------------------------------------------------------------
# Method names


def _name_key(name: str) -> str:
    """Case-, space- and separator-insensitive form: "DM+IID", "dm_iid" and "dm-iid" all become "dmiid"."""
    return re.sub(r"[\s_+\-]", "", name.lower())


_METHOD_BY_KEY: dict[str, str] = {
    **{_name_key(alias): method for alias, method in METHOD_ALIASES.items()},
    **{_name_key(label): method for method, label in METHOD_LABELS.items()},
    **{_name_key(method): method for method in METHOD_LABELS},
}


def canonical_method(name: Any) -> str:
    """The workflow's method id (``dm_iid``) for an id or display label ("DM+IID", "Random", "K-Center", "whole")."""
    if not isinstance(name, str) or not name.strip():
        raise ReportError(f"method {name!r}: expected a method name such as {', '.join(METHOD_LABELS)}")
    method = _METHOD_BY_KEY.get(_name_key(name))
    if method is None:
        raise ReportError(f"unknown method {name!r}; valid ids: {', '.join(METHOD_LABELS)} (or their labels, e.g. DM+IID)")
    return method


def method_label(method: str) -> str:
    return METHOD_LABELS[canonical_method(method)]


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


def record_to_row(record: Mapping[str, Any], where: str, records_file: str = "") -> dict[str, Any]:
    """One runs-table row from one evaluation record (``evaluate.evaluate_synthetic_set``), validated."""
    if not isinstance(record, Mapping):
        raise ReportError(f"{where}: expected a JSON object per seed, got {type(record).__name__}")
    absent = [field for field in _REQUIRED_RECORD_FIELDS if field not in record]
    if absent:
        raise ReportError(f"{where}: missing field(s) {', '.join(absent)}; records must come from `iid-distill evaluate`")
    try:
        method = canonical_method(record["method"])
    except ReportError as error:
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
    runs["synthetic_seed"] = runs["synthetic_seed"].astype("Int64")
    for column in _TEXT_COLUMNS:
        runs[column] = runs[column].astype(str)
    return runs


def _method_order(methods: pd.Series) -> pd.Series:
    order = {method: index for index, method in enumerate(METHOD_LABELS)}
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
    if not path.is_file():
        raise ReportError(f"runs table {path} does not exist; build it with `iid-distill aggregate --records ... --out {path}`")
    # Everything as text first: a hex params_hash such as "12e45678" must never become a float.
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in RUN_COLUMNS if column not in raw.columns]
    if missing:
        raise ReportError(f"runs table {path}: missing column(s) {', '.join(missing)}; rebuild it with `iid-distill aggregate`")
    runs = raw.loc[:, list(RUN_COLUMNS)].copy()
    for column in _INT_COLUMNS + _FLOAT_COLUMNS + ("synthetic_seed",):
        text = runs[column].str.strip()
        numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad = numbers.isna() & (text != "")
        if column in _INT_COLUMNS or column in ("acc", "wall_s"):
            bad |= text == ""
        if column in _INT_COLUMNS or column == "synthetic_seed":
            bad |= numbers.notna() & (numbers % 1 != 0)
        if bad.any():
            row = int(bad.idxmax())
            raise ReportError(f"runs table {path} row {row + 2}: {column} = {runs.at[row, column]!r} is not a number")
        runs[column] = numbers
    try:
        runs["method"] = runs["method"].map(canonical_method)
    except ReportError as error:
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
    method = canonical_method(method)
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

    @property
    def diff(self) -> float | None:
        if self.mean is None or self.paper_mean is None:
            return None
        return self.mean - self.paper_mean

    def to_json(self) -> dict[str, Any]:
        return {
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


def _make_cell(label: str, method: str | None, quoted: bool, dataset: str, ipc: int, accs: pd.DataFrame | None, paper: Any, where: str) -> Cell:
    paper_mean, paper_std = _paper_pair(paper, where)
    if accs is None or quoted or len(accs) == 0:
        return Cell(label, method, quoted, dataset, ipc, 0, (), None, None, paper_mean, paper_std)
    accs = accs.sort_values("seed")
    mean, std = mean_std(accs["acc"].to_numpy())
    return Cell(
        label, method, quoted, dataset, ipc, int(len(accs)), tuple(int(s) for s in accs["seed"]), mean, std,
        paper_mean, paper_std, tuple(sorted(set(accs["params_hash"]))), tuple(sorted(set(accs["git_sha"]))),
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

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "header": self.header, "cells": [cell.to_json() for cell in self.cells]}


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


def _header_line(runs: pd.DataFrame, datasets: Sequence[str], arch: str, cells: Sequence[Cell], data_labels: Mapping[str, str] | None) -> str:
    labels = ", ".join(dataset_label(dataset, data_labels) for dataset in datasets)
    counts = [cell.n for cell in cells if cell.n]
    return f"Data: {labels}. Protocol: {_protocol_text(runs, arch)}. Seeds per cell: {_seed_count_text(counts)}."


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


def _paper_text(cell: Cell, latex: bool) -> str | None:
    if cell.paper_mean is None:
        return None
    return f"${_fmt(cell.paper_mean)} \\pm {_fmt(cell.paper_std)}$" if latex else f"{_fmt(cell.paper_mean)} ± {_fmt(cell.paper_std)}"


def markdown_cell(cell: Cell, max_n: int) -> str:
    """"ours / paper / diff", "-" for an absent part, or only the paper's number for a quoted row."""
    paper = _paper_text(cell, latex=False)
    if cell.quoted:
        return paper or MISSING
    ours = _ours_text(cell, max_n, latex=False)
    if ours is None and paper is None:
        return MISSING
    diff = format_diff(cell.mean, cell.paper_mean) if cell.diff is not None else MISSING
    return f"{ours or MISSING} / {paper or MISSING} / {diff}"


def latex_cell(cell: Cell, max_n: int) -> str:
    """Ours on the first line, the paper's number and the difference below it in small type."""
    paper = _paper_text(cell, latex=True)
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


def _render_paper_table(df: pd.DataFrame, paper: Mapping[str, Any], table_id: str, number: int, data_labels, arch: str) -> RenderedTable:
    table = _paper_table(paper, table_id)
    return render_method_table(
        df, table["rows"], table["datasets"], [int(ipc) for ipc in table["ipcs"]], table_id=table_id,
        title=f"{table['title']} (paper Table {number})", whole_dataset=table.get("whole_dataset"), arch=arch, data_labels=data_labels,
    )


def render_table1(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 1: SVHN, CIFAR-10, CIFAR-100 at IPC 1/10/50 with the whole-dataset row."""
    return _render_paper_table(df, paper, "table1", 1, data_labels, arch)


def render_table2(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 2: TinyImageNet at IPC 1/10/50 with the whole-dataset row."""
    return _render_paper_table(df, paper, "table2", 2, data_labels, arch)


def render_table6(df: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    """Table 6: component ablation on DM at IPC 10 (dm, dm_cc, dm_cm, dm_iid) on CIFAR-10 and CIFAR-100."""
    return _render_paper_table(df, paper, "table6", 6, data_labels, arch)


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
    for table_id in ("table1", "table2", "table6"):
        table = paper.get(table_id)
        if not isinstance(table, dict) or not all(key in table for key in ("title", "datasets", "ipcs", "rows")):
            raise ReportError(f"paper numbers {path}: {table_id} needs title, datasets, ipcs and rows")
    return paper


def paper_method_table(paper: Mapping[str, Any], dataset: str) -> Mapping[str, Any]:
    """The paper's main results table (Table 1 or 2) that reports ``dataset``."""
    for table_id in ("table1", "table2"):
        table = _paper_table(paper, table_id)
        if dataset in table["datasets"]:
            return table
    raise ReportError(f"dataset {dataset!r} is in neither Table 1 nor Table 2 of the paper")


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


def render_runs_summary(runs: pd.DataFrame, data_labels: Mapping[str, str] | None = None) -> str:
    """Every measured setting, paper table or not (e.g. the digits demo): Markdown, mean +- std (ddof 0) over seeds."""
    lines = [
        "# All runs",
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


def render_report(runs_csv: str | Path, paper_yaml: str | Path, out_dir: str | Path, data_labels: Mapping[str, str] | None = None,
                  *, figures: bool = True) -> list[Path]:
    """Write table{1,2,6}.md/.tex (always, "-" where nothing ran), runs_summary.md (every setting measured),
    summary.json and the bar figures; return the paths.

    Figures (bars_<dataset>_ipc<ipc>.png/.pdf) are drawn for each Table 1/2 setting with at least one run of ours;
    summary.json lists them.
    """
    runs_csv, out_dir = Path(runs_csv), Path(out_dir)
    runs = read_runs_table(runs_csv)
    paper = load_paper_numbers(paper_yaml)
    data_labels = dict(data_labels or {})
    written: list[Path] = []
    tables = [render_table1(runs, paper, data_labels), render_table2(runs, paper, data_labels), render_table6(runs, paper, data_labels)]
    for table in tables:
        for suffix, text in (("md", table.markdown), ("tex", table.latex)):
            path = out_dir / f"{table.table_id}.{suffix}"
            atomic_write_text(text, path)
            written.append(path)
    summary_table = out_dir / "runs_summary.md"
    atomic_write_text(render_runs_summary(runs, data_labels), summary_table)
    written.append(summary_table)
    figure_paths: list[Path] = []
    if figures:
        for dataset, ipc in figure_settings(runs, paper):
            fig = plot_method_bars(runs, dataset, ipc, paper, data_labels=data_labels)
            figure_paths += save_figure(fig, out_dir / f"bars_{dataset}_ipc{ipc}")
    groups = seed_statistics(runs)
    summary = {
        "runs_table": {"file": runs_csv.name, "sha256": sha256_file(runs_csv), "rows": int(len(runs))},
        "std_ddof": STD_DDOF,
        "data_labels": data_labels,
        "tables": {table.table_id: table.to_json() for table in tables},
        "groups": groups.to_dict(orient="records"),
        "figures": [path.name for path in figure_paths],
    }
    summary_path = out_dir / "summary.json"
    atomic_write_json(summary, summary_path)
    return written + [summary_path] + figure_paths


# ----------------------------------------------------------------------------------------------------------------
# Command line (wired by the lead as `iid-distill report` and `iid-distill aggregate`)


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
    return parser


def add_aggregate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--records", required=True, nargs="+", help="JSON records files written by `iid-distill evaluate`")
    parser.add_argument("--out", required=True, help="runs table CSV to write")
    parser.add_argument("--expect-seeds", dest="expect_seeds", type=int, default=None, metavar="N",
                        help="fail (writing nothing) unless every (dataset, ipc, method, arch) has seeds 0..N-1")
    return parser


def run_report(args: argparse.Namespace) -> list[Path]:
    return render_report(args.runs, args.paper, args.out, dict(args.data_labels), figures=args.figures)


def run_aggregate(args: argparse.Namespace) -> Path:
    runs = collect_records(args.records)
    if args.expect_seeds is not None:
        check_complete(runs, expected_seed_keys(runs, args.expect_seeds))
    return write_runs_table(runs, args.out)
