"""Tests of iid_distill.report: records -> runs table -> tables, summary and figures.

Golden files (DomainBed style): tests/golden/runs.csv is a small hand-made runs table and tests/golden/sweep_*.csv
small hand-made sweep tables; the report rendered from them must equal tests/golden/table{1..7}.{md,tex},
runs_summary.md and summary.json byte for byte. After an intended change to the renderer, regenerate them and
review the diff:

    UPDATE_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_report.py -k golden
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from iid_distill import cli, report
from iid_distill.names import MethodNameError
from iid_distill.report import ReportError, canonical_method

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
PAPER_YAML = REPO / "reports" / "paper_numbers.yaml"
TARGETS_YAML = Path(__file__).resolve().parents[2] / "shared" / "paper" / "targets.yaml"
DATA_LABELS = {"cifar10": "CIFAR-10 (JPEG copy)"}
GOLDEN_TABLES = [f"table{n}" for n in range(1, 8)] + ["table_hosts", "table_pools"]
GOLDEN_OUTPUTS = [f"{stem}.{suffix}" for stem in GOLDEN_TABLES for suffix in ("md", "tex")] + ["runs_summary.md", "summary.json", "metrics.json"]
GOLDEN_SWEEPS = [GOLDEN / "sweep_table5_beta.csv", GOLDEN / "sweep_digits_beta.csv", GOLDEN / "sweep_figure4_lambda_cc.csv"]


@pytest.fixture(scope="module")
def paper() -> dict:
    return report.load_paper_numbers(PAPER_YAML)


@pytest.fixture(scope="module")
def golden_runs() -> pd.DataFrame:
    return report.read_runs_table(GOLDEN / "runs.csv")


def evaluation_record(dataset="cifar10", ipc=10, method="dm_iid", seed=0, acc=55.0, arch="ConvNet", **extra) -> dict:
    """A record with the fields `evaluate.evaluate_synthetic_set` writes."""
    record = {
        "dataset": dataset, "ipc": ipc, "method": method, "synthetic_seed": 0, "synthetic_sha256": "ab" * 32,
        "arch": arch, "epochs": 1000, "train_size": 100, "test_size": 10000, "device": "cpu (2 threads)",
        "git_sha": "84a49cd", "params_hash": "0123456789abcdef", "eval_params": {"schedule": "paper", "epochs": 1000},
        "seed": seed, "acc": acc, "train_acc": 100.0, "train_loss": 0.01, "wall_s": 12.5, "seed_batching": "sequential",
    }
    record.update(extra)
    return record


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Golden files


def test_golden_report_files(tmp_path):
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path, DATA_LABELS, figures=False, sweeps=GOLDEN_SWEEPS)
    assert [path.name for path in written] == GOLDEN_OUTPUTS
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for name in GOLDEN_OUTPUTS:
            shutil.copyfile(tmp_path / name, GOLDEN / name)
    for name in GOLDEN_OUTPUTS:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), f"{name} differs from tests/golden/{name} (UPDATE_GOLDEN=1 to accept)"


def test_golden_runs_table_round_trips_byte_for_byte(tmp_path, golden_runs):
    report.write_runs_table(golden_runs, tmp_path / "runs.csv")
    assert (tmp_path / "runs.csv").read_bytes() == (GOLDEN / "runs.csv").read_bytes()
    # A hex params_hash that looks like a float (1234567890123e45) must stay text.
    assert "1234567890123e45" in set(golden_runs["params_hash"])


def test_main_report_cli_writes_the_golden_tables(tmp_path, capsys):
    code = cli.main(["report", "--runs", str(GOLDEN / "runs.csv"), "--out", str(tmp_path), "--paper", str(PAPER_YAML),
                               "--data-label", "cifar10=CIFAR-10 (JPEG copy)", "--no-figures"])
    assert code == 0
    assert (tmp_path / "table1.md").read_bytes() == (GOLDEN / "table1.md").read_bytes()
    assert str(tmp_path / "summary.json") in capsys.readouterr().out


def pipe_rows(markdown: str) -> list[list[str]]:
    """The stripped cells of every pipe-table line in ``markdown`` (header and body rows; separator lines skipped)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|") and not set(line.strip()) <= set("|-: ")]


def table_rows(table: report.RenderedTable, section: int = 0) -> dict[str, list[str]]:
    """Body rows of the ``section``-th table ("## " heading) of ``table.markdown``: first cell (label) -> the other cells."""
    return {row[0]: row[1:] for row in pipe_rows(table.markdown.split("\n## ")[section])[1:]}


def test_golden_tables_mark_quoted_rows_and_whole_dataset(golden_runs, paper):
    table1 = report.render_table1(golden_runs, paper, DATA_LABELS)
    lines = table_rows(table1)
    assert lines["DSA†"][4] == "52.1 ± 0.5"  # quoted: the paper's number only
    assert "† Quoted from the paper, not re-run." in table1.markdown
    assert "$^\\dagger$ Quoted from the paper, not re-run." in table1.latex
    assert lines["Whole dataset"][3] == "84.3 ± 0.2 (n=2) / 84.8 ± 0.1 / -0.5"
    assert "CIFAR-10 (JPEG copy)" in table1.markdown.splitlines()[2]
    assert "ddof=0" in table1.markdown and "ddof=0" in table1.latex
    # AlexNet runs of dm are not part of the ConvNet table.
    assert lines["DM"][4] == "48.2 ± 0.5 / 48.5 ± 0.6 / -0.3"


# ---------------------------------------------------------------------------------------------------------------
# Statistics and cells


