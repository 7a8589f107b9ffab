"""Statistics and table cells (ours beside the paper's), the paper's numbers, and the method tables 1, 2 and 6."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from iid_distill.config import parse_yaml
from iid_distill.names import METHOD_LABELS, WHOLE_METHOD, canonical_method
from iid_distill.report.records import (
    DAGGER_MD,
    DEFAULT_ARCH,
    EVAL_PROTOCOLS,
    GROUP_KEY,
    MISSING,
    PROTOCOL_TAGS,
    QUOTED_NOTE,
    ReportError,
    STD_DDOF,
    WHOLE_IPC,
    dataset_label,
    sort_runs,
)
from iid_distill.report.tables import latex_table, latex_tabular, markdown_table


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


def _legend_text(latex: bool, paper: bool = True) -> str:
    pm, minus = (r"$\pm$", "$-$") if latex else ("±", "−")
    if not paper:  # a table of our own: no published numbers to put beside ours
        return (f"Each cell: ours (mean {pm} std over evaluation seeds; std with ddof=0, numpy's default as in the DM code). "
                f"{'--' if latex else MISSING}: no run of ours.")
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
    """One row of cells per paper row; a row's ``protocol`` (default "") picks the runs of that evaluation protocol."""
    groups = {key: group for key, group in runs.groupby(["dataset", "ipc", "method", "protocol"], sort=True)}
    table = []
    for row in paper_rows:
        label, quoted = str(row["label"]), bool(row.get("quoted", False))
        method = None if row.get("method") is None else canonical_method(row["method"])
        if method is None and not quoted:
            raise ReportError(f"paper numbers {table_id} row {label!r}: a row without a method must be quoted: true")
        acc = row.get("acc") or {}
        table.append([
            _make_cell(label, method, quoted, dataset, int(ipc), groups.get((dataset, int(ipc), method, row.get("protocol", ""))),
                       (acc.get(dataset) or {}).get(ipc), f"{table_id} {label} {dataset} ipc {ipc}")
            for dataset in datasets for ipc in ipcs
        ])
    return table


def _with_protocol_rows(paper_rows: Sequence[Mapping[str, Any]], runs: pd.DataFrame) -> list[Mapping[str, Any]]:
    """``paper_rows``, each followed by a row per other evaluation protocol its method has runs under ("Random (no
    aug.)"), beside the same paper number: the paper's coreset rows come from an evaluation without augmentation."""
    rows: list[Mapping[str, Any]] = []
    for row in paper_rows:
        rows.append(row)
        if row.get("method") is None or row.get("quoted"):
            continue
        method = canonical_method(row["method"])
        for protocol in sorted(set(runs.loc[runs["method"] == method, "protocol"]) - {""}):
            rows.append({**row, "label": f"{row['label']} ({PROTOCOL_TAGS.get(protocol, protocol)})", "protocol": protocol})
    return rows


def _protocol_note(rows: Sequence[Mapping[str, Any]]) -> str:
    protocols = sorted({row["protocol"] for row in rows if row.get("protocol")})
    return " ".join(f"Rows marked ({PROTOCOL_TAGS.get(p, p)}) evaluate the same sets {EVAL_PROTOCOLS.get(p, p)}." for p in protocols)


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
        if row.get("method") is not None and not row.get("protocol") and str(row["label"]) != METHOD_LABELS[canonical_method(row["method"])]
    ]
    return f"Rows re-run as: {', '.join(renamed)}." if renamed else None


def _paper_less(cells: Sequence[Cell]) -> bool:
    """No cell has a published number: the table shows ours alone."""
    return all(cell.paper_mean is None and not cell.quoted for cell in cells)


