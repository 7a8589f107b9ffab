"""The workflow's plan (iid_distill.plan): checks beyond the schema, the experiment grid, the report's files and
options, computed from merged configs as Snakemake sees them (schema defaults filled)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from iid_distill import plan
from iid_distill.config import load_params
from iid_distill.coreset import coreset_methods
from iid_distill.distill import method_ids
from iid_distill.jobs import distill_job, needs_pool
from test_workflow import SCHEMA, merged_params


def filled(config: dict) -> dict:
    """``config`` with the schema's defaults, as snakemake.utils.validate(set_default=True) leaves it."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA), set_default=True)
    return config


@pytest.fixture(scope="module")
def paper():
    return filled(merged_params())


@pytest.fixture(scope="module")
def quick():
    return filled(merged_params("quick.yaml"))


def test_key_path_and_schema_errors_name_the_key():
    assert plan.key_path(["experiments", "table1_2", "ipc", 0]) == "experiments.table1_2.ipc[0]"
    assert plan.key_path([]) == "(top level)"
    schema = yaml.safe_load(SCHEMA.read_text())
    config = merged_params()
    config["evaluation"]["epochs"] = 0
    error = next(jsonschema.Draft202012Validator(schema).iter_errors(config))
    assert plan.describe_schema_error(error) == "params key 'evaluation.epochs': 0 is less than the minimum of 1"
    config = merged_params()
    config["resultsdir"] = "x"
    error = next(jsonschema.Draft202012Validator(schema).iter_errors(config))
    assert plan.describe_schema_error(error).startswith("params key 'resultsdir' is unknown; valid keys here: campaign, continual,")


def test_grid_cells_expand_and_exclude(paper):
    cells = plan.grid_cells(paper)
    assert cells == sorted(set(cells))
    assert ("cifar10", 1, "dm_iid", "ConvNet") not in cells  # excluded: IID needs more than one image per class
    assert ("cifar10", 1, "dm", "ConvNet") in cells and ("cifar10", 10, "idm_iid", "ResNet18") in cells
    table1 = paper["experiments"]["table1_2"]
    expected = {(d, i, m, a) for d in table1["datasets"] for i in table1["ipc"] for m in table1["methods"] for a in table1["archs"]
                if not (m == "dm_iid" and i == 1)}
    assert expected <= set(cells)


def test_families_and_report_files_follow_what_is_enabled(paper, quick):
    assert plan.report_figure_stems(paper) == ["figure4_lambda", "figure5_convergence", "figure6_compression", "figure7_continual"]
    assert plan.set_figure_stems(paper) == ["figure1_tsne", "figure3_tsne_sweep", "figure8_images"]
    off = copy.deepcopy(paper)
    off["convergence"]["enabled"] = False
    off["figures"]["tsne"]["enabled"] = False
    off["experiments"]["high_ipc"]["enabled"] = False
    assert "figure5_convergence" not in plan.report_figure_stems(off) and "figure6_compression" not in plan.report_figure_stems(off)
    assert plan.set_figure_stems(off) == ["figure3_tsne_sweep", "figure8_images"] and plan.convergence_cells(off) == []
    options = plan.report_family_options(paper)
    assert options[0] == "--cross-arch-dataset cifar10" and options[1] == "--ablation-datasets cifar10 cifar100"
    assert options[2] == "--compression-dataset cifar10 --compression-ipcs 1 10 50 100 200 400 600 800 1000"
    assert plan.continual_cells(quick) and all(len(cell) == 3 for cell in plan.continual_cells(quick))