def test_seed_statistics_match_numpy_with_ddof_0():
    accs = np.random.default_rng(0).uniform(40, 60, size=5)
    runs = pd.DataFrame([evaluation_record(seed=s, acc=float(a)) for s, a in enumerate(accs)])
    rows = pd.DataFrame([report.record_to_row(r, "test") for r in runs.to_dict(orient="records")])
    stats = report.seed_statistics(report.sort_runs(rows))
    assert stats.loc[0, "n"] == 5
    assert stats.loc[0, "mean"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert stats.loc[0, "std"] == pytest.approx(np.std(accs, ddof=0), abs=1e-12)
    assert stats.loc[0, "std"] != pytest.approx(np.std(accs, ddof=1), abs=1e-6)


def ablation_runs(cifar10_dm_accs, cifar10_dm_iid_accs) -> pd.DataFrame:
    records = [evaluation_record(method="dm", seed=s, acc=a) for s, a in enumerate(cifar10_dm_accs)]
    records += [evaluation_record(method="DM+IID", seed=s, acc=a) for s, a in enumerate(cifar10_dm_iid_accs)]
    return report.sort_runs(pd.DataFrame([report.record_to_row(r, "test") for r in records]))


def test_difference_is_ours_minus_paper_signed(paper):
    # Paper Table 6: Baseline CIFAR-10 48.5, + Both 55.1.
    table = report.render_table6(ablation_runs([49.0, 50.0, 51.0], [53.0, 54.0, 54.5]), paper)
    cells = table_rows(table)
    assert cells["Baseline"][0] == "50.0 ± 0.8 / 48.5 ± 0.2 / +1.5"
    assert cells["+ Both"][0] == "53.8 ± 0.6 / 55.1 ± 0.1 / -1.3"
    assert cells["+ Class centralization"] == ["- / 52.2 ± 0.3 / -", "- / 31.1 ± 0.2 / -"]
    by_key = {(c.method, c.dataset): c for c in table.cells}
    assert by_key[("dm", "cifar10")].diff == pytest.approx(np.mean([49.0, 50.0, 51.0]) - 48.5)
    assert "($+1.5$)" in table.latex and "($-1.3$)" in table.latex
    assert report.format_diff(48.46, 48.5) == "+0.0"  # never "-0.0"
    assert report.format_diff(48.44, 48.5) == "-0.1"


def test_table6_on_the_demo_dataset_shows_our_runs_without_paper_numbers(paper):
    records = [evaluation_record(dataset="digits", method=method, seed=s, acc=acc + s)
               for method, acc in (("dm", 90.0), ("dm_cc", 91.0), ("dm_cm", 92.0), ("DM+IID", 93.0)) for s in range(2)]
    runs = report.sort_runs(pd.DataFrame([report.record_to_row(r, "test") for r in records]))
    cells = table_rows(report.render_table6(runs, paper, datasets=["digits"]))
    # no published number in any cell: ours alone, with a legend that says so
    assert cells["Baseline"] == ["90.5 ± 0.5"] and cells["+ Both"] == ["93.5 ± 0.5"]
    assert cells["+ Covariance matching"] == ["92.5 ± 0.5"]
    assert "Each cell: ours (mean ± std over evaluation seeds; std with ddof=0, numpy's default as in the DM code). -: no run of ours." in \
        report.render_table6(runs, paper, datasets=["digits"]).markdown
    paper_columns = table_rows(report.render_table6(runs, paper))  # the paper's datasets: our digits runs are not there
    assert paper_columns["Baseline"] == ["- / 48.5 ± 0.2 / -", "- / 29.7 ± 0.1 / -"]


def test_paper_null_and_missing_runs_show_dash(paper, golden_runs):
    table1 = report.render_table1(golden_runs, paper)
    dm_iid = table_rows(table1)["DM+IID"]
    assert dm_iid[0] == "-"  # SVHN IPC 1: no run and no paper number
    assert dm_iid[1] == "- / 75.7 ± 0.3 / -"  # SVHN IPC 10: no run
    empty = report.render_table2(golden_runs.iloc[0:0], paper)
    assert "Seeds per cell: none run yet" in empty.markdown
    assert all(cell.mean is None for cell in empty.cells)


def test_rows_with_paper_null_but_a_run_show_ours(paper):
    runs = report.sort_runs(pd.DataFrame([report.record_to_row(evaluation_record(ipc=1, method="dm_iid", seed=s, acc=26.0 + s), "t") for s in range(2)]))
    table1 = report.render_table1(runs, paper)
    assert table_rows(table1)["DM+IID"][3] == "26.5 ± 0.5 / - / -"


# ---------------------------------------------------------------------------------------------------------------
# Records -> runs table


def test_collect_records_builds_sorted_tidy_rows(tmp_path):
    first = write_records(tmp_path / "a.json", [evaluation_record(method="DM+IID", seed=s, acc=50.0 + s) for s in (1, 0)])
    second = write_records(tmp_path / "b.json", [
        evaluation_record(method="Random", seed=0, acc=26.0),
        evaluation_record(method="whole", ipc=None, seed=0, acc=84.0, synthetic_seed=None),
    ])
    runs = report.collect_records([first, second])
    assert list(runs.columns) == list(report.RUN_COLUMNS)
    assert list(zip(runs["ipc"], runs["method"], runs["seed"])) == [(0, "whole", 0), (10, "random", 0), (10, "dm_iid", 0), (10, "dm_iid", 1)]
    assert runs["schedule"].unique().tolist() == ["paper"]
    assert runs.loc[runs["method"] == "whole", "synthetic_seed"].isna().all()
    path = report.write_runs_table(runs, tmp_path / "all_runs.csv")
    pd.testing.assert_frame_equal(report.read_runs_table(path), runs)


def test_duplicate_runs_are_rejected(tmp_path):
    first = write_records(tmp_path / "a.json", [evaluation_record(seed=0), evaluation_record(seed=1)])
    second = write_records(tmp_path / "b.json", [evaluation_record(method="DM+IID", seed=1, acc=60.0)])
    with pytest.raises(ReportError, match=r"cifar10 ipc 10 dm_iid ConvNet seed 1 in .*a\.json, .*b\.json"):
        report.collect_records([first, second])


def test_duplicate_rows_in_a_runs_table_are_rejected(tmp_path):
    text = (GOLDEN / "runs.csv").read_text().splitlines()
    (tmp_path / "runs.csv").write_text("\n".join(text + [text[3]]) + "\n")
    with pytest.raises(ReportError, match="share a .* key"):
        report.read_runs_table(tmp_path / "runs.csv")


def test_missing_seeds_fail_loudly(golden_runs):
    expected = [("cifar10", 10, "DM+IID", "ConvNet", seed) for seed in range(5)] + [("svhn", 1, "dm", "ConvNet", 0)]
    with pytest.raises(ReportError, match=r"INCOMPLETE RESULTS: 3 expected run\(s\) missing") as error:
        report.check_complete(golden_runs, expected)
    assert "cifar10 ipc 10 dm_iid ConvNet: seed(s) 3, 4" in str(error.value)
    assert "svhn ipc 1 dm ConvNet: seed(s) 0" in str(error.value)
    report.check_complete(golden_runs, [("cifar10", 10, "dm_iid", "ConvNet", seed) for seed in range(3)])


def test_main_aggregate_expect_seeds(tmp_path, capsys):
    records = write_records(tmp_path / "r.json", [evaluation_record(seed=s, acc=50.0 + s) for s in range(3)])
    out = tmp_path / "all_runs.csv"
    assert cli.main(["aggregate", "--records", str(records), "--out", str(out), "--expect-seeds", "5"]) == 2
    assert "seed(s) 3, 4" in capsys.readouterr().err
    assert not out.exists()  # nothing is written when seeds are missing
    assert cli.main(["aggregate", "--records", str(records), "--out", str(out), "--expect-seeds", "3"]) == 0
    assert report.read_runs_table(out)["seed"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"acc": None}, "acc = None"),
        ({"acc": 140.0}, r"percentage in \[0, 100\]"),
        ({"method": "DSA"}, "unknown method 'DSA'"),
        ({"ipc": 2.5}, "ipc = 2.5"),
    ],
)
def test_bad_records_name_the_file_and_field(tmp_path, bad, message):
    path = write_records(tmp_path / "r.json", [evaluation_record(**bad)])
    with pytest.raises(ReportError, match=message) as error:
        report.collect_records([path])
    assert "r.json record 0" in str(error.value)


def test_records_missing_fields_and_files_are_user_errors(tmp_path):
    record = evaluation_record()
    del record["params_hash"]
    with pytest.raises(ReportError, match="missing field\\(s\\) params_hash"):
        report.collect_records([write_records(tmp_path / "r.json", [record])])
    with pytest.raises(ReportError, match="does not exist"):
        report.collect_records([tmp_path / "absent.json"])
    (tmp_path / "runs.csv").write_text("dataset,ipc,method\ncifar10,10,dm\n")
    with pytest.raises(ReportError, match="missing column"):
        report.read_runs_table(tmp_path / "runs.csv")


