"""Figures 4-7 (iid_distill.plots): the plotted numbers equal the table's statistics and the paper's, files are stable."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iid_distill.report import plots
from iid_distill.report import METHOD_LABELS, load_paper_numbers, save_figure
from iid_distill.utils import UserError

PAPER_YAML = Path(__file__).resolve().parents[1] / "reports" / "paper_numbers.yaml"


@pytest.fixture(scope="module")
def paper():
    return load_paper_numbers(PAPER_YAML)


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def _error_bars(ax):
    """(x, low, high) of every error bar drawn on ``ax``, sorted."""
    bars = []
    for collection in ax.collections:
        if type(collection).__name__ == "LineCollection":
            bars.extend((segment[0][0], segment[0][1], segment[1][1]) for segment in collection.get_segments())
    return sorted(bars)


def _sweep_rows(parameter, values, seeds, dataset="cifar10", ipc=10, method="dm_iid"):
    rows = []
    for index, value in enumerate(values):
        for seed in seeds:
            rows.append({"sweep": f"figure4_{parameter}", "parameter": parameter, "value": value, "dataset": dataset,
                         "ipc": ipc, "method": method, "arch": "ConvNet", "seed": seed,
                         "acc": 50.0 + 3.0 * index + 0.7 * seed + (0.4 if seed == 2 and index == 1 else 0.0)})
    return rows


def _sweeps(dataset="cifar10"):
    return pd.DataFrame(_sweep_rows("lambda_cc", [0.01, 0.05, 0.09], [0, 1, 2], dataset)
                        + _sweep_rows("lambda_cm", [0.005, 0.01, 0.015], [0], dataset))


def test_sweep_panels_show_seed_means_std_and_paper_spread(paper):
    sweeps = _sweeps()
    fig = plots.plot_sweeps(sweeps, paper, {"cifar10": "CIFAR-10 (JPEG copy)"})
    ax_cc, ax_cm = fig.axes
    cc = sweeps.loc[sweeps["parameter"] == "lambda_cc"].groupby("value")["acc"]
    means, stds = cc.mean(), cc.std(ddof=0)
    line = _lines(ax_cc)["DM+IID"]
    np.testing.assert_allclose(line.get_xdata(), means.index)
    np.testing.assert_allclose(line.get_ydata(), means.to_numpy())
    bars = _error_bars(ax_cc)
    np.testing.assert_allclose([low for _, low, _ in bars], (means - stds).to_numpy())
    np.testing.assert_allclose([high for _, _, high in bars], (means + stds).to_numpy())
    spread = means.max() - means.min()
    assert f"ours {spread:.2f}, paper 1.47 pts" in ax_cc.get_title()
    assert "CIFAR-10 (JPEG copy), IPC 10" in ax_cc.get_title()
    assert "paper 1.1 pts" in ax_cm.get_title()
    assert _lines(ax_cc)["paper's default weight (Sec. 4.1)"].get_xdata()[0] == 0.05
    assert _lines(ax_cm)["paper's default weight (Sec. 4.1)"].get_xdata()[0] == 0.01
    # One seed per value: the means alone, no error bars, and the panel says so.
    assert _error_bars(ax_cm) == []
    assert any("no error bars" in text.get_text() for text in ax_cm.texts)
    assert line.get_color() == plots.METHOD_COLORS["dm_iid"]


def test_sweep_paper_spread_only_in_the_papers_setting(paper):
    fig = plots.plot_sweeps(_sweeps("svhn"), paper)
    assert all("paper n/a pts" in ax.get_title() for ax in fig.axes)


def test_sweep_bad_input_is_a_one_line_error(paper):
    with pytest.raises(UserError, match="empty"):
        plots.plot_sweeps(pd.DataFrame(), paper)
    beta_only = pd.DataFrame(_sweep_rows("cc_beta", [0.0, 1.0], [0], method="dm_cc"))
    with pytest.raises(plots.PlotError, match="no rows for parameter lambda_cc or lambda_cm") as error:
        plots.plot_sweeps(beta_only, paper)
    assert "\n" not in str(error.value)
    with pytest.raises(plots.PlotError, match="missing column"):
        plots.plot_sweeps(_sweeps().drop(columns="value"), paper)


def _convergence(dataset="cifar10", seeds=(0, 1, 2)):
    rows = []
    for ipc in (10, 50):
        for method, top in (("DM", 48.0), ("dm_iid", 55.0)):  # labels are accepted as well as ids
            for seed in seeds:
                for iteration in (0, 1000, 2000, 4000):
                    acc = top * (1 - np.exp(-(iteration + 100) / 800)) + 0.5 * seed + (ipc == 50) * 5
                    rows.append({"dataset": dataset, "ipc": ipc, "method": method, "iteration": iteration, "seed": seed,
                                 "acc": acc})
    return pd.DataFrame(rows)


def test_convergence_lines_bands_and_paper_claim(paper):
    conv = _convergence()
    fig = plots.plot_convergence(conv, paper)
    ax10, ax50 = fig.axes[:2]
    grouped = conv.loc[(conv["ipc"] == 10) & (conv["method"] == "dm_iid")].groupby("iteration")["acc"]
    means, stds = grouped.mean(), grouped.std(ddof=0)
    line = _lines(ax10)["DM+IID"]
    np.testing.assert_allclose(line.get_ydata(), means.to_numpy())
    assert line.get_color() == plots.METHOD_COLORS["dm_iid"]
    bands = [c for c in ax10.collections if type(c).__name__ != "LineCollection"]
    assert len(bands) == 2  # one ± std band per method
    band_ys = np.concatenate([path.vertices[:, 1] for band in bands for path in band.get_paths()])
    for value in np.concatenate([(means - stds).to_numpy(), (means + stds).to_numpy()]):
        assert np.isclose(band_ys, value).any()
    assert _lines(ax10)["paper: peak before 2,000 it. (IPC 10)"].get_xdata()[0] == 2000
    assert _lines(ax50)["paper: peak at about 3,000 it. (IPC 50)"].get_xdata()[0] == 3000
    assert "mean ± std over 3 seeds (ddof 0)" in ax10.get_title()


def test_convergence_paper_claim_only_for_cifar10_and_no_band_for_one_seed(paper):
    fig = plots.plot_convergence(_convergence("svhn", seeds=(0,)), paper)
    for ax in fig.axes[:2]:
        assert not any(label.startswith("paper") for label in _lines(ax))
        assert len(ax.collections) == 0
        assert "1 seed, no error bars" in ax.get_title()


def test_convergence_iteration_ticks_are_whole_numbers(paper):
    conv = _convergence("digits", seeds=(0, 1)).query("iteration <= 1000").assign(iteration=lambda df: df["iteration"] // 250)
    fig = plots.plot_convergence(conv, paper)  # iterations 0 and 4: matplotlib's default puts ticks at 0.5, 1.5, ...
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)


def _runs(dataset="cifar10", whole=True):
    rows = []
    for method, offset in (("random", -15.0), ("kcenter", -8.0), ("dm", -3.0), ("idm_iid", 3.0)):
        for ipc in (1, 10, 50):
            for seed in ((0,) if method == "kcenter" else (0, 1, 2)):
                rows.append({"dataset": dataset, "ipc": ipc, "method": method, "arch": "ConvNet", "seed": seed,
                             "acc": 40.0 + 6.0 * np.log(ipc) + offset + 0.9 * seed})
    rows.append({"dataset": dataset, "ipc": 10, "method": "dm", "arch": "AlexNet", "seed": 0, "acc": 5.0})  # other arch
    if whole:
        for seed, acc in ((0, 83.0), (1, 84.0)):
            rows.append({"dataset": dataset, "ipc": 0, "method": "whole", "arch": "ConvNet", "seed": seed, "acc": acc})
    return pd.DataFrame(rows)


def test_compression_ours_paper_and_percent_of_whole(paper):
    runs = _runs()
    ipcs = [1, 10, 50, 100, 1000]
    fig = plots.plot_compression(runs, paper, "cifar10", ipcs)
    ax_acc, ax_rel = fig.axes[:2]
    convnet = runs.loc[runs["arch"] == "ConvNet"]
    dm = convnet.loc[convnet["method"] == "dm"].groupby("ipc")["acc"]
    acc_lines, rel_lines = _lines(ax_acc), _lines(ax_rel)
    np.testing.assert_allclose(acc_lines["DM (ours)"].get_ydata(), dm.mean().to_numpy())
    whole = 83.5
    np.testing.assert_allclose(rel_lines["DM (ours)"].get_ydata(), dm.mean().to_numpy() / whole * 100)
    # Error bars: DM, Random, IDM+IID (3 seeds each); K-Center has one seed and none.
    assert len(_error_bars(ax_acc)) == 9
    dm_bars = [bar for bar in _error_bars(ax_acc) if np.isclose(bar[1] + bar[2], 2 * dm.mean().loc[bar[0]])
               and np.isclose(bar[2] - bar[1], 2 * dm.std(ddof=0).loc[bar[0]])]
    assert len(dm_bars) == 3
    table7 = {row["label"]: row["acc"] for row in paper["table7"]["rows"]}
    for label, key in (("Ours (paper; IDM+IID)", "Ours"), ("DC (paper, quoted)", "DC"), ("K-Center (paper)", "K-Center")):
        expected = np.array([table7[key][ipc] for ipc in ipcs])
        np.testing.assert_allclose(acc_lines[label].get_xdata(), ipcs)
        np.testing.assert_allclose(acc_lines[label].get_ydata(), expected)
        np.testing.assert_allclose(rel_lines[label].get_ydata(), expected / 84.8 * 100)
    assert acc_lines["Ours (paper; IDM+IID)"].get_color() == plots.METHOD_COLORS["idm_iid"]
    assert acc_lines["Whole dataset (paper)"].get_ydata()[0] == 84.8
    assert acc_lines["Whole dataset (ours, 2 seeds)"].get_ydata()[0] == whole
    assert list(ax_acc.get_xticks()) == ipcs and ax_acc.get_xscale() == "log"
    assert "AlexNet" not in " ".join(acc_lines)
    legend_labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "DC (paper, quoted)" in legend_labels and "IDM+IID (ours)" in legend_labels


def test_compression_shows_only_the_methods_run_at_the_largest_ipc(paper):
    extra = pd.DataFrame([{"dataset": "cifar10", "ipc": 10, "method": method, "arch": "ConvNet", "seed": 0, "acc": 50.0}
                          for method in ("herding", "dm_cc")])  # Table 1 / Table 6 runs at a small IPC only
    fig = plots.plot_compression(pd.concat([_runs(), extra], ignore_index=True), paper, "cifar10", [1, 10, 50])
    ours = {label for label in _lines(fig.axes[0]) if label.endswith("(ours)")}
    assert ours == {"Random (ours)", "K-Center (ours)", "DM (ours)", "IDM+IID (ours)"}


def test_compression_without_table7_or_whole_run(paper):
    fig = plots.plot_compression(_runs("svhn", whole=False), paper, "svhn", [1, 10, 50])
    ax_acc, ax_rel = fig.axes[:2]
    assert not any("(paper" in label for label in _lines(ax_acc) if not label.startswith("Whole dataset"))
    assert _lines(ax_acc)["Whole dataset (paper)"].get_ydata()[0] == 95.4  # Table 1's SVHN whole dataset
    assert "ours: no whole-dataset run" in ax_rel.get_title()
    assert len(ax_rel.get_lines()) == 0 and "paper: no Table 7 numbers" in ax_rel.get_title()
    assert any("no whole-dataset accuracy" in text.get_text() for text in ax_rel.texts)
    with pytest.raises(plots.PlotError, match="no ConvNet runs of cifar100"):
        plots.plot_compression(_runs(), paper, "cifar100", [10])


def test_continual_averages_models_then_orders():
    rows = []
    for steps in (2, 5):
        for method in ("dm", "dm_iid"):
            for order in range(3):
                for step in range(1, steps + 1):
                    for model_seed in range(2):
                        acc = 70.0 - 5.0 * step + 2.0 * order + 1.5 * model_seed + (3.0 if method == "dm_iid" else 0.0)
                        rows.append({"dataset": "cifar100", "steps": steps, "order": order, "method": method, "step": step,
                                     "classes_seen": step * 100 // steps, "model_seed": model_seed,
                                     "acc": acc + (order == 1) * model_seed})
    cl = pd.DataFrame(rows)
    fig = plots.plot_continual(cl, {"cifar100": "CIFAR-100 (test)"})
    curves = plots.continual_curves(cl)  # the points drawn, as figure7_continual.csv holds them
    assert len(curves) == 2 * (2 + 5) and list(curves.columns[:4]) == ["dataset", "steps", "method", "classes_seen"]
    ax2 = fig.axes[0]
    part = cl.loc[(cl["steps"] == 2) & (cl["method"] == "dm_iid")]
    per_order = part.groupby(["classes_seen", "order"])["acc"].mean().groupby("classes_seen")
    line = _lines(ax2)["DM+IID"]
    np.testing.assert_allclose(line.get_xdata(), [50, 100])
    np.testing.assert_allclose(line.get_ydata(), per_order.mean().to_numpy())
    drawn = curves.loc[(curves["steps"] == 2) & (curves["method"] == "dm_iid")]
    np.testing.assert_allclose(drawn["mean"], line.get_ydata())
    halves = sorted((high - low) / 2 for x, low, high in _error_bars(ax2) if np.isclose(x, 50.0) or np.isclose(x, 100.0))
    expected = sorted(np.concatenate([per_order.std(ddof=0).to_numpy()] * 2))  # DM and DM+IID share the spreads
    np.testing.assert_allclose(halves, expected)
    assert "CIFAR-100 (test), 2 steps" in ax2.get_title() and "3 class orders (ddof 0)" in ax2.get_title()
    assert "no numbers published" in fig.get_suptitle()
    assert [ax.get_xlabel() for ax in fig.axes[:2]] == ["Classes seen"] * 2
    with pytest.raises(plots.PlotError, match="continual table: missing column"):
        plots.plot_continual(cl.drop(columns="model_seed"))


@pytest.mark.slow
def test_figures_save_byte_identical(tmp_path, paper):
    makers = {
        "sweeps": lambda: plots.plot_sweeps(_sweeps(), paper),
        "convergence": lambda: plots.plot_convergence(_convergence(), paper),
        "compression": lambda: plots.plot_compression(_runs(), paper, "cifar10", [1, 10, 50, 100]),
    }
    for name, make in makers.items():
        first = save_figure(make(), tmp_path / f"{name}-a")
        second = save_figure(make(), tmp_path / f"{name}-b")
        for path_a, path_b in zip(first, second):
            assert path_a.read_bytes() == path_b.read_bytes(), path_a.name


def test_constants_match_the_papers_text_claims(paper):
    claims = " ".join(paper["text_claims"])
    for spread in plots.PAPER_SWEEP_SPREADS.values():
        assert f"{spread:g} points" in claims
    assert "2,000 iterations" in claims and "about 3,000 at IPC 50" in claims
    assert "lambda_CC 0.05 and lambda_CM 0.01 at IPC 1 and 10" in claims
    assert "lambda_CC 0.003 and lambda_CM 0.01 at IPC 50" in claims
    assert set(plots.METHOD_COLORS) == set(METHOD_LABELS)


def test_figure_data_tables_hold_the_points_each_figure_draws(paper):
    """<figure>.csv (DVC plots) holds what the figure draws: the plotted lines' points, computed directly here."""
    conv = _convergence()
    curves = plots.convergence_curves(conv)
    fig = plots.plot_convergence(conv, paper)
    line = _lines(fig.axes[0])["DM+IID"]
    rows = curves.loc[(curves["ipc"] == 10) & (curves["method"] == "dm_iid")]
    np.testing.assert_allclose(rows["iteration"], line.get_xdata())
    np.testing.assert_allclose(rows["mean"], line.get_ydata())
    direct = conv.loc[(conv["ipc"] == 10) & (conv["method"] == "dm_iid")].groupby("iteration")["acc"]
    np.testing.assert_allclose(rows["std"], direct.std(ddof=0))
    assert list(rows["n"]) == [3] * 4 and list(curves.columns) == ["dataset", "ipc", "method", "iteration", "n", "mean", "std"]
    compression = plots.compression_curves(_runs(), "cifar10", [1, 10, 50])
    assert set(compression["method"]) == {"random", "kcenter", "dm", "idm_iid"}  # the AlexNet and whole runs stay out
    dm = compression.loc[compression["method"] == "dm"]
    np.testing.assert_allclose(dm["mean"], [40.0 + 6.0 * np.log(ipc) - 3.0 + 0.9 for ipc in (1, 10, 50)])
    sweeps = plots.sweep_curves(_sweeps())
    assert set(sweeps["parameter"]) == {"lambda_cc", "lambda_cm"} and (sweeps["n"] > 0).all()
