"""Per-seed evaluation records -> one tidy runs table (one row per dataset, IPC, method id, architecture, seed),
validated, written and read back.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from iid_distill.names import MethodNameError, WHOLE_METHOD, canonical_method, method_rank
from iid_distill.utils import UserError, atomic_path, params_hash


STD_DDOF = 0  # population std, like np.std in the DM/IDM evaluation code
WHOLE_IPC = 0  # whole-dataset runs use the whole training set; ipc 0 marks "not images per class"
DEFAULT_ARCH = "ConvNet"
DEFAULT_PAPER_YAML = "reports/paper_numbers.yaml"  # in a checkout; elsewhere the copy the package carries

DATASET_LABELS: dict[str, str] = {
    "svhn": "SVHN",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tinyimagenet": "TinyImageNet",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "digits": "digits",
}

RUN_KEY = ("dataset", "ipc", "method", "arch", "protocol", "seed")
GROUP_KEY = ("dataset", "ipc", "method", "arch", "protocol")
RUN_COLUMNS = (
    "dataset",
    "ipc",
    "method",
    "arch",
    "seed",
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
    "data_fingerprint",
    "cc_pool",
    "protocol",
)
_INT_COLUMNS = ("ipc", "seed", "epochs")
_FLOAT_COLUMNS = ("acc", "train_acc", "wall_s")
_TEXT_COLUMNS = ("dataset", "method", "arch", "schedule", "params_hash", "git_sha", "device", "records_file", "data_fingerprint",
                 "cc_pool", "protocol")
_OPTIONAL_INT_COLUMNS = ("iterations", "synthetic_seed")  # empty where there is none (coresets, the whole dataset)
_ADDED_COLUMNS = ("iterations", "data_fingerprint", "cc_pool", "protocol")  # absent from runs tables written before they existed: read as empty
_REQUIRED_RECORD_FIELDS = ("dataset", "method", "arch", "seed", "acc", "epochs", "params_hash", "git_sha", "device", "wall_s")

# Evaluation protocols a runs table tells apart ("" = the default), named from the recorded settings: one cell never
# mixes two, and the report shows a non-default one in rows of its own (Table 1's coreset rows without augmentation).
EVAL_PROTOCOLS = {"": "with DSA (the DM family's protocol)",
                  "noaug": "without augmentation (the protocol of the paper's coreset rows, from DC)"}
PROTOCOL_TAGS = {"noaug": "no aug."}  # a protocol row's label: "Random (no aug.)"

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
    for field in ("synthetic_params", "params", "eval_params", "dataset_sha256"):
        if record.get(field) is not None and not isinstance(record[field], Mapping):
            raise ReportError(f"{where}: {field} = {record[field]!r}, expected a JSON object; records must come from `iid-distill evaluate`")
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
        "data_fingerprint": data_fingerprint(record.get("dataset_sha256")),
        "cc_pool": pool_label((record.get("synthetic_params") or {}).get("cc_pool")),
        "protocol": eval_protocol(eval_params),
    }


def eval_protocol(eval_params: Mapping[str, Any]) -> str:
    """The evaluation protocol (a key of :data:`EVAL_PROTOCOLS`) of a record's settings: ``noaug`` for training
    without augmentation, else the default."""
    return "noaug" if eval_params.get("dsa") is False else ""


def pool_label(pool: Any) -> str:
    """The class-centralisation pool a set was distilled with, as the pool study shows it: ``1 ResNet18 x 2 epochs
    (60.8% test) [b22ca4ef]`` (folder and fingerprint identify it); empty for sets without CC."""
    if not isinstance(pool, Mapping) or not pool:
        return ""
    if pool.get("kind") == "in-memory":
        return f"{pool.get('num_models')} networks in memory"
    text = f"{pool.get('num_models')} {pool.get('arch', '')} x {pool.get('epochs')} epochs"
    if isinstance(pool.get("mean_test_acc"), (int, float)):
        text += f" ({pool['mean_test_acc']:.1f}% test)"
    return text + (f" [{str(pool['fingerprint'])[:8]}]" if pool.get("fingerprint") else "")


def data_fingerprint(dataset_sha256: Any) -> str:
    """Short hash of a record's ``dataset_sha256`` (the tensors it was trained and tested on); empty for records
    written before it was recorded."""
    return params_hash(dict(dataset_sha256)) if isinstance(dataset_sha256, Mapping) and dataset_sha256 else ""


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
    """Deterministic order: dataset, ipc, method (report order), arch, protocol, seed."""
    keyed = runs.assign(_method_rank=_method_order(runs["method"]))
    keyed = keyed.sort_values(["dataset", "ipc", "_method_rank", "arch", "protocol", "seed"], kind="mergesort")
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


def check_one_set_per_cell(runs: pd.DataFrame, where: str) -> None:
    """The seeds averaged into one cell must evaluate one set under one protocol on one copy of the data: rows of a
    (dataset, ipc, method, arch) with different params_hash (set provenance + evaluation settings) or data
    fingerprints would be averaged into a number no run produced."""
    for column, what in (("params_hash", "synthetic sets or evaluation protocols"), ("data_fingerprint", "copies of the data")):
        values = runs.loc[runs[column] != ""].groupby(list(GROUP_KEY), sort=True)[column].nunique()
        for key in values.index[values > 1]:
            dataset, ipc, method, arch, protocol = key
            cell = runs.loc[(runs["dataset"] == dataset) & (runs["ipc"] == ipc) & (runs["method"] == method) & (runs["arch"] == arch)
                            & (runs["protocol"] == protocol)]
            files = ", ".join(sorted(set(cell["records_file"]) - {""})) or "the table"
            raise ReportError(f"{where}: {dataset} ipc {ipc} {method} {arch}{_protocol_suffix(protocol)} mixes {values[key]} {what} ({column}) "
                              f"in {files}; keep the records of one set and one protocol per cell (or give the other its own method id)")


def _describe_key(key: Sequence[Any]) -> str:
    dataset, ipc, method, arch, protocol, seed = key
    return f"{dataset} ipc {ipc} {method} {arch}{_protocol_suffix(protocol)} seed {seed}"


def _protocol_suffix(protocol: str) -> str:
    return f" ({protocol})" if protocol else ""


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
    check_one_set_per_cell(runs, "records")
    return sort_runs(runs)


def write_runs_table(records_df: pd.DataFrame, path: str | Path) -> Path:
    """Write the runs table as CSV (sorted rows, shortest round-trip floats, LF line ends), atomically."""
    path = Path(path)
    missing = [column for column in RUN_COLUMNS if column not in records_df.columns]
    if missing:
        raise ReportError(f"runs table for {path}: missing column(s) {', '.join(missing)}; build it with collect_records")
    runs = _typed_runs(records_df)
    check_no_duplicates(runs, f"runs table for {path}")
    check_one_set_per_cell(runs, f"runs table for {path}")
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
    check_one_set_per_cell(runs, f"runs table {path}")
    return sort_runs(runs)


def normalise_run_key(key: Sequence[Any]) -> tuple[str, int, str, str, str, int]:
    """(dataset, ipc, method, arch, [protocol,] seed) as stored in the runs table (canonical method, ipc 0 for whole,
    protocol "" when not given)."""
    if len(key) not in (len(RUN_KEY) - 1, len(RUN_KEY)):
        raise ReportError(f"expected run key {key!r}: need (dataset, ipc, method, arch, [protocol,] seed)")
    dataset, ipc, method, arch, *protocol, seed = key
    method = canonical_method(method, custom=True)
    ipc = WHOLE_IPC if method == WHOLE_METHOD else _as_int(ipc, "ipc", f"expected run {key!r}")
    return (str(dataset).strip().lower(), ipc, method, str(arch), str(protocol[0]) if protocol else "", _as_int(seed, "seed", f"expected run {key!r}"))


def check_complete(df: pd.DataFrame, expected: Iterable[Sequence[Any]]) -> None:
    """Raise a ReportError listing every expected run key (:func:`normalise_run_key`) that has no row in ``df``."""
    present = set(df.loc[:, list(RUN_KEY)].itertuples(index=False, name=None))
    present = {(str(d), int(i), str(m), str(a), str(p), int(s)) for d, i, m, a, p, s in present}
    missing = sorted({normalise_run_key(key) for key in expected} - present)
    if not missing:
        return
    seeds_by_group: dict[tuple, list[int]] = {}
    for *group, seed in missing:
        seeds_by_group.setdefault(tuple(group), []).append(seed)
    described = "; ".join(
        f"{dataset} ipc {ipc} {method} {arch}{_protocol_suffix(protocol)}: seed(s) {', '.join(map(str, seeds))}"
        for (dataset, ipc, method, arch, protocol), seeds in seeds_by_group.items()
    )
    raise ReportError(f"INCOMPLETE RESULTS: {len(missing)} expected run(s) missing in {len(seeds_by_group)} setting(s): {described}")


def expected_seed_keys(df: pd.DataFrame, num_seeds: int) -> list[tuple[str, int, str, str, str, int]]:
    """Seeds 0..num_seeds-1 for every (dataset, ipc, method, arch, protocol) present in ``df``."""
    if num_seeds < 1:
        raise ReportError(f"--expect-seeds {num_seeds}: expected a positive number of seeds")
    groups = df.loc[:, list(GROUP_KEY)].drop_duplicates().itertuples(index=False, name=None)
    return [(str(d), int(i), str(m), str(a), str(p), seed) for d, i, m, a, p in groups for seed in range(num_seeds)]


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