@pytest.mark.parametrize(
    "name, method",
    [("DM+IID", "dm_iid"), ("dm_iid", "dm_iid"), ("IDM+IID", "idm_iid"), ("random", "random"), ("Random", "random"),
     ("K-Center", "kcenter"), ("kcenter", "kcenter"), ("DM+CC", "dm_cc"), ("idm_cm", "idm_cm"), ("Whole dataset", "whole"),
     ("whole", "whole"), ("DM+Ours", "dm_iid"), (" Forgetting ", "forgetting")],
)
def test_canonical_method(name, method):
    assert canonical_method(name) == method


@pytest.mark.parametrize("name", ["DSA", "IID", "", None, 3])
def test_canonical_method_rejects_unknown_names(name):
    with pytest.raises(MethodNameError):  # a UserError: one line on the command line
        canonical_method(name)


# ---------------------------------------------------------------------------------------------------------------
# Paper numbers


def _pairs(values):
    return [None if value is None else [float(value[0]), float(value[1])] for value in values]


def test_paper_numbers_match_targets(paper):
    """Every number of shared/paper/targets.yaml is in reports/paper_numbers.yaml, and nothing else is."""
    if not TARGETS_YAML.exists():
        pytest.skip(f"{TARGETS_YAML} is not present (it is in CI)")
    targets = yaml.safe_load(TARGETS_YAML.read_text())
    assert paper["source"] == targets["source"]

    for table_id, datasets in (("table1", ["svhn", "cifar10", "cifar100"]), ("table2", ["tinyimagenet"])):
        target, ours = targets[table_id], paper[table_id]
        assert ours["datasets"] == datasets and ours["ipcs"] == [1, 10, 50]
        rows = target["rows"] if table_id == "table1" else {label: {"tinyimagenet": values} for label, values in target["rows"].items()}
        whole = target["whole_dataset"] if table_id == "table1" else {"tinyimagenet": target["whole_dataset"]}
        assert [row["label"] for row in ours["rows"]] == list(rows)
        for row in ours["rows"]:
            assert sorted(row["acc"]) == sorted(datasets)
            for dataset in datasets:
                assert list(row["acc"][dataset]) == [1, 10, 50]
                assert _pairs(row["acc"][dataset].values()) == _pairs(rows[row["label"]][dataset]), (table_id, row["label"], dataset)
        assert {d: _pairs([p])[0] for d, p in ours["whole_dataset"].items()} == {d: _pairs([p])[0] for d, p in whole.items()}

    for table_id in ("table3", "table4"):
        target, ours = targets[table_id], paper[table_id]
        assert ours["archs"] == target["columns"]
        assert [row["label"] for row in ours["rows"]] == list(target["rows"])
        for row in ours["rows"]:
            assert list(row["acc"]) == target["columns"]
            assert _pairs(row["acc"].values()) == _pairs(target["rows"][row["label"]])

    assert [row["beta"] for row in paper["table5"]["rows"]] == targets["table5"]["beta"]
    assert [row["acc"] for row in paper["table5"]["rows"]] == _pairs(targets["table5"]["acc"])

    assert [row["label"] for row in paper["table6"]["rows"]] == list(targets["table6"]["rows"])
    for row in paper["table6"]["rows"]:
        assert {d: row["acc"][d][10] for d in row["acc"]} == targets["table6"]["rows"][row["label"]]
    assert [row["method"] for row in paper["table6"]["rows"]] == ["dm", "dm_cc", "dm_cm", "dm_iid"]

    assert paper["table7"]["ipcs"] == targets["table7"]["ipc"]
    assert {row["label"]: list(row["acc"].values()) for row in paper["table7"]["rows"]} == targets["table7"]["columns"]
    assert all(list(row["acc"]) == targets["table7"]["ipc"] for row in paper["table7"]["rows"])
    assert paper["table7"]["note"] == targets["table7"]["note"]
    assert paper["text_claims"] == targets["text_claims"]


def test_paper_rows_are_labelled_quoted_or_rerun(paper):
    quoted = {"DD", "LD", "DC", "DSA", "KIP", "CAFE", "DCC", "DataDAM"}
    assert set(paper["quoted_methods"]) == quoted
    for table_id in ("table1", "table2", "table3", "table4", "table6", "table7"):
        for row in paper[table_id]["rows"]:
            assert row["quoted"] == (row["label"] in quoted), (table_id, row["label"])
            if row["quoted"]:
                assert row["method"] is None
            else:
                assert canonical_method(row["method"]) == row["method"]


# ---------------------------------------------------------------------------------------------------------------
# Figures


