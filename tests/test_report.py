"""Tests of iid_distill.report: records -> runs table -> tables, summary and figures.

Golden files (DomainBed style): tests/golden/runs.csv is a small hand-made runs table; the report rendered from it
must equal tests/golden/table{1,2,6}.{md,tex} and summary.json byte for byte. After an intended change to the
renderer, regenerate them and review the diff:

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
from iid_distill.report import ReportError, canonical_method

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
PAPER_YAML = REPO / "reports" / "paper_numbers.yaml"
TARGETS_YAML = Path(__file__).resolve().parents[2] / "shared" / "paper" / "targets.yaml"
DATA_LABELS = {"cifar10": "CIFAR-10 (JPEG copy)"}
GOLDEN_OUTPUTS = ["table1.md", "table1.tex", "table2.md", "table2.tex", "table6.md", "table6.tex", "runs_summary.md", "summary.json"]


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
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path, DATA_LABELS, figures=False)
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


def test_golden_tables_mark_quoted_rows_and_whole_dataset(golden_runs, paper):
    table1 = report.render_table1(golden_runs, paper, DATA_LABELS)
    lines = {line.split(" | ")[0]: line for line in table1.markdown.splitlines() if line.startswith("| ")}
    assert lines["| DSA†"].split(" | ")[5] == "52.1 ± 0.5"  # quoted: the paper's number only
    assert "† Quoted from the paper, not re-run." in table1.markdown
    assert "$^\\dagger$ Quoted from the paper, not re-run." in table1.latex
    assert lines["| Whole dataset"].split(" | ")[4] == "84.3 ± 0.2 (n=2) / 84.8 ± 0.1 / -0.5"
    assert "CIFAR-10 (JPEG copy)" in table1.markdown.splitlines()[2]
    assert "ddof=0" in table1.markdown and "ddof=0" in table1.latex
    # AlexNet runs of dm are not part of the ConvNet table.
    assert lines["| DM"].split(" | ")[5] == "48.2 ± 0.5 / 48.5 ± 0.6 / -0.3"


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


def table6_cells(table: report.RenderedTable) -> dict[str, list[str]]:
    return {line.split(" | ")[0][2:]: line.strip(" |").split(" | ")[1:] for line in table.markdown.splitlines() if line.startswith("| ") and "---" not in line}


def test_difference_is_ours_minus_paper_signed(paper):
    # Paper Table 6: Baseline CIFAR-10 48.5, + Both 55.1.
    table = report.render_table6(ablation_runs([49.0, 50.0, 51.0], [53.0, 54.0, 54.5]), paper)
    cells = table6_cells(table)
    assert cells["Baseline"][0] == "50.0 ± 0.8 / 48.5 ± 0.2 / +1.5"
    assert cells["+ Both"][0] == "53.8 ± 0.6 / 55.1 ± 0.1 / -1.3"
    assert cells["+ Class centralization"] == ["- / 52.2 ± 0.3 / -", "- / 31.1 ± 0.2 / -"]
    by_key = {(c.method, c.dataset): c for c in table.cells}
    assert by_key[("dm", "cifar10")].diff == pytest.approx(np.mean([49.0, 50.0, 51.0]) - 48.5)
    assert "($+1.5$)" in table.latex and "($-1.3$)" in table.latex
    assert report.format_diff(48.46, 48.5) == "+0.0"  # never "-0.0"
    assert report.format_diff(48.44, 48.5) == "-0.1"


def test_paper_null_and_missing_runs_show_dash(paper, golden_runs):
    table1 = report.render_table1(golden_runs, paper)
    dm_iid = next(line for line in table1.markdown.splitlines() if line.startswith("| DM+IID |")).strip(" |").split(" | ")
    assert dm_iid[1] == "-"  # SVHN IPC 1: no run and no paper number
    assert dm_iid[2] == "- / 75.7 ± 0.3 / -"  # SVHN IPC 10: no run
    empty = report.render_table2(golden_runs.iloc[0:0], paper)
    assert "Seeds per cell: none run yet" in empty.markdown
    assert all(cell.mean is None for cell in empty.cells)


def test_rows_with_paper_null_but_a_run_show_ours(paper):
    runs = report.sort_runs(pd.DataFrame([report.record_to_row(evaluation_record(ipc=1, method="dm_iid", seed=s, acc=26.0 + s), "t") for s in range(2)]))
    table1 = report.render_table1(runs, paper)
    row = next(line for line in table1.markdown.splitlines() if line.startswith("| DM+IID |")).strip(" |").split(" | ")
    assert row[4] == "26.5 ± 0.5 / - / -"


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
    with pytest.raises(ReportError):
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
