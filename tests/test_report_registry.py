"""The report's outputs are declared once (iid_distill.report.registry): the report renders them, the workflow lists
them as the report rule's outputs, and dvc.yaml is checked against them; a table added through the registry alone
reaches all three."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from iid_distill import plan, report
from iid_distill.report.registry import REPORT_OUTPUTS, report_outputs
from test_plan import filled
from test_report import GOLDEN, PAPER_YAML
from test_workflow import BIN, REPO, make_scratch_repo, merged_params, run

NEW_TABLE = textwrap.dedent('''

    register_report_output(ReportOutput("table8", "table", lambda i: render_table6(i.runs, i.paper, i.data_labels,
                                                                                  datasets=i.ablation_datasets), _always))
''')


def test_dvc_yaml_lists_exactly_the_registered_report_files():
    assert plan.dvc_report_drift(yaml.safe_load((REPO / "dvc.yaml").read_text())) == ([], [])


def test_the_report_writes_every_registered_table(tmp_path):
    written = report.render_report(GOLDEN / "runs.csv", PAPER_YAML, tmp_path, figures=False)
    names = {path.name for path in written}
    assert {name for output in report_outputs("table") for name in output.files()} <= names
    assert [output.stem for output in report_outputs("table")] == [f"table{n}" for n in range(1, 8)] + ["table_hosts", "table_pools"]
    assert set(plan.report_figure_stems(filled(merged_params()))) <= set(REPORT_OUTPUTS)


@pytest.mark.slow  # Snakemake in a scratch repository
def test_a_table_added_through_the_registry_alone_reaches_the_workflow_and_the_dvc_check(tmp_path):
    repo = make_scratch_repo(tmp_path / "repo")
    registry = repo / "src" / "iid_distill" / "report" / "registry.py"
    registry.write_text(registry.read_text() + NEW_TABLE)
    result = run([str(BIN / "snakemake"), "-n", "--configfile", "config/quick.yaml"], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "results/quick/report/table8.md" in result.stdout and "results/quick/report/table8.tex" in result.stdout
    check = run([str(BIN / "python"), "-c", "import yaml; from iid_distill import plan; "
                 "print(plan.dvc_report_drift(yaml.safe_load(open('dvc.yaml'))))"], repo)
    assert check.stdout.strip() == "(['table8.md', 'table8.tex'], [])", check.stdout