def test_figures_are_byte_stable(tmp_path, golden_runs, paper):
    first = report.save_figure(report.plot_method_bars(golden_runs, "cifar10", 10, paper, data_labels=DATA_LABELS), tmp_path / "first")
    second = report.save_figure(report.plot_method_bars(golden_runs, "cifar10", 10, paper, data_labels=DATA_LABELS), tmp_path / "second")
    assert [path.name for path in first] == ["first.png", "first.pdf"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert first[0].read_bytes().startswith(b"\x89PNG") and first[1].read_bytes().startswith(b"%PDF")
    assert b"CreationDate" not in first[1].read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_method_bar_data_uses_ddof_0_and_paper_order(golden_runs, paper):
    data = report.method_bar_data(golden_runs, "cifar10", 10, paper)
    assert list(dict.fromkeys(data["method"])) == ["Random", "Herding", "K-Center", "Forgetting", "DM", "DM+IID", "IDM", "IDM+IID"]
    ours = data.loc[(data["source"] == "Ours") & (data["method"] == "DM+IID")].iloc[0]
    assert ours["std"] == pytest.approx(np.std([54.0, 55.0, 56.5], ddof=0))
    assert np.isnan(data.loc[(data["source"] == "Ours") & (data["method"] == "Herding"), "mean"]).all()


def test_figures_are_drawn_for_settings_with_runs(tmp_path, golden_runs, paper):
    assert report.figure_settings(golden_runs, paper) == [("cifar10", 1), ("cifar10", 10), ("cifar100", 10), ("tinyimagenet", 1)]


# ---------------------------------------------------------------------------------------------------------------
# Issue 5: sweep tables, convergence curves, continual records; Tables 3, 4, 5, 7; figure wiring


def runs_from(records: list[dict]) -> pd.DataFrame:
    return report.sort_runs(pd.DataFrame([report.record_to_row(r, "test") for r in records]))




def sweep_record(value, seed, acc, parameter="cc_beta", method="dm_cc", **extra) -> dict:
    return evaluation_record(method=method, seed=seed, acc=acc, synthetic_params={parameter: value, "lambda_cm": 0.0}, **extra)


def one_line_error(call, match: str) -> str:
    with pytest.raises(ReportError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_golden_tables_3_5_7_read_well(golden_runs, paper):
    table3 = table_rows(report.render_table3(golden_runs, paper, data_labels=DATA_LABELS))
    assert list(table3) == ["DM", "DSA†", "KIP†", "IDM", "IDM+IID", "DM+IID"]  # ConvNet-only methods (the ablation) are not listed
    assert table3["IDM+IID"][1] == "56.3 ± 0.4 (n=2) / 56.8 ± 0.02 / -0.5"  # the paper's 0.02 is not printed as 0.0
    drops = table_rows(report.render_table3(golden_runs, paper, data_labels=DATA_LABELS), section=1)
    conv, alex = (float(table3["DM"][column].split(" ")[0]) for column in (0, 1))
    assert drops["DM"][0] == f"{conv - alex:.1f} / {48.9 - 38.8:.1f}"  # every architecture's drop, ours / paper
    assert drops["KIP†"] == [f"{47.6 - 24.4:.1f}", f"{47.6 - 42.1:.1f}", f"{47.6 - 36.8:.1f}"]  # quoted: the paper's only
    table7 = report.render_table7(golden_runs, paper, data_labels=DATA_LABELS)
    header = pipe_rows(table7.markdown)[0]
    assert header[3:5] == ["DC†", "DSA†"] and header[-2:] == ["DM+IID", "IDM+IID (paper: Ours)"]
    rows = table_rows(table7)
    assert rows["IPC 200"][-1] == "74.0 ± 0.2 (n=2) / 74.15 / -0.1"  # our IDM+IID against the paper's Ours
    assert rows["IPC 100"][-2] == "67.9 ± 0.2 (n=2) / - / -"  # DM+IID: never paired with the paper's Ours
    assert rows["IPC 10"][2] == "50.99"  # quoted: the paper's number only


def test_sweep_table_round_trips(tmp_path):
    for golden in GOLDEN_SWEEPS:
        sweeps = report.read_sweep_tables([golden])
        report.write_sweep_table(sweeps, tmp_path / golden.name)
        assert (tmp_path / golden.name).read_bytes() == golden.read_bytes()
    records = [sweep_record(beta, seed, 50.0 + seed - beta) for beta in (1.0, 0.1, 2.0) for seed in (1, 0)]
    path = write_records(tmp_path / "r.json", records)
    sweeps = report.collect_sweep_records([path], "table5_beta", "cc_beta")
    assert list(sweeps.columns) == list(report.SWEEP_COLUMNS)
    assert list(zip(sweeps["value"], sweeps["seed"])) == [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]
    assert set(sweeps["method"]) == {"dm_cc"} and set(sweeps["records_file"]) == {str(path)}
    out = report.write_sweep_table(sweeps, tmp_path / "sweep.csv")
    pd.testing.assert_frame_equal(report.read_sweep_tables([out]), sweeps)
    combined = report.read_sweep_tables([out] + GOLDEN_SWEEPS[2:])
    assert sorted(set(combined["sweep"])) == ["figure4_lambda_cc", "table5_beta"]
    assert report.read_sweep_tables([]).empty


def test_collect_sweep_records_refuses_bad_records(tmp_path):
    old = evaluation_record(method="dm_cc")  # evaluated before synthetic_params were recorded
    message = one_line_error(lambda: report.collect_sweep_records([write_records(tmp_path / "old.json", [old])], "table5_beta", "cc_beta"),
                             "old.json record 0: no synthetic_params")
    assert "re-run `iid-distill evaluate`" in message
    other = write_records(tmp_path / "other.json", [sweep_record(0.5, 0, 50.0, parameter="lambda_cc")])
    one_line_error(lambda: report.collect_sweep_records([other], "s", "cc_beta"), "other.json record 0: synthetic_params has no 'cc_beta'")
    first = write_records(tmp_path / "a.json", [sweep_record(0.5, 0, 50.0)])
    second = write_records(tmp_path / "b.json", [sweep_record(0.5, 0, 51.0)])
    one_line_error(lambda: report.collect_sweep_records([first, second], "table5_beta", "cc_beta"),
                   r"sweep table5_beta cc_beta=0.5 ConvNet seed 0 in .*a\.json, .*b\.json")
    mixed = write_records(tmp_path / "mixed.json", [sweep_record(0.5, 0, 50.0), sweep_record(0.7, 0, 50.0, ipc=50)])
    one_line_error(lambda: report.collect_sweep_records([mixed], "table5_beta", "cc_beta"), "mixes cc_beta on cifar10 ipc 10 dm_cc; cc_beta on cifar10 ipc 50")
    one_line_error(lambda: report.collect_sweep_records([first], "table5_beta", "lambda_cc"), "pass --parameter cc_beta")
    one_line_error(lambda: report.collect_sweep_records([first], "bad name", "cc_beta"), "--name 'bad name'")


def test_read_sweep_tables_refuses_bad_files(tmp_path):
    one_line_error(lambda: report.read_sweep_tables([tmp_path / "absent.csv"]), "does not exist; build it with `iid-distill aggregate-sweep")
    (tmp_path / "garbled.csv").write_text('sweep,parameter\n"unclosed\n')
    one_line_error(lambda: report.read_sweep_tables([tmp_path / "garbled.csv"]), "garbled.csv")
    lines = GOLDEN_SWEEPS[0].read_text().splitlines()
    (tmp_path / "text.csv").write_text("\n".join([lines[0], lines[1].replace(",0.0,", ",high,", 1)]) + "\n")
    one_line_error(lambda: report.read_sweep_tables([tmp_path / "text.csv"]), "text.csv line 2: value = 'high' is not a finite number")
    one_line_error(lambda: report.read_sweep_tables([GOLDEN_SWEEPS[0], GOLDEN_SWEEPS[0]]), "share a \\(sweep, value, arch, seed\\) key")


def test_table5_pairs_the_paper_only_with_its_setting(paper):
    sweeps = report.read_sweep_tables(GOLDEN_SWEEPS)
    table = report.render_table5(sweeps, paper, DATA_LABELS)
    rows = table_rows(table)
    assert list(rows) == ["0.0", "0.1", "0.5", "0.7", "0.9", "1.0", "1.1", "1.2", "1.3", "1.5", "2.0"]
    assert rows["0.0"] == ["52.3 ± 0.3 / 52.2 ± 0.2 / +0.1", "89.8 ± 0.3 / - / -"]
    assert rows["0.5"] == ["52.1 ± 0.2 / - / -", "-"]  # a beta the paper did not run
    assert rows["1.1"] == ["- / 49.9 ± 0.2 / -", "-"]
    cell = next(c for c in table.cells if c.dataset == "cifar10" and c.label == "1.0")
    assert cell.mean == pytest.approx(np.mean([51.0, 50.6])) and cell.std == pytest.approx(np.std([51.0, 50.6]))
    assert cell.diff == pytest.approx(cell.mean - 51.1) and cell.column == "cc_beta"
    twice = pd.concat([sweeps, sweeps.loc[sweeps["sweep"] == "table5_beta"].assign(sweep="table5_beta_again")], ignore_index=True)
    one_line_error(lambda: report.render_table5(twice, paper), "sweeps table5_beta, table5_beta_again both hold cifar10 ipc 10 dm_cc_margin cc_beta=0.0")
    empty = table_rows(report.render_table5(report.read_sweep_tables([]), paper))
    assert len(empty) == 10 and all(len(cells) == 1 for cells in empty.values())
    assert table.title.startswith("beta sweep of class centralization, CIFAR-10 IPC 10") and table.title.endswith("(paper Table 5)")
    digits_only = report.render_table5(sweeps.loc[sweeps["dataset"] == "digits"], paper)
    assert digits_only.title == "beta sweep of class centralization, digits IPC 10, DM+CC (margin) (as paper Table 5)"  # not "CIFAR-10"


def test_cross_arch_drop_equals_direct_computation(paper):
    rng = np.random.default_rng(3)
    accs = {arch: rng.uniform(30, 60, size=3) for arch in ("ConvNet", "AlexNet", "VGG11", "ResNet18", "MLP")}
    runs = runs_from([evaluation_record(ipc=50, method="idm_iid", arch=arch, seed=s, acc=float(a))
                      for arch, values in accs.items() for s, a in enumerate(values)])
    table = report.render_table4(runs, paper)
    means = {arch: np.mean(values) for arch, values in accs.items()}
    worst = min((a for a in means if a != "ConvNet"), key=means.get)
    drop = next(d for d in table.extra["drops"] if d["method"] == "idm_iid")
    assert drop["ours_drop"] == pytest.approx(means["ConvNet"] - means[worst]) and drop["ours_worst_arch"] == worst
    assert drop["paper_drop"] == pytest.approx(69.0 - 67.3) and drop["paper_worst_arch"] == "AlexNet"  # the text's "at most 1.7"
    assert table.extra["archs"] == ["ConvNet", "AlexNet", "VGG11", "ResNet18", "MLP"]  # any other arch run is a column
    assert table_rows(table)["IDM+IID"][-1].startswith(f"{means['ConvNet'] - means[worst]:.1f} ({worst}) / 1.7 (AlexNet) / ")
    assert report.cross_arch_drop({"ConvNet": 50.0}) is None and report.cross_arch_drop({"AlexNet": 40.0}) is None
    assert report.cross_arch_drop({"ConvNet": 50.0, "VGG11": 52.0, "AlexNet": 52.0}) == (-2.0, "AlexNet")


def test_cross_arch_tables_on_another_dataset_have_no_paper_numbers(paper):
    runs = runs_from([evaluation_record(dataset="cifar100", method="dm", arch=arch, seed=0, acc=acc) for arch, acc in (("ConvNet", 30.0), ("VGG11", 25.0))])
    table = report.render_table3(runs, paper, dataset="cifar100")
    rows = table_rows(table)
    assert list(rows) == ["DM", "IDM", "IDM+IID"]  # quoted rows only beside the paper's CIFAR-10 numbers
    assert rows["DM"] == ["30.0 ± 0.0 / - / -", "-", "25.0 ± 0.0 / - / -", "-", "5.0 (VGG11) / - / -"]
    assert all(cell.paper_mean is None for cell in table.cells)
    assert "no paper numbers" in table.header and "CIFAR-100 IPC 10" in table.title


def test_table7_percent_of_whole_and_rows(paper):
    records = [evaluation_record(method="whole", ipc=None, seed=s, acc=a, synthetic_seed=None) for s, a in enumerate((84.0, 85.0))]
    records += [evaluation_record(ipc=ipc, method=m, seed=s, acc=a) for ipc, m, accs in
                ((400, "dm", (72.0, 73.0)), (400, "idm_iid", (76.0, 77.0)), (30, "dm_iid", (60.0, 61.0)), (400, "random", (70.0,)))
                for s, a in enumerate(accs)]
    runs = runs_from(records)
    table = report.render_table7(runs, paper)
    assert table.extra["ipcs"] == [1, 10, 30, 50, 100, 200, 400, 600, 800, 1000]  # the paper's IPCs plus the one run
    percents = {p["label"]: p for p in table.extra["percent_of_whole"]}
    assert {p["ipc"] for p in percents.values()} == {400}  # the largest IPC with a run of ours
    assert percents["DM"]["ours"] == pytest.approx(100 * 72.5 / 84.5)
    assert percents["DM"]["paper"] == pytest.approx(100 * 72.61 / 84.8)
    assert percents["IDM+IID"]["paper"] == pytest.approx(100 * 76.35 / 84.8)
    assert percents["DM+IID"]["paper"] is None and percents["DSA"]["ours"] is None
    rows = table_rows(table)
    assert rows["% of whole dataset (IPC 400)"][4] == f"{100 * 72.5 / 84.5:.1f} / {100 * 72.61 / 84.8:.1f} / {100 * 72.5 / 84.5 - 100 * 72.61 / 84.8:+.1f}"
    assert rows["Whole dataset"][0] == "84.5 ± 0.5 / 84.8 ± 0.1 / -0.3"
    assert rows["IPC 30"] == ["-", "-", "-", "-", "-", "60.5 ± 0.5 / - / -", "-"]
    chosen = report.render_table7(runs, paper, ipcs=[400, 10])
    assert chosen.extra["ipcs"] == [10, 400] and "IPC 1" not in table_rows(chosen)
    nothing = report.render_table7(runs.iloc[0:0], paper)
    assert nothing.extra["percent_of_whole"][0]["ipc"] == 1000 and "Seeds per cell: none run yet" in nothing.markdown
    other = table_rows(report.render_table7(runs.assign(dataset="svhn"), paper, dataset="svhn"))
    assert "DC†" not in report.render_table7(runs, paper, dataset="svhn").markdown
    assert other["Whole dataset"][0] == "84.5 ± 0.5 / 95.4 ± 0.2 / -10.9" and other["IPC 400"][2] == "72.5 ± 0.5 / - / -"
    one_line_error(lambda: report.table7_ipcs(runs, paper, ipcs=[0, 10]), "--compression-ipcs")


def write_convergence(folder: Path, stem: str, method_id: str, label: str, rows: list[tuple[int, int, float]], ipc: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps({"dataset": "cifar10", "ipc": ipc, "method": label,
                                                     "params": {"provenance": {"method_id": method_id}}}))
    path = folder / f"{stem}.eval.csv"
    path.write_text("iteration,seed,acc\n" + "".join(f"{i},{s},{a}\n" for i, s, a in rows))
    return path


def test_read_convergence(tmp_path):
    dm_iid = write_convergence(tmp_path / "a", "set", "dm_iid", "DM+IID", [(0, 0, 30.0), (0, 1, 31.0), (500, 0, 50.5), (500, 1, 51.0)])
    dm = write_convergence(tmp_path / "b", "set", "dm", "DM", [(500, 0, 45.0), (0, 0, 28.0)], ipc=50)
    conv = report.read_convergence([dm_iid, dm])
    assert list(conv.columns) == list(report.CONVERGENCE_COLUMNS)
    assert list(zip(conv["ipc"], conv["method"], conv["iteration"], conv["seed"])) == [
        (10, "dm_iid", 0, 0), (10, "dm_iid", 0, 1), (10, "dm_iid", 500, 0), (10, "dm_iid", 500, 1), (50, "dm", 0, 0), (50, "dm", 500, 0)]
    assert conv["acc"].tolist()[-1] == 45.0 and str(conv["iteration"].dtype) == "int64"
    (tmp_path / "a" / "set.json").unlink()
    one_line_error(lambda: report.read_convergence([dm_iid]), "distillation record .*set.json does not exist; run `iid-distill distill --eval-every")
    one_line_error(lambda: report.read_convergence([tmp_path / "b" / "set.csv"]), "expected a <stem>.eval.csv")
    dm.write_text("iteration,seed,acc\n500,0,abc\n")
    one_line_error(lambda: report.read_convergence([dm]), "line 2: acc = 'abc' is not a finite number")
    dm.write_text("iteration,acc\n500,40\n")
    one_line_error(lambda: report.read_convergence([dm]), "missing column\\(s\\) seed")
    again = write_convergence(tmp_path / "c", "set", "dm", "DM", [(500, 0, 46.0)], ipc=50)
    dm.write_text("iteration,seed,acc\n500,0,45.0\n")
    one_line_error(lambda: report.read_convergence([dm, again]), r"share a .* key, e\.g\. dataset cifar10 ipc 50 method dm iteration 500 seed 0 in .*b/set\.eval\.csv, .*c/set\.eval\.csv")


def continual_record(method="dm_iid", steps=2, order=0, accs=((1, 20, 0, 41.0), (1, 20, 1, 43.0), (2, 40, 0, 35.0), (2, 40, 1, 36.0))) -> dict:
    return {"kind": "continual", "dataset": "cifar100", "method": method, "method_label": report.method_label(method), "steps": steps,
            "order": order, "class_order": list(range(40)), "ipc": 20, "models_per_step": 2, "arch": "ConvNet", "eval_params": {},
            "distill_params": None, "git_sha": "84a49cd", "device": "cpu", "wall_s": 1.0,
            "records": [{"step": step, "new_classes": [], "classes_seen": seen, "model_seed": seed, "acc": acc} for step, seen, seed, acc in accs]}


def test_read_continual(tmp_path):
    paths = [tmp_path / "iid.json", tmp_path / "dm.json", tmp_path / "iid1.json"]
    for path, record in zip(paths, (continual_record(), continual_record(method="DM"), continual_record(order=1))):
        path.write_text(json.dumps(record))
    cl = report.read_continual(paths)
    assert list(cl.columns) == list(report.CONTINUAL_COLUMNS) and len(cl) == 12
    assert list(dict.fromkeys(zip(cl["method"], cl["order"]))) == [("dm", 0), ("dm_iid", 0), ("dm_iid", 1)]
    assert cl.loc[(cl["method"] == "dm_iid") & (cl["order"] == 0) & (cl["step"] == 2), "classes_seen"].tolist() == [40, 40]
    bad = tmp_path / "bad.json"
    for record, match in ((continual_record(accs=((3, 60, 0, 30.0),)), r"records\[0\]: step = 3, expected 1..2"),
                          ({**continual_record(), "kind": "other"}, "kind 'continual'"),
                          (continual_record(accs=((1, 20, 0, 130.0),)), "acc = 130.0")):
        bad.write_text(json.dumps(record))
        one_line_error(lambda: report.read_continual([bad]), match)
    bad.write_text("{not json")
    one_line_error(lambda: report.read_continual([bad]), "bad.json is not valid JSON")
    one_line_error(lambda: report.read_continual([paths[0], paths[0]]), "share a .* key")


def test_report_writes_new_figures_through_plots(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def fake(name):
        def plot(*args, **kwargs):
            calls.append((name, args, kwargs))
            fig = report.figures._new_figure(1.0, 1.0)
            fig.add_subplot().plot([0, 1], [0, 1])
            return fig
        return plot

    plots = types.ModuleType("iid_distill.report.plots")
    for name in ("plot_pools", "plot_sweeps", "plot_convergence", "plot_compression", "plot_continual"):
        setattr(plots, name, fake(name))
    for name in ("sweep_curves", "convergence_curves", "compression_curves", "continual_curves"):
        setattr(plots, name, lambda *args, name=name: pd.DataFrame({"x": [1], "mean": [2.0], "curve": [name]}))
    monkeypatch.setitem(sys.modules, "iid_distill.report.plots", plots)
    monkeypatch.setattr(report, "plots", plots, raising=False)
    monkeypatch.setattr(report.render, "figure_settings", lambda runs, paper: [])  # the bar figures have their own tests
    conv = write_convergence(tmp_path / "conv", "set", "dm_iid", "DM+IID", [(0, 0, 30.0), (100, 0, 40.0)])
    (tmp_path / "cl.json").write_text(json.dumps(continual_record()))
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path / "out", DATA_LABELS, sweeps=GOLDEN_SWEEPS,
                                   convergence=[conv], continual=[tmp_path / "cl.json"])
    names = ["figure4_lambda", "figure5_convergence", "figure6_compression", "figure7_continual"]
    # the pool study's figure first (the golden runs used CC pools), then the registered ones
    assert [name for name, _, _ in calls] == ["plot_pools", "plot_sweeps", "plot_convergence", "plot_compression", "plot_continual"]
    assert [path.name for path in written[-12:]] == [f"{name}.{suffix}" for name in names for suffix in ("png", "pdf", "csv")]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["figures"] == ["figure_pools.png", "figure_pools.pdf", "figure_pools.csv"] + [path.name for path in written[-12:]]
    assert (tmp_path / "out" / "figure5_convergence.csv").read_text() == "x,mean,curve\n1,2,convergence_curves\n"
    assert [entry["file"] for entry in summary["sweep_tables"]] == [path.name for path in GOLDEN_SWEEPS]
    assert [entry["file"] for entry in summary["continual_files"]] == ["cl.json"]
    assert set(calls[1][1][0]["parameter"]) == {"lambda_cc"}  # Figure 4 gets the lambda sweeps only
    assert calls[3][1][2:] == ("cifar10", [1, 10, 50, 100, 200, 400, 600, 800, 1000])
    assert calls[3][2] == {"data_labels": DATA_LABELS} and calls[4][2] == {"data_labels": DATA_LABELS}
    calls.clear()  # without their inputs (and no run above IPC 50 of the compression dataset) no registered figure is drawn
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path / "out2", compression_dataset="cifar100")
    assert [name for name, _, _ in calls] == ["plot_pools"]
    assert [path.name for path in written if path.suffix in (".png", ".pdf")] == ["figure_pools.png", "figure_pools.pdf"]


def test_summary_names_inputs_of_the_same_file_name_apart(tmp_path):
    paths = []
    for order in (0, 1):  # the workflow's continual/<dataset>/steps2/order<k>/dm.json
        path = tmp_path / "steps2" / f"order{order}" / "dm.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(continual_record("dm", order=order)))
        paths.append(path)
    report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path / "out", DATA_LABELS, figures=False, continual=paths)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [entry["file"] for entry in summary["continual_files"]] == ["order0/dm.json", "order1/dm.json"]


