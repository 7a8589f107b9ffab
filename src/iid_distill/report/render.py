"""The report: every table and figure from the runs table and the other inputs, the runs summary and summary.json."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from iid_distill.names import WHOLE_METHOD, method_label
from iid_distill.outputs import check_outputs, output_lock
from iid_distill.report.cells import (
    _paper_table,
    load_paper_numbers,
    mean_std,
    seed_statistics,
)
from iid_distill.report.figures import plot_method_bars, save_figure
from iid_distill.report.grids import table7_ipcs
from iid_distill.report.inputs import _sort_by, read_continual, read_convergence, read_sweep_tables
from iid_distill.report.records import DEFAULT_ARCH, PROTOCOL_TAGS, STD_DDOF, dataset_label, read_runs_table
from iid_distill.report.pools import pool_study_points
from iid_distill.report.registry import ReportInputs, report_outputs
from iid_distill.report.tables import markdown_table
from iid_distill.utils import atomic_write_json, atomic_write_text, sha256_file


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
             markdown_table(["dataset", "IPC", "method", "evaluated at iterations", "seeds", "final (iteration)", "best of run (iteration)"],
                            [_convergence_row(row, data_labels) for row in stats.itertuples()],
                            align=["left", "right", "left", "left", "right", "right", "right"])]
    return "\n".join(lines) + "\n"


def _convergence_row(row, data_labels: Mapping[str, str] | None) -> list[str]:
    return [dataset_label(row.dataset, data_labels), str(row.ipc), method_label(row.method), _iterations_text(row.iterations), str(row.seeds),
            f"{row.final_mean:.2f} +- {row.final_std:.2f} ({row.final_iteration:,})", f"{row.best_mean:.2f} +- {row.best_std:.2f} ({row.best_iteration:,})"]


def render_runs_summary(runs: pd.DataFrame, data_labels: Mapping[str, str] | None = None) -> str:
    """Every measured setting, paper table or not (e.g. the digits demo): Markdown, mean +- std (ddof 0) over seeds,
    opening with the outcome in words (distilled sets against Random, IID variants against their hosts)."""
    outcome = outcome_lines(seed_statistics(runs.loc[runs["protocol"] == ""]), data_labels)  # one protocol compared
    lines = [
        "# All runs",
        "",
        *(["## Outcome", "", *outcome, ""] if outcome else []),
        "## Every setting",
        "",
        f"Test accuracy (%) of the final model, mean +- std over evaluation seeds (std with ddof={STD_DDOF}).",
        "",
        markdown_table(["dataset", "IPC", "method", "arch", "seeds", "accuracy", "epochs"],
                       [_summary_row(row, data_labels) for row in seed_statistics(runs).to_dict(orient="records")],
                       align=["left", "right", "left", "left", "right", "right", "left"]),
    ]
    return "\n".join(lines) + "\n"


def _summary_row(row: Mapping[str, Any], data_labels: Mapping[str, str] | None) -> list[str]:
    ipc = "whole" if int(row["ipc"]) == 0 else str(int(row["ipc"]))
    method = method_label(row["method"]) + (f" ({PROTOCOL_TAGS.get(row['protocol'], row['protocol'])})" if row.get("protocol") else "")
    return [dataset_label(row["dataset"], data_labels), ipc, method, row["arch"], str(row["n"]),
            f"{row['mean']:.2f} +- {row['std']:.2f}", ", ".join(str(epochs) for epochs in row["epochs"])]


def _input_files(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Each input by its path below the inputs' common folder (two class orders' dm.json stay apart) and sha256."""
    if not paths:
        return []
    common = Path(os.path.commonpath([path.resolve().parent for path in paths]))
    return [{"file": path.resolve().relative_to(common).as_posix(), "sha256": sha256_file(path)} for path in paths]


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
                  *, force: bool = False, **options: Any) -> list[Path]:
    """:func:`render_report_files` into a staging folder, then moved into ``out_dir`` under a lock: a render that fails
    leaves the previous report whole, two renders into one folder refuse each other, no input is replaced, and an
    existing report file is replaced only with ``force``."""
    out_dir = Path(out_dir)
    inputs = [runs_csv, paper_yaml, *(path for key in ("sweeps", "convergence", "continual") for path in options.get(key) or ())]
    with output_lock(out_dir), tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-") as staging:
        staged = render_report_files(runs_csv, paper_yaml, staging, data_labels, **options)
        final = check_outputs([out_dir / path.relative_to(staging) for path in staged], inputs, force=force)
        out_dir.mkdir(exist_ok=True)
        for source, target in zip(staged, final):
            os.replace(source, target)
    return final


