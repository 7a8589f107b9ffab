"""The Snakemake + DVC workflow: lint and format, the params schema, the paper grid's and the demo's DAGs, and the smoke run
in a scratch copy of the repository (DVC repro, nothing to do the second time, one method's hyperparameter changed,
a distillation job killed and resumed from its checkpoint)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from iid_distill.config import PARAMS_KEYS
from iid_distill.versions import IMPLEMENTATION

pytestmark = pytest.mark.slow  # Snakemake and DVC in scratch repositories

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's snakemake, snakefmt, dvc and iid-distill
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"
# What a checkout needs to run the workflow (the package is imported from the copy's src/ via PYTHONPATH).
WORKFLOW_PATHS = ("Snakefile", "workflow", "params.yaml", "config", "src", "dvc.yaml", ".dvcignore", "reports/paper_numbers.yaml")
# The end-to-end run: the demo (config/quick.yaml) cut down by config/smoke.yaml, built by `dvc repro smoke`.
SMOKE_CONFIG = ["--configfile", "config/quick.yaml", "config/smoke.yaml"]
SMOKE_DIR = Path("results/smoke")
SMOKE_SET_DIR = SMOKE_DIR / "sets" / "digits"
SMOKE_METHODS = {10: ["random", "herding", "dm", "dm_iid", "idm_iid", "dm_iid_untrained"], 20: ["random", "dm"]}  # 20: the high-IPC family in small
# (ipc, method, arch) of every group in the runs table: the grids, cross-architecture on ConvNetBN, whole dataset.
SMOKE_GROUPS = ({(ipc, method, "ConvNet") for ipc, methods in SMOKE_METHODS.items() for method in methods}
                | {(10, method, "ConvNetBN") for method in ("random", "dm")} | {(0, "whole", "ConvNet")})
SMOKE_JOBS = {
    "prepare_data": 1, "pretrain_pool": 1, "pretrain_pool_variant": 1,  # the default pool and the untrained one
    "coreset": 3,  # random and herding at IPC 10, random at IPC 20
    "distill": 6,  # dm, dm_iid, idm_iid, dm_iid_untrained at IPC 10; dm at IPC 20, and dm_iid at IPC 20 for the t-SNE figure
    "evaluate": 10,  # 8 sets on ConvNet, 2 on ConvNetBN
    "evaluate_whole_dataset": 1,
    "distill_sweep": 4, "evaluate_sweep": 4, "aggregate_sweep": 3,  # beta at 2 values, each lambda at 1
    "distill_convergence": 2,  # dm, dm_iid at IPC 2
    "continual": 2,  # herding and dm, one class order, 2 steps
    "tsne_figure": 1, "tsne_sweep_figure": 1, "image_grids_figure": 1,
    "aggregate": 1, "report": 1, "all": 1,
}
WORKFLOW_TIMEOUT_S = 2700  # about 3 minutes on 2 idle cores: generous for a machine many times slower or busier
REPORT_FILES = [f"table{number}.{suffix}" for number in range(1, 8) for suffix in ("md", "tex")] + [
    f"figure{name}.{suffix}" for name in ("1_tsne", "3_tsne_sweep", "4_lambda", "5_convergence", "6_compression", "7_continual", "8_images")
    for suffix in ("png", "pdf")] + ["summary.json", "metrics.json"] + [
    f"figure{name}.csv" for name in ("4_lambda", "5_convergence", "6_compression", "7_continual")]  # the points drawn


# ------------------------------------------------------------------------------------------------ helpers


def make_scratch_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WORKFLOW_PATHS:
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return root


def tool_env(repo: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(repo / "src")  # the copy's package, for the CLI and for the Snakefile's imports
    env["IID_DISTILL_NO_PROGRESS"] = "1"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run(args: list[str], repo: Path, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    """Run a tool in ``repo``; stdout and stderr together in ``.stdout``."""
    return subprocess.run(args, cwd=repo, env=tool_env(repo, **extra_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table Snakemake prints: rule -> number of jobs (without the total)."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.strip() == "Job stats:")
    counts = {}
    for line in lines[start + 3:]:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def executed_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job in a Snakemake log, in order."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        header = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if header:
            jobs.append((header.group(1), {}))
        elif jobs and line.strip().startswith("wildcards:"):
            pairs = line.strip().removeprefix("wildcards:").split(",")
            jobs[-1][1].update(pair.strip().split("=", 1) for pair in pairs)
    return jobs


def edit_params(repo: Path, edit) -> None:
    params_file = repo / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    edit(params)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def merged_params(*overlays: str) -> dict:
    def merge(base: dict, overlay: dict) -> dict:
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return merged

    merged = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in overlays:
        merged = merge(merged, yaml.safe_load((REPO / "config" / name).read_text()))
    return merged


# ------------------------------------------------------------------------------------------------ static checks


def test_lint_and_format(tmp_path):
    repo = make_scratch_repo(tmp_path / "repo")
    lint = run([str(BIN / "snakemake"), "--lint"], repo)
    assert lint.returncode == 0 and "Congratulations, your workflow is in a good condition!" in lint.stdout, lint.stdout
    fmt = run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"], REPO)
    assert fmt.returncode == 0, fmt.stdout


def test_schema_mirrors_the_package_and_accepts_the_shipped_params():
    from iid_distill import coreset, data, distill, evaluate, pretrain

    schema = yaml.safe_load(SCHEMA.read_text())
    props, defs = schema["properties"], schema["$defs"]
    fields = lambda cls: {field.name for field in dataclasses.fields(cls)}  # noqa: E731
    assert set(defs["distill_fields"]["properties"]) == fields(distill.DistillConfig) - {"method", "constraints", "ipc"}
    assert set(props["evaluation"]["properties"]) == fields(evaluate.EvalConfig) | {"seeds", "other_arch_kwargs"}
    assert set(props["pretrain"]["properties"]) == fields(pretrain.PretrainConfig)
    assert set(props) == set(PARAMS_KEYS)  # the CLI refuses the same unknown top-level keys as the schema
    keyword_only = {name for name, p in inspect.signature(coreset.select_coreset).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(props["coreset"]["properties"]) == keyword_only
    assert defs["dataset"]["enum"] == list(data.DATASETS)
    distill_props = defs["distill_fields"]["properties"]
    assert distill_props["image_step"]["enum"] == list(distill.IMAGE_STEPS)
    assert distill_props["cc_form"]["enum"] == list(distill.CC_FORMS)
    assert distill_props["precision"]["enum"] == list(distill.PRECISIONS)
    assert defs["distill_method"]["properties"]["constraints"]["enum"] == list(distill.CONSTRAINTS)
    assert props["distill"]["properties"]["settings"]["enum"] == list(distill.SETTINGS_SOURCES)
    assert props["evaluation"]["properties"]["schedule"]["enum"] == list(evaluate.SCHEDULES)
    validator = jsonschema.Draft202012Validator(schema)
    for params in (merged_params(), merged_params("quick.yaml"), merged_params("quick.yaml", "smoke.yaml")):
        assert not list(validator.iter_errors(params))


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"distill": {"common": {"lr_imgg": 1.0}}}, "params key 'distill.common.lr_imgg' is unknown"),
        ({"resultsdir": "out"}, "params key 'resultsdir' is unknown; valid keys here: campaign, continual, convergence, coreset, data"),
        ({"sweeps": {"table5_beta": {"parameter": "beta"}}}, "params key 'sweeps.table5_beta.parameter': 'beta' is not one of"),
        ({"continual": {"methods": ["dm", "dsa"]}}, "params key 'continual.methods[1]': 'dsa' is not a method"),
        ({"figures": {"tsne_sweep": {"sweep": "table9"}}}, "params key 'figures.tsne_sweep.sweep': 'table9' is not an enabled sweep"),
        ({"evaluation": {"epochs": 0}}, "params key 'evaluation.epochs': 0 is less than the minimum of 1"),
        ({"experiments": {"table6": {"ipc": [10, "50"]}}}, "params key 'experiments.table6.ipc[1]': '50' is not of type 'integer'"),
        ({"experiments": {"table6": {"methods": ["dm", "dmm"]}}}, "params key 'experiments.table6.methods[1]': unknown method 'dmm'"),
    ],
)
def test_schema_errors_name_the_key(tmp_path, overlay, message):
    repo = make_scratch_repo(tmp_path / "repo")
    (repo / "bad.yaml").write_text(yaml.safe_dump(overlay))
    result = run([str(BIN / "snakemake"), "-n", "--configfile", "bad.yaml"], repo)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("evaluation:\n  lr: 0.01\n  lr: 0.02\n", "bad.yaml: key 'lr' appears twice (lines 2 and 3); keep one"),
        ("coreset:\n  lr: .nan\n", "params key 'coreset.lr' is not a finite number"),
    ],
)
def test_configfile_duplicate_keys_and_nan_are_refused(tmp_path, overlay, message):
    repo = make_scratch_repo(tmp_path / "repo")
    (repo / "bad.yaml").write_text(overlay)
    result = run([str(BIN / "snakemake"), "-n", "--configfile", "bad.yaml"], repo)
    assert result.returncode != 0 and message in result.stdout, result.stdout


def test_paper_grid_dry_run(tmp_path):
    repo = make_scratch_repo(tmp_path / "repo")
    result = run([str(BIN / "snakemake"), "-n", "--printshellcmds"], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {
        "prepare_data": 4,  # svhn, cifar10, cifar100, tinyimagenet
        "pretrain_pool": 4,  # each has dm_iid / idm_iid (class centralisation)
        "pretrain_pool_variant": 2,  # the pool study's: CIFAR-10's one_model and untrained pools
        "coreset": 60,  # 4 coresets x 4 datasets x IPC 1/10/50; Table 7: random, kcenter x 6 high IPCs
        "distill": 70,  # Tables 1-2: (dm, idm, idm_iid) x 12 + dm_iid x 8; Table 6: dm_cc, dm_cm x 2; Table 7: dm, dm_iid x 6;
        # IID across hosts: datadam and m3d, each alone, _cc, _cm, _iid, on CIFAR-10 IPC 10; the pool study: 2 pools
        "evaluate": 166,  # every set once on ConvNet (5 seeds per job) + Tables 3/4: 6 methods x IPC 10/50 x 3 other archs
        "evaluate_whole_dataset": 4,  # the whole-dataset reference of each dataset
        "distill_sweep": 20,  # Table 5: 10 betas; Figure 4: 5 lambda_CC + 5 lambda_CM
        "evaluate_sweep": 20,
        "aggregate_sweep": 3,
        "distill_convergence": 6,  # Figure 5: dm, dm_iid, idm_iid x IPC 10/50
        "continual": 50,  # Figure 7: 5 methods x 5 class orders x 5/10 steps
        "tsne_figure": 1,  # Figure 1
        "tsne_sweep_figure": 1,  # Figure 3
        "image_grids_figure": 1,  # Figure 8
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }
    distills = shell_jobs(result.stdout, "distill")

    def distill_of(dataset, ipc, method_id):
        return [(line, job) for line, job in distills
                if (job["data"]["dataset"], job["distill"]["ipc"], job["method_id"]) == (dataset, ipc, method_id)]

    [(line, dm_iid_50), *_] = distill_of("cifar10", 50, "dm_iid")
    # the published code's weight at every IPC (the paper's text says 0.003 at IPC 50: settings: paper)
    assert dm_iid_50["distill"]["lambda_cc"] == 0.05 and dm_iid_50["distill"]["cc_form"] == "squared"
    assert "--pool results/pools/cifar10" in line
    [(line, idm_1)] = distill_of("cifar100", 1, "idm")
    assert idm_1["distill"]["batch_real"] == 5000 and "--pool" not in line and line.startswith("python -m iid_distill.gpu_slots --require-gpu -- ")
    assert not any(job["distill"]["ipc"] == 1 and job["method_id"] == "dm_iid" for _, job in distills)  # excluded at IPC 1
    [(_, dm_1000)] = distill_of("cifar10", 1000, "dm")
    assert dm_1000["distill"]["lr_img"] == 10.0  # DM's published lr at IPC >= 100 on CIFAR-10
    beta = next(job for line, job in distills if "sweeps/table5_beta/0.7.pt" in line)
    assert beta["method_id"] == "dm_cc_margin" and beta["distill"]["cc_beta"] == 0.7 and beta["distill"]["cc_form"] == "margin"
    assert beta["distill"]["lambda_cm"] == 0.0
    curve = next(job for line, job in distills if "convergence/cifar10/ipc50/idm_iid.pt" in line)
    assert curve["distill"]["iterations"] == 10000 and curve["distill"]["eval_every"] == 500 and curve["eval_seeds"] == [0, 1, 2]
    resnet = next(job for line, job in shell_jobs(result.stdout, "evaluate")
                  if "evaluate results/sets/cifar10/ipc50/idm_iid.pt" in line and job["evaluation"]["arch"] == "ResNet18")
    assert resnet["evaluation"]["arch_kwargs"] == {}
    line, continual = next((line, job) for line, job in shell_jobs(result.stdout, "continual")
                           if (job["steps"], job["order"], job["method"]) == (10, 4, "dm_iid"))
    assert (continual["ipc"], continual["models_per_step"]) == (20, 3) and "--pool results/pools/cifar100" in line
    shell = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines() if line.startswith("Shell command: ")]
    report = next(line for line in shell if "iid-distill report" in line)
    assert "--compression-dataset cifar10 --compression-ipcs 1 10 50 100 200 400 600 800 1000" in report


def shell_jobs(stdout, command):
    """(shell line, job config) of every `iid-distill COMMAND --job JSON` a dry run printed (--printshellcmds)."""
    found = []
    for line in stdout.splitlines():
        line = line.removeprefix("Shell command: ")
        if f"iid-distill {command} " not in line:
            continue
        words = shlex.split(line)
        found.append((line, json.loads(words[words.index("--job") + 1])))
    return found


def test_demo_dry_run(tmp_path):
    """`make demo` (config/quick.yaml) as sized in the README: run in full by hand, its DAG and settings checked here."""
    repo = make_scratch_repo(tmp_path / "repo")
    result = run([str(BIN / "snakemake"), "-n", "--printshellcmds", "--configfile", "config/quick.yaml"], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {
        "prepare_data": 1, "pretrain_pool": 1,
        "coreset": 5,  # random, herding, kcenter, forgetting at IPC 10; random at IPC 20
        "distill": 5,  # dm, dm_iid at IPC 10; Table 6: dm_cc, dm_cm at IPC 10; dm at IPC 20
        "evaluate": 13,  # 8 IPC-10 sets on ConvNet, 3 on ConvNetBN, 2 IPC-20 sets
        "evaluate_whole_dataset": 1,
        "distill_sweep": 4, "evaluate_sweep": 4, "aggregate_sweep": 2,  # beta and lambda_CC at 2 values each
        "distill_convergence": 2,  # dm, dm_iid at IPC 5
        "continual": 6,  # herding, dm, dm_iid x 2 class orders
        "tsne_figure": 1, "tsne_sweep_figure": 1, "image_grids_figure": 1,
        "aggregate": 1, "report": 1, "all": 1,
    }
    shell = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines() if line.startswith("Shell command: ")]
    evaluations = [job for line, job in shell_jobs(result.stdout, "evaluate") if "iid-distill evaluate results/quick/sets/" in line]
    assert evaluations and all(job["seeds"] == [0, 1, 2] and job["evaluation"]["epochs"] == 50 for job in evaluations)
    batch_norm = [job for job in evaluations if job["evaluation"]["arch"] == "ConvNetBN"]
    assert len(batch_norm) == 3 and all(job["evaluation"]["arch_kwargs"] == {"width": 32} for job in batch_norm)  # as narrow
    curve = next(job for line, job in shell_jobs(result.stdout, "distill") if "convergence/digits/ipc5/dm_iid.pt" in line)
    assert curve["distill"]["eval_every"] == 25 and curve["eval_seeds"] == [0, 1]  # Figure 5's error bars
    assert "--ablation-datasets digits" in next(line for line in shell if "iid-distill report" in line)  # Table 6 from digits


def test_cifar10_ipc10_dry_run(tmp_path):
    """config/cifar10_ipc10.yaml rebuilds the cells of reports/gpu_check/: its DAG, budget, protocol and data source."""
    repo = make_scratch_repo(tmp_path / "repo")
    source = tmp_path / "shared" / "data" / "cifar10-jpeg.tar.gz"  # ../shared/data beside the checkout, as here
    source.parent.mkdir(parents=True)
    source.write_bytes(b"")
    result = run([str(BIN / "snakemake"), "-n", "--printshellcmds", "--configfile", "config/cifar10_ipc10.yaml"], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {
        "prepare_data": 1, "pretrain_pool": 1,
        "coreset": 2,  # random, herding
        "distill": 5,  # dm, dm_cc, dm_cm, dm_iid, dm_cc_eq3
        "distill_convergence": 2,  # dm, dm_iid every 500 iterations
        "evaluate": 7, "aggregate": 1, "report": 1, "all": 1,
    }
    shell = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines() if line.startswith("Shell command: ")]
    distills = [job for _, job in shell_jobs(result.stdout, "distill")]
    assert len(distills) == 7 and all(job["distill"]["iterations"] == 2000 for job in distills)
    evaluations = [job for line, job in shell_jobs(result.stdout, "evaluate") if "iid-distill evaluate results/cifar10_ipc10/sets/" in line]
    assert len(evaluations) == 7 and all(job["seeds"] == [0, 1, 2, 3, 4] and job["evaluation"]["epochs"] == 1000 for job in evaluations)
    [(_, pretrain)] = shell_jobs(result.stdout, "pretrain")
    assert (pretrain["pretrain"]["epochs"], pretrain["pretrain"]["num_models"]) == (10, 1)
    assert {job["data"]["source"] for _, job in shell_jobs(result.stdout, "data prepare")} == {"../shared/data/cifar10-jpeg.tar.gz"}
    report_line = next(line for line in shell if "iid-distill report" in line)
    assert "CIFAR-10 (JPEG copy)" in report_line and "--convergence" in report_line


# ------------------------------------------------------------------------------------------------ the end-to-end run


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    """A scratch git + DVC repository in which `dvc repro smoke` has built the smoke run once."""
    repo = make_scratch_repo(tmp_path_factory.mktemp("smoke") / "repo")
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"], [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        assert run(command, repo).returncode == 0
    started = time.monotonic()
    result = run([str(BIN / "dvc"), "repro", "smoke"], repo, timeout=WORKFLOW_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-5000:]
    print(f"\nsmoke run via `dvc repro smoke`: {time.monotonic() - started:.0f} s wall")  # reported, never asserted
    return repo, result.stdout


def test_smoke_run_builds_every_report_file(smoke_repo):
    repo, output = smoke_repo
    assert job_counts(output) == SMOKE_JOBS
    report = repo / SMOKE_DIR / "report"
    for name in ("table1.md", "table1.tex", "table2.md", "table2.tex", "table6.md", "table6.tex"):
        text = (report / name).read_text()
        assert re.search(r"\d+\.\d (?:±|\\pm) \d+\.\d", text), name  # the paper's numbers (ours: digits is in no paper table)
    for name in REPORT_FILES:
        assert (report / name).stat().st_size > 0, name
    summary = json.loads((report / "summary.json").read_text())
    groups = {(group["ipc"], group["method"], group["arch"]): group for group in summary["groups"]}
    assert set(groups) == SMOKE_GROUPS
    assert all(group["dataset"] == "digits" and group["n"] == 2 and 0.0 <= group["mean"] <= 100.0 for group in groups.values())
    runs = (repo / SMOKE_DIR / "all_runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * len(SMOKE_GROUPS)  # header + one row per set, architecture and seed
    assert "ConvNetBN" in (report / "table3.md").read_text() and "digits" in (report / "table7.md").read_text()
    beta = (repo / SMOKE_DIR / "sweeps" / "table5_beta.csv").read_text().splitlines()
    assert len(beta) == 1 + 2 * 2  # header + 2 betas x 2 seeds
    beta_sets = [load_set_images(repo / SMOKE_DIR / "sweeps" / "table5_beta" / f"{value}.pt") for value in ("0", "1")]
    assert not beta_sets[0].equal(beta_sets[1])  # beta acts (the margin form): Figure 3's two panels differ
    continual = json.loads((repo / SMOKE_DIR / "continual" / "digits" / "steps2" / "order0" / "dm.json").read_text())
    assert [record["classes_seen"] for record in continual["records"]] == [5, 10]
    curve = (repo / SMOKE_DIR / "convergence" / "digits" / "ipc2" / "dm_iid.eval.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in curve] == [["iteration", "seed"], ["0", "0"], ["0", "1"], ["2", "0"], ["2", "1"], ["4", "0"], ["4", "1"]]
    for ipc, methods in SMOKE_METHODS.items():
        for method in methods:
            assert (repo / SMOKE_SET_DIR / f"ipc{ipc}" / f"{method}.png").stat().st_size > 0
    # a method id naming a pool of params pools reads that pool (the pool study's control: untrained networks)
    record = json.loads((repo / SMOKE_SET_DIR / "ipc10" / "dm_iid_untrained.json").read_text())
    assert record["params"]["cc_pool"]["epochs"] == 0 and record["params"]["cc_pool"]["pool"] == "digits-untrained"
    assert "x 0 epochs" in (repo / SMOKE_DIR / "report" / "table_pools.md").read_text()
    assert not list((repo / "results").glob("**/*.ckpt"))
    assert not (repo / "reports" / "table1.md").exists()  # the run never writes over the paper's report


def load_set_images(path: Path):
    from iid_distill.synthetic import load_synthetic_set

    return load_synthetic_set(path).images


def test_second_invocation_has_nothing_to_do(smoke_repo):
    repo, _ = smoke_repo
    again = run([str(BIN / "snakemake"), "--cores", "2", *SMOKE_CONFIG], repo)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]
    status = run([str(BIN / "dvc"), "status", "smoke"], repo)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_editing_code_reruns_nothing_and_a_version_bump_reruns_that_step(smoke_repo):
    """Finished results survive refactors: only a step's implementation version (iid_distill.versions) re-runs it."""
    repo, _ = smoke_repo
    source, versions = repo / "src" / "iid_distill" / "distill" / "iteration.py", repo / "src" / "iid_distill" / "versions.py"
    original_source, original_versions = source.read_text(), versions.read_text()
    dry_run = [str(BIN / "snakemake"), "-n", *SMOKE_CONFIG]
    try:
        source.write_text(original_source + "\n# a comment: no result depends on it\n")
        idle = run(dry_run, repo)
        assert idle.returncode == 0 and "Nothing to be done" in idle.stdout, idle.stdout[-3000:]
        current = f'"report": {IMPLEMENTATION["report"]},'
        assert current in original_versions
        versions.write_text(original_versions.replace(current, f'"report": {IMPLEMENTATION["report"] + 1},'))
        bumped = run(dry_run, repo)
        assert bumped.returncode == 0, bumped.stdout[-3000:]
        assert job_counts(bumped.stdout) == {"aggregate": 1, "aggregate_sweep": 3, "report": 1, "all": 1}  # 3 sweeps
    finally:
        source.write_text(original_source)
        versions.write_text(original_versions)