def test_compression_figure_wanted(golden_runs, paper):
    assert report.compression_figure_wanted(golden_runs, paper, "cifar10", None)  # runs at IPC 100 and 200
    assert not report.compression_figure_wanted(golden_runs, paper, "cifar100", None)  # IPC 10 only
    assert report.compression_figure_wanted(golden_runs, paper, "cifar100", [10])
    assert not report.compression_figure_wanted(golden_runs, paper, "cifar100", [50])


def test_report_and_sweep_cli_arguments(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(
        ["report", "--runs", "r.csv", "--out", "o", "--sweeps", "a.csv", "b.csv", "--convergence", "c.eval.csv", "--continual", "d.json",
         "--cross-arch-dataset", "cifar100", "--compression-dataset", "svhn", "--compression-ipcs", "100", "10"])
    assert (args.sweeps, args.convergence, args.continual) == (["a.csv", "b.csv"], ["c.eval.csv"], ["d.json"])
    assert (args.cross_arch_dataset, args.compression_dataset, args.compression_ipcs) == ("cifar100", "svhn", [100, 10])
    defaults = parser.parse_args(["report", "--runs", "r.csv", "--out", "o"])
    assert (defaults.sweeps, defaults.compression_ipcs, defaults.cross_arch_dataset) == ([], None, "cifar10")
    records = write_records(tmp_path / "r.json", [sweep_record(0.01 * k, 0, 50.0 + k, parameter="lambda_cc", method="dm_iid") for k in (1, 5, 9)])
    sweep_args = parser.parse_args(
        ["aggregate-sweep", "--name", "figure4_lambda_cc", "--parameter", "lambda_cc", "--records", str(records), "--out", str(tmp_path / "s.csv")])
    out = cli.cmd_aggregate_sweep(sweep_args)
    assert report.read_sweep_tables([out])["value"].tolist() == [0.01, 0.05, 0.09]


def test_paper_numbers_need_the_new_tables(tmp_path):
    numbers = yaml.safe_load(PAPER_YAML.read_text())
    del numbers["table7"]["ipcs"]
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(numbers))
    one_line_error(lambda: report.load_paper_numbers(tmp_path / "paper.yaml"), "table7 needs title, dataset, ipcs, rows")