def test_sweep_values_round_trip_through_file_names(paper):
    for name, sweep in plan.enabled_sweeps(paper).items():
        for value in sweep["values"]:
            assert plan.sweep_value(paper, name, plan.sweep_value_text(value)) == value
    assert plan.sweep_value_text(0.0) == "0" and plan.sweep_value_text(0.0075) == "0.0075"
    with pytest.raises(plan.PlanError, match="no value '9' in params sweeps.table5_beta.values"):
        plan.sweep_value(paper, "table5_beta", "9")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(device="cuda:1"), "names one GPU"),
    (lambda c: [grid.update(enabled=False) for grid in c["experiments"].values()], "every grid has enabled: false"),
    (lambda c: c["experiments"]["table6"].update(methods=["dm", "dmm"]), "'experiments.table6.methods[1]': unknown method 'dmm'"),
    (lambda c: c["convergence"].update(methods=["herding"]), "'convergence.methods[0]': 'herding' is not a distill method id"),
    (lambda c: c["figures"]["tsne_sweep"].update(sweep="table9"), "'figures.tsne_sweep.sweep': 'table9' is not an enabled sweep"),
])
def test_check_params_names_the_key(paper, edit, message):
    plan.check_params(paper, method_ids(), coreset_methods())
    config = copy.deepcopy(paper)
    edit(config)
    with pytest.raises(plan.PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan.check_params(config, method_ids(), coreset_methods())


def test_config_files_with_a_duplicate_key_or_nan_are_refused(tmp_path, paper):
    (tmp_path / "dup.yaml").write_text("a: 1\na: 2\n")
    with pytest.raises(plan.PlanError, match="dup.yaml: key 'a' appears twice"):
        plan.check_config_files([tmp_path / "dup.yaml"], paper)
    config = copy.deepcopy(paper)
    config["coreset"]["lr"] = float("nan")
    with pytest.raises(plan.PlanError, match="'coreset.lr' is not a finite number"):
        plan.check_config_files([], config)


def test_the_job_says_whether_it_needs_a_pool():
    params = load_params()
    assert needs_pool(distill_job(params, "cifar10", 10, "dm_iid")) and needs_pool(distill_job(params, "cifar10", 10, "dm_cc"))
    assert not needs_pool(distill_job(params, "cifar10", 10, "dm_cm")) and not needs_pool({"kind": "coreset"})


def test_rule_jobs_are_the_jobs_iid_distill_jobs_resolves(paper):
    from iid_distill import jobs
    from iid_distill.rule_jobs import RULE_JOBS, rule_job, rule_needs_pool
    from iid_distill.utils import UserError

    distill = {"dataset": "cifar10", "ipc": "10", "method": "dm_iid"}
    assert rule_job(paper, "distill", distill) == jobs.distill_job(paper, "cifar10", 10, "dm_iid")
    assert rule_job(paper, "evaluate", {"dataset": "cifar10", "ipc": "10", "method": "dm", "arch": "AlexNet"})["evaluation"]["arch"] == "AlexNet"
    sweep = rule_job(paper, "distill_sweep", {"sweep": "table5_beta", "value": "0.7"})
    assert sweep["distill"]["cc_beta"] == 0.7 and sweep["distill"]["cc_form"] == "margin"
    convergence = rule_job(paper, "distill_convergence", distill)
    assert convergence["distill"]["eval_every"] == paper["convergence"]["eval_every"] and convergence["eval_seeds"] == [0, 1, 2]
    assert rule_needs_pool(paper, "distill", distill) and rule_needs_pool(paper, "distill_sweep", {"sweep": "table5_beta", "value": "0.7"})
    assert not rule_needs_pool(paper, "distill", {**distill, "method": "dm_cm"})
    assert not rule_needs_pool(paper, "coreset", {"dataset": "cifar10", "ipc": "10", "method": "herding"})
    assert not rule_needs_pool(paper, "continual", {"dataset": "cifar100", "method": "herding", "steps": "5", "order": "0"})
    assert rule_needs_pool(paper, "continual", {"dataset": "cifar100", "method": "dm_iid", "steps": "5", "order": "0"})
    # one job per workflow rule that takes --job, under the rule's own name
    flagged = set()
    for path in (Path(__file__).resolve().parents[1] / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            flagged |= {(block.split(":")[0], job) for job in re.findall(r'job_flag\("(\w+)"\)', block)}
    assert flagged == {(rule, rule) for rule in RULE_JOBS}
    with pytest.raises(UserError, match="distill job dataset=cifar10 ipc=10 method=nope: .*nope"):
        rule_job(paper, "distill", {**distill, "method": "nope"})


def test_workflow_files_list_what_the_grids_and_the_registry_ask_for(paper):
    from iid_distill.report.registry import report_outputs
    from iid_distill.targets import WorkflowFiles

    files = WorkflowFiles(paper)
    assert len(files.evaluation_files()) == len(plan.grid_cells(paper)) + len(plan.whole_cells(paper))
    assert "results/evals/cifar10/ipc10/dm_iid.ConvNet.json" in files.evaluation_files()
    assert files.sweep_record_files("table5_beta")[0] == "results/sweeps/table5_beta/0.ConvNet.json"
    report = files.report_files()
    assert {f"reports/{name}" for output in report_outputs("table") for name in output.files()} <= set(report)
    assert "reports/figure5_convergence.csv" in report and "reports/figure8_images.png" in report
    assert files.tsne_sets() == [f"results/sets/cifar10/ipc{ipc}/{method}.pt" for ipc in (10, 50) for method in ("dm", "dm_iid")]


def test_the_cli_knows_the_schemas_top_level_keys():
    """load_params (the CLI's reader, no schema) refuses unknown top-level keys: its list is the schema's."""
    from iid_distill.config import PARAMS_KEYS

    assert set(PARAMS_KEYS) == set(yaml.safe_load(SCHEMA.read_text())["properties"])


def test_a_method_reads_its_named_pool_and_the_others_keep_their_jobs(paper):
    """params pools + distill.methods[id].pool: the job says which pool (only when one is named, so every other
    job's text, the workflow's rerun trigger, is unchanged), the pool's manifest is its own, its job is the default
    pool's settings with the overrides."""
    from iid_distill import jobs
    from iid_distill.rule_jobs import rule_job, rule_pool_files

    untrained = rule_job(paper, "distill", {"dataset": "cifar10", "ipc": "10", "method": "dm_iid_untrained"})
    default = rule_job(paper, "distill", {"dataset": "cifar10", "ipc": "10", "method": "dm_iid"})
    assert untrained["pool"] == "untrained" and "pool" not in default
    assert {k: v for k, v in untrained.items() if k not in ("pool", "method_id")} == {k: v for k, v in default.items() if k != "method_id"}
    assert jobs.read_job(jobs.job_text(untrained), "distill") == untrained
    assert rule_pool_files(paper, "distill", {"dataset": "cifar10", "ipc": "10", "method": "dm_iid_untrained"}) == ["results/pools/variants/cifar10-untrained.json"]
    assert rule_pool_files(paper, "distill", {"dataset": "cifar10", "ipc": "10", "method": "dm_iid"}) == ["results/pools/cifar10-ResNet18.json"]
    assert rule_pool_files(paper, "distill", {"dataset": "cifar10", "ipc": "10", "method": "dm"}) == []
    pool_job = rule_job(paper, "pretrain_pool_variant", {"dataset": "cifar10", "pool": "untrained"})
    assert pool_job["pretrain"]["epochs"] == 0 and pool_job["pretrain"]["num_models"] == paper["pretrain"]["num_models"]
    broken = copy.deepcopy(paper)
    broken["distill"]["methods"]["dm_iid_untrained"]["pool"] = "nope"
    with pytest.raises(plan.PlanError, match=r"distill.methods.dm_iid_untrained.pool': 'nope' is not a pool of params 'pools' \(one_model, untrained\)"):
        plan.check_params(broken, method_ids(), coreset_methods())