def test_one_hyperparameter_reruns_only_that_method(smoke_repo):
    repo, _ = smoke_repo
    edit_params(repo, lambda params: params["distill"]["methods"]["dm"].update(lr_img=0.5))
    result = run([str(BIN / "dvc"), "repro", "smoke"], repo, timeout=WORKFLOW_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-5000:]
    # every job that uses DM's settings, and nothing else: its sets, their evaluations, its convergence curve, its
    # continual run, the t-SNE figure of its sets, and the tables
    assert job_counts(result.stdout) == {"distill": 2, "evaluate": 3, "distill_convergence": 1, "continual": 1, "tsne_figure": 1,
                                         "aggregate": 1, "report": 1, "all": 1}
    jobs = executed_jobs(result.stdout)
    assert sorted((rule, wildcards.get("ipc"), wildcards.get("arch")) for rule, wildcards in jobs if rule in ("distill", "evaluate")) == [
        ("distill", "10", None), ("distill", "20", None), ("evaluate", "10", "ConvNet"), ("evaluate", "10", "ConvNetBN"),
        ("evaluate", "20", "ConvNet")]
    assert all(wildcards["method"] == "dm" for rule, wildcards in jobs if rule in ("distill", "evaluate", "distill_convergence", "continual"))
    record = json.loads((repo / SMOKE_SET_DIR / "ipc10" / "dm.json").read_text())
    assert record["params"]["lr_img"] == 0.5