def test_outcome_says_who_beats_whom_and_whether_the_spreads_overlap():
    stats = pd.DataFrame([
        {"dataset": "digits", "ipc": 10, "arch": "ConvNet", "method": "random", "mean": 90.0, "std": 1.0, "n": 5},
        {"dataset": "digits", "ipc": 10, "arch": "ConvNet", "method": "herding", "mean": 91.0, "std": 1.0, "n": 5},
        {"dataset": "digits", "ipc": 10, "arch": "ConvNet", "method": "dm", "mean": 93.0, "std": 0.5, "n": 5},
        {"dataset": "digits", "ipc": 10, "arch": "ConvNet", "method": "dm_iid", "mean": 92.0, "std": 0.6, "n": 5},
    ])
    lines = report.outcome_lines(stats)
    assert lines == [
        "- digits, IPC 10, ConvNet: DM 93.00 +- 0.50 vs Random 90.00 +- 1.00 (5 and 5 seeds): +3.00 points; the mean +- std intervals do not overlap.",
        "- digits, IPC 10, ConvNet: DM+IID 92.00 +- 0.60 vs Random 90.00 +- 1.00 (5 and 5 seeds): +2.00 points; the mean +- std intervals do not overlap.",
        "- digits, IPC 10, ConvNet: DM+IID 92.00 +- 0.60 vs DM 93.00 +- 0.50 (5 and 5 seeds): -1.00 points; the mean +- std intervals overlap.",
    ]