def render_report_files(runs_csv: str | Path, paper_yaml: str | Path, out_dir: str | Path, data_labels: Mapping[str, str] | None = None,
                        *, figures: bool = True, sweeps: Sequence[str | Path] | None = None, convergence: Sequence[str | Path] | None = None,
                  continual: Sequence[str | Path] | None = None, cross_arch_dataset: str = "cifar10",
                  compression_dataset: str = "cifar10", compression_ipcs: Sequence[int] | None = None,
                  ablation_datasets: Sequence[str] | None = None) -> list[Path]:
    """Write table{1..7}.md/.tex (always, "-" where nothing ran), runs_summary.md (every setting measured),
    convergence.md (final and best-of-run accuracy of the ``convergence`` curves), summary.json, metrics.json (accuracy
    per cell, for DVC) and the figures, Figures 4-7 each with the points it draws (<figure>.csv); return the paths.

    ``sweeps``: sweep-table CSVs (Table 5 from the cc_beta ones, Figure 4 from lambda_cc/lambda_cm); ``convergence``:
    ``<stem>.eval.csv`` curves (Figure 5); ``continual``: continual-learning records (Figure 7). Tables 3/4 are on
    ``cross_arch_dataset``, Table 7 / Figure 6 on ``compression_dataset`` at ``compression_ipcs`` (None: the paper's
    IPCs plus any run), Table 6 on ``ablation_datasets`` (None: the paper's). Figures: bars_<dataset>_ipc<ipc> per Table 1/2 setting with a run of ours, and
    figure4_lambda, figure5_convergence, figure6_compression, figure7_continual where their inputs are present;
    summary.json lists them.
    """
    runs_csv, out_dir = Path(runs_csv), Path(out_dir)
    sweep_paths, convergence_paths, continual_paths = ([Path(p) for p in paths or ()] for paths in (sweeps, convergence, continual))
    all_runs = read_runs_table(runs_csv)
    runs = all_runs.loc[all_runs["protocol"] == ""]
    paper = load_paper_numbers(paper_yaml)
    sweep_table = read_sweep_tables(sweep_paths)
    conv = read_convergence(convergence_paths) if convergence_paths else None
    cl = read_continual(continual_paths) if continual_paths else None
    data_labels = dict(data_labels or {})
    cross_arch_dataset, compression_dataset = cross_arch_dataset.strip().lower(), compression_dataset.strip().lower()
    ipcs = table7_ipcs(runs, paper, compression_dataset, compression_ipcs)
    table6_datasets = [str(d).strip().lower() for d in ablation_datasets or _paper_table(paper, "table6")["datasets"]]
    inputs = ReportInputs(runs, paper, data_labels, sweep_table, conv, cl, cross_arch_dataset, compression_dataset, ipcs,
                          compression_figure_wanted(runs, paper, compression_dataset, compression_ipcs), table6_datasets, all_runs)
    written: list[Path] = []
    outputs = report_outputs("table")
    tables = [output.render(inputs) for output in outputs]
    for output, table in zip(outputs, tables):
        for suffix, text in (("md", table.markdown), ("tex", table.latex)):
            path = out_dir / f"{output.stem}.{suffix}"
            atomic_write_text(text, path)
            written.append(path)
    summary_table = out_dir / "runs_summary.md"
    atomic_write_text(render_runs_summary(all_runs, data_labels), summary_table)
    written.append(summary_table)
    if conv is not None:
        written.append(out_dir / "convergence.md")
        atomic_write_text(render_convergence_table(conv, data_labels), written[-1])
    figure_paths = _draw_figures(inputs, out_dir) if figures else []
    groups = seed_statistics(all_runs)
    summary = {
        "runs_table": {"file": runs_csv.name, "sha256": sha256_file(runs_csv), "rows": int(len(all_runs))},
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
    metrics_path = out_dir / "metrics.json"
    atomic_write_json(cell_metrics(groups), metrics_path)
    return written + [summary_path, metrics_path] + figure_paths


def cell_metrics(groups: pd.DataFrame) -> dict[str, Any]:
    """Accuracy per evaluated cell for `dvc metrics show/diff`: dataset -> ipc<N> -> method id -> arch -> n, mean, std
    (the whole-dataset reference is ipc0 / whole)."""
    metrics: dict[str, Any] = {}
    for row in groups.itertuples(index=False):
        method = f"{row.method} ({row.protocol})" if row.protocol else row.method  # another protocol: a cell of its own
        cell = metrics.setdefault(row.dataset, {}).setdefault(f"ipc{int(row.ipc)}", {}).setdefault(method, {})
        cell[row.arch] = {"n": int(row.n), "mean": round(float(row.mean), 4), "std": round(float(row.std), 4)}
    return metrics


def _draw_figures(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """The bar figure of every Table 1/2 setting with a run of ours, then every registered figure whose input is
    present, each with the points it draws (<stem>.csv: DVC plots read them)."""
    paths: list[Path] = []
    for dataset, ipc in figure_settings(inputs.runs, inputs.paper):
        fig = plot_method_bars(inputs.runs, dataset, ipc, inputs.paper, data_labels=inputs.data_labels)
        paths += save_figure(fig, out_dir / f"bars_{dataset}_ipc{ipc}")
    pools = pool_study_points(inputs.runs)
    if (pools["pool"] != "").any():  # the pool study's figure, where a run with class centralisation exists
        from iid_distill.report.plots import plot_pools

        paths += save_figure(plot_pools(pools, inputs.data_labels), out_dir / "figure_pools")
        atomic_write_text(pools.to_csv(index=False, lineterminator="\n", float_format="%.6g"), out_dir / "figure_pools.csv")
        paths.append(out_dir / "figure_pools.csv")
    for output in report_outputs("figure"):
        drawn = output.render(inputs)
        if drawn is None:
            continue
        fig, curves = drawn
        paths += save_figure(fig, out_dir / output.stem)
        atomic_write_text(curves.to_csv(index=False, lineterminator="\n", float_format="%.6g"), out_dir / f"{output.stem}.csv")
        paths.append(out_dir / f"{output.stem}.csv")
    return paths
