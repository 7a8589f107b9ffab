"""The pool study (this project's table; the paper never reports it): IID's gain by its class-centralisation pool.

One row per (method id, CC pool) among the runs that used class centralisation, beside the runs of the same host
without CC at the same iteration budget, per (dataset, IPC, iterations): how much of IID's gain a pool of 1 or more
trained networks, or of untrained ones, carries.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from iid_distill.names import method_label, method_rank
from iid_distill.report.cells import DEFAULT_ARCH, Cell, RenderedTable, latex_escape, mean_std
from iid_distill.report.records import dataset_label
from iid_distill.report.tables import latex_table, latex_tabular, markdown_table

TABLE_ID = "table_pools"
TITLE = "IID by its class-centralisation pool (this project's table; no published numbers)"


def _columns(cc_runs: pd.DataFrame) -> list[tuple[str, int, int]]:
    keys = cc_runs.loc[:, ["dataset", "ipc", "iterations"]].drop_duplicates()
    return sorted((str(d), int(i), int(t)) for d, i, t in keys.itertuples(index=False, name=None) if pd.notna(t))


def _row_keys(runs: pd.DataFrame, cc_runs: pd.DataFrame, columns) -> list[tuple[str, str]]:
    """(method, pool label): the host-alone runs at the CC runs' settings first, then every CC run, in report order."""
    hosts = {method.split("_")[0] for method in cc_runs["method"]}
    settings = {(d, i, t) for d, i, t in columns}
    alone = runs.loc[runs["method"].isin(hosts) & (runs["cc_pool"] == "")]
    alone = alone.loc[[(str(d), int(i), int(t)) in settings if pd.notna(t) else False
                       for d, i, t in alone.loc[:, ["dataset", "ipc", "iterations"]].itertuples(index=False, name=None)]]
    keys = {(method, "") for method in alone["method"]} | set(cc_runs.loc[:, ["method", "cc_pool"]].itertuples(index=False, name=None))
    return sorted(keys, key=lambda key: (method_rank(key[0]), key[1]))


def _cell(runs: pd.DataFrame, method: str, pool: str, column: tuple[str, int, int]) -> Cell:
    dataset, ipc, iterations = column
    group = runs.loc[(runs["method"] == method) & (runs["cc_pool"] == pool) & (runs["dataset"] == dataset) & (runs["ipc"] == ipc)
                     & (runs["iterations"] == iterations)].sort_values("seed")
    mean, std = mean_std(group["acc"].to_numpy()) if len(group) else (None, None)
    return Cell(method_label(method), method, False, dataset, ipc, len(group), tuple(int(seed) for seed in group["seed"]), mean, std,
                None, None, tuple(sorted(set(group["params_hash"]))), tuple(sorted(set(group["git_sha"]))),
                column=f"{iterations} iterations; pool {pool or 'none'}")


def _text(cell: Cell, max_n: int) -> str:
    if not cell.n:
        return "-"
    count = f" (n={cell.n})" if cell.n < max_n else ""
    return f"{cell.mean:.1f} ± {cell.std:.1f}{count}"


def _study(df: pd.DataFrame, arch: str) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]], list[list[Cell]]]:
    """(columns (dataset, ipc, iterations), row keys (method, pool; "" = no CC), one cell per key and column)."""
    runs = df.loc[df["arch"] == arch] if len(df) else df
    cc_runs = runs.loc[runs["cc_pool"] != ""] if len(runs) else runs
    columns = _columns(cc_runs) if len(cc_runs) else []
    keys = _row_keys(runs, cc_runs, columns) if columns else []
    return columns, keys, [[_cell(runs, method, pool, column) for column in columns] for method, pool in keys]


def pool_study_points(df: pd.DataFrame, arch: str = DEFAULT_ARCH) -> pd.DataFrame:
    """The pool study's cells with a run: dataset, ipc, iterations, method, pool ("" = no CC), label, n, mean, std
    (what the pool figure draws and its CSV holds)."""
    columns, keys, cells = _study(df, arch)
    rows = [(dataset, ipc, iterations, method, pool, method_label(method), cell.n, cell.mean, cell.std)
            for (method, pool), row in zip(keys, cells) for (dataset, ipc, iterations), cell in zip(columns, row) if cell.n]
    return pd.DataFrame(rows, columns=["dataset", "ipc", "iterations", "method", "pool", "label", "n", "mean", "std"])


def render_pool_table(df: pd.DataFrame, data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH) -> RenderedTable:
    columns, keys, cells = _study(df, arch)
    flat = [cell for row in cells for cell in row]
    max_n = max((cell.n for cell in flat), default=0)
    names = [f"{dataset_label(d, data_labels)} IPC {i}, {t:,} it." for d, i, t in columns]
    labels = [f"{method_label(method)}, pool: {pool}" if pool else f"{method_label(method)} (no CC)" for method, pool in keys]
    header = (f"Evaluation: {arch}, final-model test accuracy, mean ± std over seeds (cells with fewer than {max_n} seeds marked n=K). "
              "Rows: each method with the CC pool its sets were distilled with (networks x epochs, their mean test accuracy, "
              "fingerprint), and the same host without CC at the same budget." if keys else "No run with class centralisation yet.")
    rows = [[label, *(_text(cell, max_n) for cell in row)] for label, row in zip(labels, cells)]
    markdown = f"## {TITLE}\n\n{header}\n\n" + (markdown_table(["Method, CC pool", *names], rows) if rows else "") + "\n"
    tabular = latex_tabular(["Method, CC pool", *map(latex_escape, names)],
                            [[latex_escape(cell) for cell in row] for row in rows]) if rows else ""
    latex = latex_table(TABLE_ID, TITLE, latex_escape(TITLE), tabular, latex_escape(header))
    return RenderedTable(TABLE_ID, TITLE, header, markdown, latex, tuple(flat))
