"""Figures 4-7 of the paper from tidy result tables: weight sensitivity, convergence, compression, continual learning.

Each ``plot_*`` function takes the DataFrame that the report's readers return (``report.inputs``) and returns an
unsaved matplotlib Figure built like ``figures.plot_method_bars`` (``figures._new_figure`` inside
``figures.FIGURE_RC``); the caller writes it with ``figures.save_figure`` (byte-stable PNG + PDF).

Conventions: ours are drawn solid by seaborn's ``lineplot`` as mean +- std (population std, ddof 0,
``records.STD_DDOF``, through an error-bar function: seaborn's own "sd" has ddof 1) over seeds, with no error bar or
band where a point has a single seed; the paper's numbers are dashed with hollow markers; each method id
keeps one colour in every figure (``names.METHOD_COLORS``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iid_distill.names import METHOD_COLORS, WHOLE_METHOD, canonical_method, method_color, method_label, method_rank
from iid_distill.report.cells import mean_std
from iid_distill.report.figures import FIGURE_RC, _new_figure
from iid_distill.report.records import DEFAULT_ARCH, STD_DDOF, ReportError, dataset_label

ACC_LABEL = "Top-1 test accuracy (%)"

QUOTED_COLORS: dict[str, str] = {"DC": "#7b4173", "DSA": "#637939"}
PAPER_COLOR = "#555555"

# Paper Sec. 4.1 (text_claims "Hyperparameters"): the DM+IID weights used at IPC 1 and 10 (lambda_CC is 0.003 at IPC 50).
PAPER_DEFAULT_WEIGHTS: dict[str, dict[int, float]] = {
    "lambda_cc": {1: 0.05, 10: 0.05, 50: 0.003},
    "lambda_cm": {1: 0.01, 10: 0.01, 50: 0.01},
}
# Paper Fig. 4 text (text_claims "Fig 4"): accuracy spread over lambda_CC 0.01..0.09 and lambda_CM 0.005..0.015,
# CIFAR-10 IPC 10; the figure's per-point values are not published.
PAPER_SWEEP_SPREADS: dict[str, float] = {"lambda_cc": 1.47, "lambda_cm": 1.1}
PAPER_SWEEP_SETTING = ("cifar10", 10)
SWEEP_PARAMETER_LABELS: dict[str, str] = {"lambda_cc": r"$\lambda_{CC}$", "lambda_cm": r"$\lambda_{CM}$"}
# Paper Fig. 5 text (text_claims "Fig 5"): peak accuracy before 2,000 iterations at IPC 10, about 3,000 at IPC 50.
PAPER_CONVERGENCE_ITERATIONS: dict[int, tuple[int, str]] = {
    10: (2000, "paper: peak before 2,000 it. (IPC 10)"),
    50: (3000, "paper: peak at about 3,000 it. (IPC 50)"),
}
PAPER_CONVERGENCE_DATASET = "cifar10"

SWEEP_COLUMNS = ("parameter", "value", "dataset", "ipc", "method", "arch", "seed", "acc")
CONVERGENCE_COLUMNS = ("dataset", "ipc", "method", "iteration", "seed", "acc")
RUNS_COLUMNS = ("dataset", "ipc", "method", "arch", "seed", "acc")
CONTINUAL_COLUMNS = ("dataset", "steps", "order", "method", "classes_seen", "model_seed", "acc")


class PlotError(ReportError):
    """A figure's input table is empty, lacks columns, or holds nothing for the requested setting."""


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers


