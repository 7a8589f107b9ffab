"""Figure style (byte-stable PNG + PDF) and the per-setting bar figures of Tables 1 and 2."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from iid_distill.names import WHOLE_METHOD, canonical_method
from iid_distill.report.cells import _paper_pair, _runs_for, mean_std, paper_method_table
from iid_distill.report.records import DEFAULT_ARCH, dataset_label
from iid_distill.utils import atomic_path


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


FIGURE_FORMATS = {"png": PNG_METADATA, "pdf": PDF_METADATA}


def figure_files(stem: str | Path) -> list[Path]:
    """The files :func:`save_figure` writes for ``stem``."""
    return [Path(f"{stem}.{suffix}") for suffix in FIGURE_FORMATS]


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf, each atomically and byte-stable (fixed dpi, rcParams, no timestamps)."""
    import matplotlib

    with matplotlib.rc_context(FIGURE_RC):
        for path, (suffix, metadata) in zip(figure_files(stem), FIGURE_FORMATS.items()):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=suffix, dpi=FIGURE_DPI, metadata=metadata)
    return figure_files(stem)


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