def test_snakemake_report_holds_every_table_and_figure_with_its_caption(smoke_repo):
    repo, _ = smoke_repo
    result = run([str(BIN / "snakemake"), "--report", "report.zip", *SMOKE_CONFIG], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    with zipfile.ZipFile(repo / "report.zip") as archive:
        shown = {Path(name).name for name in archive.namelist()}
        page = archive.read("report/report.html").decode()
    expected = {name for name in REPORT_FILES + ["runs_summary.md", "convergence.md"] if name.endswith((".md", ".png"))}
    assert expected <= shown, sorted(expected - shown)
    assert "summary.json" in shown
    # captions carry this run's protocol (config/smoke.yaml: 2 epochs, seeds 0 and 1), rendered from the config
    assert "evaluated by training fresh networks (ConvNet, 2 epochs, DSA on) with seeds [0, 1]" in page
    assert "IDM stores a partitioned image" in page  # Figure 8 says why IDM's images show 2x2 sub-images


def test_dvc_metrics_and_plots_show_the_runs_numbers(smoke_repo):
    repo, _ = smoke_repo
    metrics = run([str(BIN / "dvc"), "metrics", "show", "--json"], repo)
    assert metrics.returncode == 0, metrics.stdout
    values = json.loads(metrics.stdout[metrics.stdout.index("{"):])[""]["data"]["results/smoke/report/metrics.json"]["data"]
    cell = values["digits"]["ipc10"]["dm"]["ConvNet"]
    assert cell["n"] == 2 and 0.0 <= cell["mean"] <= 100.0
    summary = json.loads((repo / SMOKE_DIR / "report" / "summary.json").read_text())
    group = next(g for g in summary["groups"] if (g["ipc"], g["method"], g["arch"]) == (10, "dm", "ConvNet"))
    assert cell["mean"] == round(group["mean"], 4)  # the same numbers as the tables
    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], repo)
    data = json.loads(plots.stdout[plots.stdout.index("{"):])["data"]
    [curve] = data["results/smoke/report/figure5_convergence.csv"]
    points = curve["content"]["data"]["values"]
    assert {(point["method"], point["iteration"]) for point in points} == {(m, i) for m in ("dm", "dm_iid") for i in ("0", "2", "4")}
    assert all(0.0 <= float(point["mean"]) <= 100.0 for point in points)