def _checked(df: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """``df`` with canonical method ids and lower-case datasets; an empty frame or missing column is a PlotError."""
    if df is None or len(df) == 0:
        raise PlotError(f"{what}: the table is empty; nothing to plot (run the experiment first)")
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise PlotError(f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    df = df.copy()
    df["method"] = df["method"].map(lambda method: canonical_method(method, custom=True))
    df["dataset"] = df["dataset"].astype(str).str.strip().str.lower()
    return df


def _ordered_methods(methods: pd.Series) -> list[str]:
    return sorted(set(methods), key=method_rank)


def seed_curve(df: pd.DataFrame, x: str, value: str = "acc") -> pd.DataFrame:
    """Per ``x`` value (sorted): n, mean and population std (ddof 0) of ``value``."""
    rows = []
    for x_value, group in df.groupby(x, sort=True):
        mean, std = mean_std(group[value].to_numpy())
        rows.append({x: x_value, "n": int(len(group)), "mean": mean, "std": std})
    return pd.DataFrame(rows, columns=[x, "n", "mean", "std"])


def _count_text(counts: Sequence[int], unit: str) -> str:
    low, high = int(min(counts)), int(max(counts))
    span = f"{low}" if low == high else f"{low}-{high}"
    return f"{span} {unit}{'' if high == 1 else 's'}"


def _spread_text(counts: Sequence[int], unit: str) -> str:
    """What the error bars are, for a title: "mean ± std over 3 seeds (ddof 0)"."""
    if max(counts) == 1:
        return f"1 {unit}, no error bars"
    return f"mean ± std over {_count_text(counts, unit)} (ddof {STD_DDOF})"


def _population_sd(values: pd.Series) -> tuple[float, float]:
    """A seaborn error interval: mean ± std with ddof 0 (``records.STD_DDOF``, as the tables); seaborn's "sd" is ddof 1."""
    mean, std = mean_std(values.to_numpy())
    return mean - std, mean + std


def _draw_curve(ax, points: pd.DataFrame, x: str, *, color: str, label: str, band: bool = False, marker: str = "o") -> None:
    """seaborn's mean line over the ``acc`` values at each ``x``, with ± std error bars (or a band) where a point has
    more than one value; single values get none (seaborn leaves them out)."""
    import seaborn as sns

    spread = bool((points.groupby(x)["acc"].size() > 1).any())
    err_kws = dict(alpha=0.2, linewidth=0) if band else dict(elinewidth=0.9, capsize=2.5)
    sns.lineplot(data=points, x=x, y="acc", estimator="mean", errorbar=_population_sd if spread else None,
                 err_style="band" if band else "bars", err_kws=err_kws, color=color, marker=marker, markersize=4,
                 markeredgecolor=color, linewidth=1.4, label=label, legend=False, ax=ax)  # the figure's legend lists it


def _unique_handles(axes) -> dict[str, Any]:
    """Legend entries of ``axes`` de-duplicated by label (panels share methods), in drawing order."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    return handles


def _legend_right(fig, ax=None) -> None:
    """One legend outside the axes on the right."""
    handles = _unique_handles([ax] if ax is not None else fig.axes)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", frameon=False)


def _legend_below(fig) -> None:
    """One legend in a row under the panels (short legends; keeps the panels wide)."""
    handles = _unique_handles(fig.axes)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4),
                   frameon=False)


# ----------------------------------------------------------------------------------------------------------------
# Figure 4: lambda_CC / lambda_CM sensitivity


def sweep_spread(curve: pd.DataFrame) -> float:
    """Accuracy spread of a sweep as the paper reports it: max minus min of the per-value means (points)."""
    return float(curve["mean"].max() - curve["mean"].min())


def plot_sweeps(sweeps: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None):
    """Figure 4: one panel per swept weight (lambda_cc, lambda_cm); accuracy (mean ± std over seeds) vs the weight.

    Marks the paper's default weight (dotted vertical line) and prints our spread (max - min of means) beside the
    paper's (``PAPER_SWEEP_SPREADS``, only for the paper's setting CIFAR-10 IPC 10). ``paper`` is the loaded
    paper_numbers.yaml; its Fig 4 text claim must still hold the spreads drawn here.
    """
    import matplotlib

    sweeps = _checked(sweeps, SWEEP_COLUMNS, "sweep table")
    parameters = [parameter for parameter in PAPER_SWEEP_SPREADS if parameter in set(sweeps["parameter"])]
    if not parameters:
        raise PlotError(f"sweep table: no rows for parameter {' or '.join(PAPER_SWEEP_SPREADS)} "
                        f"(found {', '.join(sorted(set(map(str, sweeps['parameter']))))}); Figure 4 sweeps lambda_cc and lambda_cm")
    claim = _text_claim(paper, "Fig 4")
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(4.6 * len(parameters), 3.9)
        axes = fig.subplots(1, len(parameters), squeeze=False)[0]
        for ax, parameter in zip(axes, parameters):
            _draw_sweep_panel(ax, sweeps.loc[sweeps["parameter"] == parameter], parameter, claim, data_labels)
        _legend_below(fig)
    return fig


def _text_claim(paper: Mapping[str, Any], prefix: str) -> str | None:
    """The paper_numbers.yaml text claim starting with ``prefix`` ("Fig 4"), or None when the mapping has none."""
    for claim in (paper or {}).get("text_claims") or []:
        if str(claim).startswith(prefix):
            return str(claim)
    return None


def _paper_spread(parameter: str, claim: str | None) -> float | None:
    if claim is None:
        return None
    spread = PAPER_SWEEP_SPREADS[parameter]
    if f"{spread:g} points" not in claim:
        raise PlotError(f"paper numbers: the Fig 4 text claim {claim!r} does not state {spread:g} points for {parameter}; "
                        "update PAPER_SWEEP_SPREADS in plots.py to match reports/paper_numbers.yaml")
    return spread


def _draw_sweep_panel(ax, rows: pd.DataFrame, parameter: str, claim: str | None, data_labels) -> None:
    rows = rows.assign(value=rows["value"].astype(float))
    settings = list(rows.groupby(["dataset", "ipc", "method", "arch"], sort=True))
    settings.sort(key=lambda item: (item[0][0], item[0][1], method_rank(item[0][2]), item[0][3]))
    counts, spreads = [], []
    for (dataset, ipc, method, arch), group in settings:
        curve = seed_curve(group, "value")
        counts.extend(curve["n"])
        label = method_label(method) if len(settings) == 1 else f"{method_label(method)}, {dataset_label(dataset, data_labels)} IPC {ipc}, {arch}"
        _draw_curve(ax, group, "value", color=method_color(method), label=label)
        spreads.append((dataset, int(ipc), sweep_spread(curve)))
    ipcs = sorted({int(ipc) for ipc in rows["ipc"]})
    symbol = SWEEP_PARAMETER_LABELS[parameter]
    default = PAPER_DEFAULT_WEIGHTS[parameter].get(ipcs[0]) if len(ipcs) == 1 else None
    if default is not None:
        ax.axvline(default, color=PAPER_COLOR, linestyle=":", linewidth=1.1, label="paper's default weight (Sec. 4.1)")
        ax.text(default, 0.97, f" {default:g}", transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=7,
                color=PAPER_COLOR)
    ours = "; ".join(f"{spread:.2f}" for _, _, spread in spreads)
    paper_spread = _paper_spread(parameter, claim)
    in_paper_setting = any((dataset, ipc) == PAPER_SWEEP_SETTING for dataset, ipc, _ in spreads)
    paper_text = f"{paper_spread:g}" if paper_spread is not None and in_paper_setting else "n/a"
    datasets = sorted(set(rows["dataset"]))
    where = ", ".join(dataset_label(dataset, data_labels) for dataset in datasets)
    ax.set_title(f"{symbol} sensitivity: {where}, IPC {', '.join(map(str, ipcs))}\n"
                 f"spread (max − min of means): ours {ours}, paper {paper_text} pts")
    ax.set_xlabel(f"{symbol} (loss weight)")
    ax.set_ylabel(ACC_LABEL)
    ax.text(0.98, 0.03, _spread_text(counts, "seed"), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
            color="dimgray")
    ax.margins(y=0.25)


# ----------------------------------------------------------------------------------------------------------------
# Figure 5: accuracy over distillation iterations


def plot_convergence(conv: pd.DataFrame, paper: Mapping[str, Any], data_labels: Mapping[str, str] | None = None):
    """Figure 5: one panel per (dataset, IPC); accuracy vs distillation iteration, one line per method with a
    ± std band over seeds; the paper's convergence claim as a dotted vertical line (CIFAR-10 IPC 10 and 50 only)."""
    import matplotlib
    import matplotlib.ticker

    conv = _checked(conv, CONVERGENCE_COLUMNS, "convergence table")
    claim = _text_claim(paper, "Fig 5")
    panels = sorted({(dataset, int(ipc)) for dataset, ipc in zip(conv["dataset"], conv["ipc"])})
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(4.0 * len(panels) + 1.8, 3.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (dataset, ipc) in zip(axes, panels):
            rows = conv.loc[(conv["dataset"] == dataset) & (conv["ipc"] == ipc)]
            counts = []
            for method in _ordered_methods(rows["method"]):
                points = rows.loc[rows["method"] == method]
                counts.extend(seed_curve(points, "iteration")["n"])
                _draw_curve(ax, points, "iteration", color=method_color(method), label=method_label(method), band=True,
                            marker=".")
            if claim is not None and dataset == PAPER_CONVERGENCE_DATASET and ipc in PAPER_CONVERGENCE_ITERATIONS:
                iteration, text = PAPER_CONVERGENCE_ITERATIONS[ipc]
                ax.axvline(iteration, color=PAPER_COLOR, linestyle=":", linewidth=1.2, label=text)
            ax.set_title(f"{dataset_label(dataset, data_labels)}, IPC {ipc}\n{_spread_text(counts, 'seed')}")
            ax.set_xlabel("Iteration")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole iterations: no ticks at 2.5, 7.5
            ax.set_ylabel(ACC_LABEL)
        _legend_below(fig)  # one legend under the panels: in a corner it would hide a curve
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Figure 6: compression ratios (high IPC)


def paper_compression_rows(paper: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """The paper's Table 7 as plot rows (label, colour, {ipc: acc}); empty unless ``dataset`` is Table 7's."""
    table = (paper or {}).get("table7")
    if not table or table.get("dataset") != dataset:
        return []
    rows = []
    for row in table["rows"]:
        method = row.get("method")
        if row.get("quoted") or method is None:
            label, color = f"{row['label']} (paper, quoted)", QUOTED_COLORS.get(str(row["label"]), PAPER_COLOR)
        elif row["label"] == "Ours":  # the paper's "Ours" column equals its IDM+IID numbers (Table 1 at IPC 1/10/50)
            label, color = f"Ours (paper; {method_label(method)})", method_color(method)
        else:
            label, color = f"{method_label(method)} (paper)", method_color(method)
        rows.append({"label": label, "color": color, "acc": {int(ipc): float(acc) for ipc, acc in row["acc"].items()}})
    return rows


def paper_whole_accuracy(paper: Mapping[str, Any], dataset: str) -> float | None:
    """The paper's whole-dataset accuracy for ``dataset`` (Table 1 or 2), or None."""
    for table_id in ("table1", "table2"):
        value = (((paper or {}).get(table_id) or {}).get("whole_dataset") or {}).get(dataset)
        if value is not None:
            return float(value[0])
    return None


def compression_runs(runs: pd.DataFrame, dataset: str, ipcs: Sequence[int], arch: str = DEFAULT_ARCH) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure 6's runs: (``arch`` runs of the methods run at the largest of ``ipcs``, our whole-dataset accuracies)."""
    runs = _checked(runs, RUNS_COLUMNS, "runs table")
    if not ipcs or min(ipcs) < 1:
        raise PlotError(f"compression figure: ipcs {list(ipcs)} must be positive images-per-class values")
    mine = runs.loc[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
    whole = mine.loc[mine["method"] == WHOLE_METHOD, "acc"].to_numpy()
    distilled = mine.loc[(mine["method"] != WHOLE_METHOD) & mine["ipc"].isin(ipcs)]
    if not len(distilled):
        raise PlotError(f"runs table: no {arch} runs of {dataset} at IPC {', '.join(map(str, ipcs))}; "
                        "nothing to plot for Figure 6")
    largest = distilled["ipc"].max()
    return distilled.loc[distilled["method"].isin(set(distilled.loc[distilled["ipc"] == largest, "method"]))], whole


def plot_compression(runs: pd.DataFrame, paper: Mapping[str, Any], dataset: str, ipcs: Sequence[int],
                     data_labels: Mapping[str, str] | None = None, arch: str = DEFAULT_ARCH):
    """Figure 6: (a) accuracy vs IPC per method run (mean ± std over seeds) with the paper's Table 7 (dashed, only
    for its dataset, CIFAR-10); (b) the same as percent of the whole-dataset accuracy (ours over our whole-dataset
    mean of the same arch; the paper's over its Table 1 value). Log-scale x with ticks at ``ipcs``. Our methods are
    those run at the largest IPC with runs (the compression grid's), so ablation or coreset runs at small IPCs only
    stay out."""
    import matplotlib
    from matplotlib.ticker import FixedLocator, NullLocator

    dataset = dataset.strip().lower()
    ipcs = sorted({int(ipc) for ipc in ipcs})
    distilled, whole = compression_runs(runs, dataset, ipcs, arch)
    whole_ours = mean_std(whole)[0] if len(whole) else None
    whole_paper = paper_whole_accuracy(paper, dataset)
    paper_rows = paper_compression_rows(paper, dataset)
    name = dataset_label(dataset, data_labels)
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(11.0, 4.0)
        ax_acc, ax_rel = fig.subplots(1, 2)
        counts = []
        for method in _ordered_methods(distilled["method"]):
            points = distilled.loc[distilled["method"] == method]
            curve = seed_curve(points, "ipc")
            counts.extend(curve["n"])
            _draw_curve(ax_acc, points, "ipc", color=method_color(method), label=f"{method_label(method)} (ours)")
            if whole_ours is not None:
                ax_rel.plot(curve["ipc"].to_numpy(), curve["mean"].to_numpy() / whole_ours * 100.0,
                            color=method_color(method), marker="o", markersize=4, linewidth=1.4,
                            label=f"{method_label(method)} (ours)")
        for row in paper_rows:
            shown = [ipc for ipc in ipcs if ipc in row["acc"]]
            values = np.array([row["acc"][ipc] for ipc in shown])
            style = dict(color=row["color"], linestyle="--", marker="s", markersize=4, markerfacecolor="none", linewidth=1.0,
                         label=row["label"])
            ax_acc.plot(shown, values, **style)
            if whole_paper is not None:
                ax_rel.plot(shown, values / whole_paper * 100.0, **style)
        if whole_ours is not None:
            ax_acc.axhline(whole_ours, color=METHOD_COLORS[WHOLE_METHOD], linestyle="-.", linewidth=1.0,
                           label=f"Whole dataset (ours, {_count_text([len(whole)], 'seed')})")
        if whole_paper is not None:
            ax_acc.axhline(whole_paper, color=PAPER_COLOR, linestyle=":", linewidth=1.1, label="Whole dataset (paper)")
        has_relative = whole_ours is not None or bool(paper_rows and whole_paper is not None)
        if has_relative:
            ax_rel.axhline(100.0, color=METHOD_COLORS[WHOLE_METHOD], linewidth=0.6)
        else:
            ax_rel.text(0.5, 0.5, "no whole-dataset accuracy to compare with", transform=ax_rel.transAxes,
                        ha="center", va="center", color="dimgray")
            ax_rel.set_yticks([])
        for ax in (ax_acc, ax_rel):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(ipcs))
            ax.xaxis.set_minor_locator(NullLocator())
            # Vertical: on a log axis the large IPCs (600, 800, 1000) sit too close for horizontal labels.
            ax.set_xticklabels([str(ipc) for ipc in ipcs], rotation=90, fontsize=7)
            ax.set_xlim(ipcs[0] / 1.3, ipcs[-1] * 1.3)
            ax.set_xlabel("Images per class (IPC)")
        ax_acc.set_ylabel(ACC_LABEL)
        ax_acc.set_title(f"(a) {name}, {arch}\n{_spread_text(counts, 'seed')}")
        ax_rel.set_ylabel("Accuracy (% of whole-dataset accuracy)")
        note = f"ours / {whole_ours:.1f} (our whole dataset)" if whole_ours is not None else "ours: no whole-dataset run"
        if not paper_rows:
            paper_note = "paper: no Table 7 numbers"
        else:
            paper_note = f"paper / {whole_paper:g}" if whole_paper is not None else "paper: no whole-dataset number"
        ax_rel.set_title(f"(b) % of whole-dataset accuracy\n{note}\n{paper_note}")
        _legend_right(fig, ax_acc)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Figure 7: continual learning


def continual_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (class order, classes_seen): the mean accuracy over the order's models."""
    return rows.groupby(["order", "classes_seen"], sort=True)["acc"].mean().reset_index()


def continual_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Per classes_seen: the mean over models within each class order, then n orders, mean and std (ddof 0) over orders."""
    return seed_curve(continual_points(rows), "classes_seen")


def plot_continual(cl: pd.DataFrame, data_labels: Mapping[str, str] | None = None):
    """Figure 7: one panel per (dataset, number of steps); accuracy on all classes seen vs classes seen, per method
    mean ± std over class orders (each order first averaged over its models). The paper publishes no numbers."""
    import matplotlib

    cl = _checked(cl, CONTINUAL_COLUMNS, "continual table")
    panels = sorted({(dataset, int(steps)) for dataset, steps in zip(cl["dataset"], cl["steps"])})
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(4.0 * len(panels) + 1.6, 3.5)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (dataset, steps) in zip(axes, panels):
            rows = cl.loc[(cl["dataset"] == dataset) & (cl["steps"] == steps)]
            counts = []
            for method in _ordered_methods(rows["method"]):
                points = continual_points(rows.loc[rows["method"] == method])
                counts.extend(seed_curve(points, "classes_seen")["n"])
                _draw_curve(ax, points, "classes_seen", color=method_color(method), label=method_label(method))
            seen = sorted({int(value) for value in rows["classes_seen"]})
            ax.set_xticks(seen)
            models = rows.groupby(["method", "order", "classes_seen"])["model_seed"].nunique()
            ax.set_title(f"{dataset_label(dataset, data_labels)}, {steps} steps\n"
                         f"{_spread_text(counts, 'class order')}\n(each order: mean of {_count_text(list(models), 'model')})")
            ax.set_xlabel("Classes seen")
            ax.set_ylabel(ACC_LABEL)
        fig.suptitle("Continual learning (paper Fig. 7: no numbers published)", fontsize=FIGURE_RC["axes.titlesize"])
        _legend_below(fig)  # on the right it would run into the suptitle
    return fig


# ----------------------------------------------------------------------------------------------------------------
# The plotted curves as tables: <figure>.csv beside each figure (DVC plots, other tools)


def _curves(df: pd.DataFrame, keys: Sequence[str], x: str, curve=seed_curve) -> pd.DataFrame:
    """``curve(group, x)`` of every ``keys`` group, keys first: the numbers a figure draws, one row per point."""
    frames = [curve(group, x).assign(**dict(zip(keys, key))) for key, group in df.groupby(list(keys), sort=True)]
    columns = [*keys, x, "n", "mean", "std"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def sweep_curves(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's points: accuracy (n, mean, std over seeds) per swept value."""
    sweeps = _checked(sweeps, SWEEP_COLUMNS, "sweep table")
    return _curves(sweeps.assign(value=sweeps["value"].astype(float)), ["parameter", "dataset", "ipc", "method", "arch"], "value")


def convergence_curves(conv: pd.DataFrame) -> pd.DataFrame:
    """Figure 5's points: accuracy (n, mean, std over seeds) per distillation iteration."""
    return _curves(_checked(conv, CONVERGENCE_COLUMNS, "convergence table"), ["dataset", "ipc", "method"], "iteration")


def compression_curves(runs: pd.DataFrame, dataset: str, ipcs: Sequence[int], arch: str = DEFAULT_ARCH) -> pd.DataFrame:
    """Figure 6 (a)'s points of our runs: accuracy (n, mean, std over seeds) per IPC."""
    distilled, _ = compression_runs(runs, dataset.strip().lower(), sorted({int(ipc) for ipc in ipcs}), arch)
    return _curves(distilled, ["dataset", "arch", "method"], "ipc")


def continual_curves(cl: pd.DataFrame) -> pd.DataFrame:
    """Figure 7's points: accuracy (n, mean, std over class orders) per number of classes seen."""
    return _curves(_checked(cl, CONTINUAL_COLUMNS, "continual table"), ["dataset", "steps", "method"], "classes_seen",
                   curve=lambda group, x: continual_curve(group))


__all__ = [
    "compression_curves",
    "compression_runs",
    "continual_curves",
    "convergence_curves",
    "sweep_curves",
    "METHOD_COLORS",
    "PlotError",
    "continual_curve",
    "method_color",
    "paper_compression_rows",
    "paper_whole_accuracy",
    "plot_compression",
    "plot_continual",
    "plot_convergence",
    "plot_sweeps",
    "seed_curve",
    "sweep_spread",
]


def plot_pools(points: pd.DataFrame, data_labels: Mapping[str, str] | None = None):
    """The pool study (:func:`iid_distill.report.pools.pool_study_points`): one panel per (dataset, IPC, budget),
    a bar per method and CC pool (mean +- std over seeds), the host without CC as a dashed line."""
    import matplotlib

    settings = list(points.loc[:, ["dataset", "ipc", "iterations"]].drop_duplicates().itertuples(index=False, name=None))
    with matplotlib.rc_context(FIGURE_RC):
        fig = _new_figure(7.0, 1.4 + 0.6 * max(len(points), 2))
        for index, (dataset, ipc, iterations) in enumerate(settings):
            ax = fig.add_subplot(len(settings), 1, index + 1)
            rows = points.loc[(points["dataset"] == dataset) & (points["ipc"] == ipc) & (points["iterations"] == iterations)]
            with_cc = rows.loc[rows["pool"] != ""].iloc[::-1]
            labels = [f"{label}\npool: {pool.split(' [')[0]}" for label, pool in zip(with_cc["label"], with_cc["pool"])]
            ax.barh(labels, with_cc["mean"], xerr=with_cc["std"], color=[method_color(m) for m in with_cc["method"]],
                    edgecolor="black", linewidth=0.5, capsize=2)
            for method, label, mean in rows.loc[rows["pool"] == "", ["method", "label", "mean"]].itertuples(index=False, name=None):
                ax.axvline(mean, color=method_color(method), linestyle="--", linewidth=1.0, label=f"{label} (no CC)")
            low = float(np.nanmin((rows["mean"] - rows["std"].fillna(0)).to_numpy()))
            ax.set_xlim(max(0.0, low - 3.0), float(np.nanmax((rows["mean"] + rows["std"].fillna(0)).to_numpy())) + 1.0)
            ax.set_xlabel("Top-1 test accuracy (%)")
            ax.set_title(f"{dataset_label(dataset, data_labels)}, IPC {ipc}, {iterations:,} iterations: IID by its CC pool", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower right", fontsize=7)
    return fig