def test_final_and_best_of_run_side_by_side_against_a_direct_computation(tmp_path):
    # seeds 0-2 evaluated at 0/500/1000/1500: the best mean is at 1000 (tied with 1500: the earlier is reported)
    accs = {0: [30.0, 31.0, 29.0], 500: [50.0, 49.0, 51.0], 1000: [52.0, 53.0, 51.0], 1500: [51.0, 52.5, 52.5]}
    rows = [(iteration, seed, acc) for iteration, values in accs.items() for seed, acc in enumerate(values)]
    curve = write_convergence(tmp_path / "a", "set", "dm_iid", "DM+IID", rows)
    stats = report.convergence_statistics(report.read_convergence([curve]))
    row = stats.iloc[0]
    assert (row["final_iteration"], row["best_iteration"], row["seeds"]) == (1500, 1000, 3)
    assert row["best_mean"] == pytest.approx(np.mean(accs[1000])) and row["best_std"] == pytest.approx(np.std(accs[1000]))
    assert row["final_mean"] == pytest.approx(np.mean(accs[1500])) and row["final_std"] == pytest.approx(np.std(accs[1500]))
    table = report.render_convergence_table(report.read_convergence([curve]), {"cifar10": "CIFAR-10 (JPEG copy)"})
    assert pipe_rows(table)[1] == ["CIFAR-10 (JPEG copy)", "10", "DM+IID", "0-1,500 every 500", "3", "52.00 +- 0.71 (1,500)", "52.00 +- 0.82 (1,000)"]
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path / "out", figures=False, convergence=[curve])
    in_file = pipe_rows((tmp_path / "out" / "convergence.md").read_text())
    assert in_file == [[cell.replace("CIFAR-10 (JPEG copy)", "CIFAR-10") for cell in row] for row in pipe_rows(table)]
    assert tmp_path / "out" / "convergence.md" in written


def test_runs_carry_the_distillation_budget_and_older_tables_still_read(tmp_path):
    distilled = evaluation_record(method="dm", synthetic_params={"iterations": 2000})
    coreset = evaluation_record(method="random")
    runs = report.collect_records([write_records(tmp_path / "r.json", [distilled, coreset])])
    budgets = runs.set_index("method")["iterations"]
    assert budgets["dm"] == 2000 and pd.isna(budgets["random"])  # a coreset has no distillation budget
    assert report.cells._budget_text(runs) == " Distillation: 2,000 iterations."
    mixed = pd.concat([runs, runs.assign(iterations=pd.array([pd.NA, 20000], dtype="Int64"), seed=1)])
    assert report.cells._budget_text(mixed) == " Distillation: 2,000/20,000 iterations (mixed)."
    # a runs table written before the column existed
    old = pd.read_csv(GOLDEN / "runs.csv", dtype=str, keep_default_na=False).drop(columns="iterations")
    old.to_csv(tmp_path / "old.csv", index=False)
    read = report.read_runs_table(tmp_path / "old.csv")
    assert read["iterations"].isna().all() and len(read) == len(old) and report.cells._budget_text(read) == ""


def test_two_method_ids_with_the_same_base_and_constraints_stay_separate_rows(tmp_path):
    """dm_cc and a params.yaml id of one's own (dm_cc_mine) are both DM + class centralisation, labelled "DM+CC" in
    their records: the report keys them by id, never by label."""
    records = [evaluation_record(method="DM+CC", method_id="dm_cc", seed=seed, acc=50.0 + seed) for seed in (0, 1)]
    records += [evaluation_record(method="DM+CC", method_id="dm_cc_mine", seed=seed, acc=48.0 + seed) for seed in (0, 1)]
    # a record written before method_id existed: the id comes from its set's provenance
    records += [evaluation_record(method="DM+CC", seed=0, acc=40.0, synthetic_params={"provenance": {"method_id": "dm_cc_eq3"}})]
    runs = report.collect_records([write_records(tmp_path / "records.json", records)])
    assert sorted(set(runs["method"])) == ["dm_cc", "dm_cc_eq3", "dm_cc_mine"]
    report.write_runs_table(runs, tmp_path / "runs.csv")
    again = report.read_runs_table(tmp_path / "runs.csv")
    assert list(again["method"]) == ["dm_cc", "dm_cc", "dm_cc_eq3", "dm_cc_mine", "dm_cc_mine"]  # known ids first, then by name
    summary = report.render_runs_summary(again)
    settings = [row[2:6] for row in pipe_rows(summary)]
    assert ["DM+CC", "ConvNet", "2", "50.50 +- 0.50"] in settings and ["dm_cc_mine", "ConvNet", "2", "48.50 +- 0.50"] in settings
    assert ["DM+CC (Eq. 3)", "ConvNet", "1", "40.00 +- 0.00"] in settings
    table6 = report.render_table6(again, report.load_paper_numbers(PAPER_YAML), datasets=["cifar10"]).markdown
    assert ["+ Class centralization", "50.5 ± 0.5 / 52.2 ± 0.3 / -1.7"] in pipe_rows(table6)  # dm_cc alone fills the row
    one_line_error(lambda: report.collect_records([write_records(tmp_path / "bad.json", [evaluation_record(method_id="DM-XYZ")])]),
                   "record 0: unknown method .DM-XYZ.")