def test_dvc_exp_run_with_a_set_param_reruns_that_sweep_only(smoke_repo):
    """`dvc exp run -S FILE:KEY=VALUE` as reports/README.md documents it, on the smoke stage."""
    repo, _ = smoke_repo
    shutil.copy2(REPO / ".gitignore", repo / ".gitignore")
    identity = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org", "GIT_COMMITTER_NAME": "test",
                "GIT_COMMITTER_EMAIL": "test@example.org"}
    for command in (["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):  # experiments need a commit to start from
        assert run(command, repo, **identity).returncode == 0
    result = run([str(BIN / "dvc"), "exp", "run", "smoke", "-S", "config/smoke.yaml:sweeps.figure4_lambda_cc.values=[0.1]"], repo,
                 timeout=WORKFLOW_TIMEOUT_S, **identity)
    assert result.returncode == 0, result.stdout[-5000:]
    assert job_counts(result.stdout) == {"distill_sweep": 1, "evaluate_sweep": 1, "aggregate_sweep": 1, "report": 1, "all": 1}
    table = (repo / SMOKE_DIR / "sweeps" / "figure4_lambda_cc.csv").read_text()
    assert ",0.1," in table and ",0.05," not in table
    shown = run([str(BIN / "dvc"), "exp", "show", "--json"], repo)
    assert shown.returncode == 0 and "figure4_lambda_cc" in shown.stdout


def test_killed_distill_job_resumes_from_its_checkpoint(smoke_repo):
    """SIGKILL of Snakemake and its running distill job (a lost node, a closed terminal): the next invocation re-runs the
    job, which resumes from its checkpoint. The job runs through gpu_slots on one fake GPU, whose lock the kill frees."""
    repo, _ = smoke_repo
    edit_params(repo, lambda params: params["distill"]["methods"]["dm"].update(iterations=400, checkpoint_every=10))
    target = SMOKE_SET_DIR / "ipc10" / "dm.pt"
    checkpoint = repo / f"{target}.ckpt"
    # targets go before the nargs="+" --configfile; device auto puts the job behind python -m iid_distill.gpu_slots
    command = [str(BIN / "snakemake"), str(target), "--cores", "1", *SMOKE_CONFIG, "--config", "device=auto"]
    fake_gpu = {"IID_DISTILL_FAKE_GPU_COUNT": "1", "IID_DISTILL_GPU_SLOTS_DIR": str(repo / "gpu-slots")}  # this test's own GPU 0
    process = subprocess.Popen(command, cwd=repo, env=tool_env(repo, **fake_gpu), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S  # a guard against a hang only: the loop ends at the first checkpoint
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "the distill job wrote no checkpoint"
    lock_text = next((repo / "gpu-slots").glob("*/gpu-0.lock")).read_text()
    assert "iid-distill distill --job" in lock_text and "sets/digits/ipc10/dm.pt" in lock_text  # the job held the fake GPU
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=120)
    assert not (repo / target).exists()  # the old set was removed when the job started; no partial set took its place
    assert run([str(BIN / "snakemake"), "--unlock", *SMOKE_CONFIG], repo).returncode == 0
    rerun = run(command, repo, timeout=WORKFLOW_TIMEOUT_S, **fake_gpu)  # would wait forever if the killed job still held the GPU
    assert rerun.returncode == 0, rerun.stdout[-5000:]
    assert job_counts(rerun.stdout) == {"distill": 1}
    record = json.loads((repo / target).with_suffix(".json").read_text())
    assert record["iterations"] == 400 and record["resumed_from"] is not None and record["resumed_from"] >= 10
    assert not checkpoint.exists()
    assert math.isfinite(record["final_losses"]["total"])


@pytest.mark.slow  # Snakemake in a scratch repository
def test_a_host_from_the_users_module_runs_in_the_workflow_by_id(tmp_path):
    from test_hosts import PLUGIN

    repo = make_scratch_repo(tmp_path / "repo")
    (repo / "my_hosts.py").write_text(PLUGIN)
    overlay = {"plugins": ["my_hosts"], "experiments": {"mine": {"datasets": ["digits"], "ipc": [10], "methods": ["cosmatch", "cosmatch_iid"]}}}
    (repo / "mine.yaml").write_text(yaml.safe_dump(overlay))
    result = run([str(BIN / "snakemake"), "-n", "--printshellcmds", "--configfile", "config/quick.yaml", "mine.yaml"], repo)
    assert result.returncode == 0, result.stdout[-3000:]
    mine = {job["method_id"]: job for _, job in shell_jobs(result.stdout, "distill") if job["method_id"].startswith("cosmatch")}
    assert set(mine) == {"cosmatch", "cosmatch_iid"}
    assert all(job["plugins"] == ["my_hosts"] and job["distill"]["method"] == "cosmatch" for job in mine.values())
    assert mine["cosmatch_iid"]["distill"]["constraints"] == "cc+cm"