def _markdown_table(title: str, header: str, datasets, ipcs, labels, cell_rows, whole_row, max_n, data_labels, any_quoted,
                    paper: bool) -> str:
    columns = ["Method", *(f"{dataset_label(d, data_labels)} IPC {ipc}" for d in datasets for ipc in ipcs)]
    text = (lambda cell: markdown_cell(cell, max_n)) if paper else (lambda cell: _ours_text(cell, max_n, latex=False) or MISSING)
    rows = [[label, *(text(cell) for cell in cells)] for label, cells in zip(labels, cell_rows)]
    if whole_row is not None:
        rows.append([METHOD_LABELS[WHOLE_METHOD], *_under_first_ipc([text(cell) for cell in whole_row], len(ipcs))])
    lines = [f"## {title}", "", header, "", markdown_table(columns, rows), "", _legend_text(latex=False, paper=paper)]
    if any_quoted:
        lines.append(f"{DAGGER_MD} {QUOTED_NOTE}")
    return "\n".join(lines) + "\n"


def _under_first_ipc(texts: Sequence[str], ipcs: int) -> list[str]:
    """One whole-dataset number per dataset, under its first IPC column (it does not depend on IPC)."""
    return [part for text in texts for part in [text] + [""] * (ipcs - 1)]


def _latex_table(table_id: str, title: str, header: str, datasets, ipcs, labels, cell_rows, whole_row, max_n, data_labels, any_quoted,
                 paper: bool) -> str:
    groups = [latex_escape(dataset_label(d, data_labels)) for d in datasets for _ in ipcs]
    columns = ["Method", *(f"IPC {ipc}" for _ in datasets for ipc in ipcs)]
    text = (lambda cell: latex_cell(cell, max_n)) if paper else (lambda cell: _ours_text(cell, max_n, latex=True) or "--")
    rows = [[label, *(text(cell) for cell in cells)] for label, cells in zip(labels, cell_rows)]
    if whole_row is not None:
        rows.append([latex_escape(METHOD_LABELS[WHOLE_METHOD]), *_under_first_ipc([text(cell) for cell in whole_row], len(ipcs))])
    tabular = latex_tabular(columns, rows, groups=groups, rule_before=[len(labels)] if whole_row is not None else ())
    notes = _legend_text(latex=True, paper=paper) + (f" $^\\dagger$ {QUOTED_NOTE}" if any_quoted else "")
    return latex_table(table_id, title, latex_caption(title, header), tabular, notes)


def latex_caption(title: str, header: str) -> str:
    return f"{latex_escape(title)}. {latex_escape(header)}"


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
    paper_rows = _with_protocol_rows(paper_rows, runs)
    cell_rows = _build_cells(runs, paper_rows, datasets, ipcs, table_id)
    whole_row = _whole_cells(runs, whole_dataset, datasets, table_id) if whole_dataset is not None else None
    all_cells = [cell for cells in cell_rows for cell in cells] + list(whole_row or [])
    shown_methods = {cell.method for cell in all_cells if cell.n}
    shown_runs = runs.loc[runs["method"].isin(shown_methods) & runs["ipc"].isin(list(ipcs) + [WHOLE_IPC]) & (runs["protocol"] == "")]
    header = _header_line(shown_runs, datasets, arch, all_cells, data_labels)
    for note in (_row_note(paper_rows), _protocol_note(paper_rows)):
        if note:
            header += " " + note
    max_n = max((cell.n for cell in all_cells), default=0)
    any_quoted = any(bool(row.get("quoted")) for row in paper_rows)
    md_labels = [f"{row['label']}{DAGGER_MD if row.get('quoted') else ''}" for row in paper_rows]
    tex_labels = [latex_escape(str(row["label"])) + ("$^\\dagger$" if row.get("quoted") else "") for row in paper_rows]
    args = (datasets, ipcs)
    paper = not _paper_less(all_cells)  # no published number anywhere: ours alone
    markdown = _markdown_table(title, header, *args, md_labels, cell_rows, whole_row, max_n, data_labels, any_quoted, paper)
    latex = _latex_table(table_id, title, header, *args, tex_labels, cell_rows, whole_row, max_n, data_labels, any_quoted, paper)
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
        paper = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ReportError(f"paper numbers {path} are not valid YAML ({str(error).splitlines()[0]})") from None
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