def pool_study_runs() -> pd.DataFrame:
    """DM alone and DM+IID with a 1 x 2 pool and an untrained 4 x 0 one (2 seeds each) at 1,000 iterations."""
    pool = {"pool": "cifar10-ResNet18-1x2", "arch": "ResNet18", "num_models": 1, "epochs": 2, "fingerprint": "b22ca4efd26f3d24",
            "mean_test_acc": 60.78}
    untrained = {**pool, "num_models": 4, "epochs": 0, "fingerprint": "0123456789abcdef", "mean_test_acc": 10.0}
    records = ([evaluation_record(method="dm", seed=s, acc=48.0 + s, synthetic_params={"iterations": 1000}) for s in range(2)]
               + [evaluation_record(method="dm_iid", seed=s, acc=50.0 + s, synthetic_params={"iterations": 1000, "cc_pool": pool}) for s in range(2)]
               + [evaluation_record(method="DM+IID", method_id="dm_iid_untrained", seed=s, acc=49.0, synthetic_params={"iterations": 1000, "cc_pool": untrained})
                  for s in range(2)])
    return report.sort_runs(pd.DataFrame([report.record_to_row(r, "t") for r in records]))


def test_a_records_cc_pool_names_its_row_in_the_pool_table():
    runs = pool_study_runs()
    assert set(runs["cc_pool"]) == {"", "1 ResNet18 x 2 epochs (60.8% test) [b22ca4ef]", "4 ResNet18 x 0 epochs (10.0% test) [01234567]"}
    from iid_distill.report.pools import render_pool_table

    rows = pipe_rows(render_pool_table(runs).markdown)
    assert rows[0][1] == "CIFAR-10 IPC 10, 1,000 it."
    assert [row[0] for row in rows[1:]] == ["DM (no CC)", "DM+IID, pool: 1 ResNet18 x 2 epochs (60.8% test) [b22ca4ef]",
                                            "dm_iid_untrained, pool: 4 ResNet18 x 0 epochs (10.0% test) [01234567]"]
    assert [row[1] for row in rows[1:]] == ["48.5 ± 0.5", "50.5 ± 0.5", "49.0 ± 0.0"]


def test_the_pool_study_figure_draws_each_pools_cell_beside_the_host_without_cc(tmp_path):
    from iid_distill.report.pools import pool_study_points

    runs = pool_study_runs()
    points = pool_study_points(runs)
    assert list(points["pool"]) == ["", "1 ResNet18 x 2 epochs (60.8% test) [b22ca4ef]", "4 ResNet18 x 0 epochs (10.0% test) [01234567]"]
    assert list(points["mean"]) == [48.5, 50.5, 49.0] and set(points["iterations"]) == {1000}
    report.write_runs_table(runs, tmp_path / "runs.csv")
    written = report.render_report(tmp_path / "runs.csv", PAPER_YAML, tmp_path / "out")
    assert {"figure_pools.png", "figure_pools.pdf", "figure_pools.csv"} <= {path.name for path in written}
    assert pd.read_csv(tmp_path / "out" / "figure_pools.csv")["mean"].tolist() == [48.5, 50.5, 49.0]
    assert pool_study_points(runs.loc[runs["cc_pool"] == ""]).empty  # no run with CC: no figure


def test_another_protocol_gets_rows_of_its_own_in_table_1_and_nowhere_else(tmp_path, golden_runs):
    """Table 1's coreset rows come from an evaluation without augmentation: the same sets evaluated so (protocol
    noaug, named from the records' settings) show as "Random (no aug.)" beside the paper, never mixed into the DSA
    cell; the other tables and the outcome lines keep the default protocol."""
    random = golden_runs.loc[golden_runs["method"] == "random"]
    noaug = random.assign(protocol="noaug", acc=random["acc"] * 0.9, params_hash="0f0f0f0f0f0f0f0f")
    runs = pd.concat([golden_runs, noaug], ignore_index=True)
    report.write_runs_table(runs, tmp_path / "runs.csv")
    read_back = report.read_runs_table(tmp_path / "runs.csv")  # one cell per protocol: no duplicate or mixed-cell error
    assert sorted(set(read_back["protocol"])) == ["", "noaug"]
    rendered = {name: (tmp_path / "out" / name).read_text() for name in ("table1.md", "table6.md", "runs_summary.md")
                for _ in [report.render_report(tmp_path / "runs.csv", PAPER_YAML, tmp_path / "out", figures=False, force=True)]}
    rows = {row[0].strip(): row for row in pipe_rows(rendered["table1.md"])}
    cell = random.loc[(random["dataset"] == "cifar10") & (random["ipc"] == 10), "acc"]
    dsa_mean, noaug_mean = cell.mean(), (cell * 0.9).mean()
    cifar10_ipc10 = 5  # the label column, then SVHN 1/10/50, CIFAR-10 1: CIFAR-10 IPC 10 is the fifth cell
    assert rows["Random"][cifar10_ipc10].startswith(f"{dsa_mean:.1f} ± ")
    assert rows["Random (no aug.)"][cifar10_ipc10].startswith(f"{noaug_mean:.1f} ± ") and "/ 26.0 ± 1.2 /" in rows["Random (no aug.)"][cifar10_ipc10]
    assert "Rows marked (no aug.) evaluate the same sets without augmentation" in rendered["table1.md"]
    assert "no aug." not in rendered["table6.md"]
    assert "| Random (no aug.) |" in rendered["runs_summary.md"].replace("  ", " ")
    groups = report.seed_statistics(read_back)
    assert sorted(groups.loc[(groups["method"] == "random") & (groups["ipc"] == 10), "protocol"]) == ["", "noaug"]


def test_records_without_augmentation_are_protocol_noaug(tmp_path):
    records = [evaluation_record(method="random", seed=seed, eval_params={"dsa": False, "epochs": 1000}) for seed in range(2)]
    (tmp_path / "r.json").write_text(json.dumps(records))
    runs = report.collect_records([tmp_path / "r.json"])
    assert list(runs["protocol"]) == ["noaug", "noaug"]
    with pytest.raises(report.ReportError, match=r"cifar10 ipc 10 random ConvNet \(noaug\): seed\(s\) 2"):
        report.check_complete(runs, report.expected_seed_keys(runs, 3))
