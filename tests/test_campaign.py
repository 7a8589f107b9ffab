"""Campaigns (iid_distill.campaign): the plan is the workflow's own compute jobs (compared with Snakemake's dry run),
its value order, and the runner's rules (skip what exists, refuse partial outputs, stop at a deadline, never start a
job whose input failed)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from iid_distill import campaign
from iid_distill.campaign import CampaignError, CampaignJob, campaign_jobs, read_plan, run_plan, workflow_config
from iid_distill.rule_jobs import RULE_JOBS
from iid_distill.utils import UserError
from test_workflow import REPO, job_counts, make_scratch_repo, run




def dry_run_jobs(repo: Path, *overlays: str) -> dict[tuple[str, tuple[str, ...]], tuple[dict, list]]:
    """(rule, outputs) -> (wildcards, steps) of every compute job in ``snakemake -n -p``, the shell command parsed
    into the campaign's steps (iid-distill argv, a stdout file other than the log, or a copy)."""
    result = run(["snakemake", "-n", "-p", "--cores", "1", "--configfile", *overlays], repo, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    jobs, current = {}, None
    for line in result.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("rule ") and stripped.endswith(":"):
            current = {"rule": stripped[5:-1], "wildcards": {}}
        elif current is None:
            continue
        elif stripped.startswith("output: "):
            current["outputs"] = tuple(stripped[8:].split(", "))
        elif stripped.startswith("log: "):
            current["log"] = stripped[5:]
        elif stripped.startswith("wildcards: "):
            current["wildcards"] = dict(pair.split("=", 1) for pair in stripped[11:].split(", "))
        elif stripped.startswith("Shell command:"):
            if current["rule"] in RULE_JOBS:
                steps = shell_steps(stripped.removeprefix("Shell command:"), current["log"])
                jobs[(current["rule"], current["outputs"])] = (current["wildcards"], steps)
            current = None
    return jobs


def shell_steps(command: str, log: str) -> list[dict]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars="();<>|&")
    lexer.whitespace_split = True
    tokens = [token for token in lexer if token not in ("(", ")")]
    steps, segment = [], []
    for token in [*tokens, "&&"]:
        if token != "&&":
            segment.append(token)
            continue
        if segment[0] == "cp":
            steps.append({"copy": segment[1:3]})
        else:
            assert segment[0] == "iid-distill", command
            end = next((index for index, word in enumerate(segment) if word in (">", "2", ">&")), len(segment))
            step = {"argv": segment[1:end]}
            redirect = segment[end:]
            if redirect[:1] == [">"] and redirect[1] != log:
                step["stdout"] = redirect[1]
            steps.append(step)
        segment = []
    return steps


def campaign_view(jobs: list[CampaignJob]) -> dict[tuple[str, tuple[str, ...]], tuple[dict, list]]:
    return {(job.rule, tuple(job.outputs)): (job.wildcards, job.steps) for job in jobs}


@pytest.mark.slow  # a Snakemake dry run
def test_the_plan_is_the_workflow_dry_runs_compute_jobs():
    """Every family on digits (the smoke overlay): the same jobs, outputs, wildcards and commands as Snakemake's."""
    overlays = ["config/quick.yaml", "config/smoke.yaml"]
    expected = dry_run_jobs(REPO, *overlays)
    planned = campaign_view(campaign_jobs(workflow_config(REPO / "params.yaml", [REPO / path for path in overlays])))
    assert set(planned) == set(expected)
    for key, value in expected.items():
        assert planned[key] == value, key
    assert {rule for rule, _ in planned} == set(RULE_JOBS)  # the smoke overlay has a job of every compute rule


def test_campaign_order_puts_the_named_cells_and_their_inputs_first():
    config = workflow_config(REPO / "params.yaml", [REPO / "config/quick.yaml", REPO / "config/smoke.yaml"])
    default = campaign_jobs(config)
    config["campaign"] = {"order": ["idm_iid", "pretrain_pool"]}
    ordered = campaign_jobs(config)
    assert sorted(job.name for job in ordered) == sorted(job.name for job in default)
    names = [job.name for job in ordered]
    assert names[:3] == ["prepare_data dataset=digits", "pretrain_pool dataset=digits", "distill dataset=digits ipc=10 method=idm_iid"]
    assert names[3].startswith("evaluate dataset=digits ipc=10 method=idm_iid")
    for index, job in enumerate(ordered):  # every job after the jobs it reads from
        made_before = {path for earlier in ordered[:index] for path in earlier.outputs}
        made_anywhere = {path for other in ordered for path in other.outputs}
        assert all(path in made_before for path in job.reads if path in made_anywhere), job.name


def test_campaign_order_names_known_cells(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"campaign": {"order": ["dm", "nope"]}}))
    with pytest.raises(UserError, match=r"campaign.order\[1\]': 'nope' is neither a method id nor a rule"):
        workflow_config(REPO / "params.yaml", [REPO / "config/quick.yaml", overlay])
    with pytest.raises(CampaignError, match="missing.yaml: file not found"):
        workflow_config(REPO / "params.yaml", [tmp_path / "missing.yaml"])


# ------------------------------------------------------------------------------------------ the runner

# A stand-in for the CLI, so the runner's rules are checked without computing: argv "sleep S", "fail" or "write FILE".
FAKE_CLI = [sys.executable, "-c", "import sys, time, pathlib\n"
            "a = sys.argv[1:]\n"
            "if a[0] == 'sleep': time.sleep(float(a[1]))\n"
            "elif a[0] == 'fail': sys.exit(3)\n"
            "elif a[0] == 'write': pathlib.Path(a[1]).write_text('made')\n"]


def fake_job(name: str, outputs: list[str], steps: list[list[str]], reads: list[str] = ()) -> CampaignJob:
    return CampaignJob("distill", {"method": name}, outputs, list(reads), [{"argv": argv} for argv in steps], f"logs/{name}.log")


@pytest.fixture
def fake_cli(monkeypatch):
    monkeypatch.setattr(campaign, "COMMAND", FAKE_CLI)


def statuses(summary: list[dict]) -> dict[str, str]:
    return {entry["job"].split("=")[1]: entry["status"] for entry in summary}


def test_runner_skips_found_refuses_partial_and_never_starts_after_a_failure(tmp_path, fake_cli):
    (tmp_path / "found.pt").write_text("kept")
    (tmp_path / "partial.pt").write_text("kept")
    jobs = [fake_job("found", ["found.pt"], [["fail"]]),
            fake_job("partial", ["partial.pt", "partial.json"], [["fail"]]),
            fake_job("after_partial", ["c.pt"], [["write", "c.pt"]], reads=["partial.json"]),
            fake_job("broken", ["b.pt"], [["fail"]]),
            fake_job("after_broken", ["d.pt"], [["write", "d.pt"]], reads=["b.pt"]),
            fake_job("silent", ["e.pt"], [["sleep", "0"]]),  # exits 0 without its output: failed
            fake_job("made", ["f.pt", "f.json"], [["write", "f.pt"], ["write", "f.json"]], reads=["found.pt"]),
            fake_job("no_input", ["g.pt"], [["write", "g.pt"]], reads=["nowhere.json"])]
    summary = run_plan(jobs, root=tmp_path, parallel=2, threads=1)
    assert statuses(summary) == {"found": "found", "partial": "partial", "after_partial": "not reached", "broken": "failed",
                                 "after_broken": "not reached", "silent": "failed", "made": "ok", "no_input": "not reached"}
    assert (tmp_path / "found.pt").read_text() == "kept" and (tmp_path / "partial.pt").read_text() == "kept"
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "d.pt").exists()
    assert "ended without e.pt" in (tmp_path / "logs/silent.log").read_text()


def test_runner_stops_running_jobs_at_the_deadline(tmp_path, fake_cli):
    jobs = [fake_job("long", ["a.pt"], [["sleep", "600"]]), fake_job("next", ["b.pt"], [["write", "b.pt"]], reads=["a.pt"])]
    summary = run_plan(jobs, root=tmp_path, deadline_s=1)
    assert statuses(summary) == {"long": "stopped", "next": "not reached"}
    with pytest.raises(CampaignError, match="--deadline-s nan"):
        run_plan(jobs, root=tmp_path, deadline_s=float("nan"))


def test_runner_writes_stdout_files_only_when_the_step_succeeds(tmp_path, fake_cli):
    job = CampaignJob("prepare_data", {"dataset": "x"}, ["info.json"], [], [{"argv": ["fail"], "stdout": "info.json"}], "logs/x.log")
    assert run_plan([job], root=tmp_path)[0]["status"] == "failed"
    assert not (tmp_path / "info.json").exists()  # a failed step leaves no output a later run would take as finished
    assert not list(tmp_path.glob(".info.json*"))  # nor a temporary file


def test_campaign_run_keeps_an_existing_summary_without_force(tmp_path, monkeypatch, capsys):
    from iid_distill import cli
    from iid_distill.campaign import write_plan

    monkeypatch.chdir(tmp_path)
    write_plan([], "plan.json", sources=["params.yaml"])
    (tmp_path / "summary.json").write_text("finished")
    assert cli.main(["campaign", "run", "plan.json", "--summary", "summary.json"]) == 2
    assert "summary.json" in capsys.readouterr().err and (tmp_path / "summary.json").read_text() == "finished"
    assert cli.main(["campaign", "run", "plan.json", "--summary", "summary.json", "--force"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text()) == {"jobs": [], "counts": {}}


def test_plan_files_round_trip_and_bad_ones_are_one_line_errors(tmp_path):
    from iid_distill.campaign import write_plan

    jobs = [fake_job("a", ["a.pt"], [["write", "a.pt"]]),
            CampaignJob("pretrain_pool", {"dataset": "x"}, ["p.json"], [], [{"copy": ["p/pool.json", "p.json"]}], "logs/p.log")]
    path = write_plan(jobs, tmp_path / "plan.json", sources=["params.yaml"])
    assert read_plan(path) == jobs
    with pytest.raises(Exception, match="plan.json"):
        write_plan(jobs, path, sources=[])  # a finished plan is kept without --force
    data = json.loads(path.read_text())
    data["jobs"][0]["steps"] = [{"shell": "rm -rf /"}]
    path.write_text(json.dumps(data))
    with pytest.raises(CampaignError, match=r"jobs\[0\] has a step that is neither"):
        read_plan(path)
    path.write_text("{")
    with pytest.raises(CampaignError, match="plan.json: not valid JSON"):
        read_plan(path)


@pytest.mark.slow
def test_a_campaign_leaves_outputs_the_workflow_then_skips(tmp_path):
    """Plan and run a small digits grid through the CLI in a scratch copy; Snakemake's dry run afterwards has only
    the runs table and the report left to do."""
    repo = make_scratch_repo(tmp_path / "repo")
    overlay = {"results_dir": "results/campaign", "report_dir": "results/campaign/report", "data": {"cache_dir": "results/campaign/data"},
               "experiments": {"digits": {"datasets": ["digits"], "ipc": [10], "methods": ["random", "dm_iid"], "archs": ["ConvNet"]},
                               "table6": {"enabled": False}, "cross_arch": {"enabled": False}, "high_ipc": {"enabled": False},
                               "hosts": {"enabled": False}},
               "whole_dataset": {"enabled": False}, "convergence": {"enabled": False}, "continual": {"enabled": False},
               "sweeps": {name: {"enabled": False} for name in ("table5_beta", "figure4_lambda_cc", "figure4_lambda_cm")},
               "figures": {name: {"enabled": False} for name in ("tsne", "tsne_sweep", "image_grids")},
               "campaign": {"order": ["dm_iid"]}}
    (repo / "config/campaign.yaml").write_text(yaml.safe_dump(overlay))
    overlays = ["config/quick.yaml", "config/smoke.yaml", "config/campaign.yaml"]
    cli = [sys.executable, "-m", "iid_distill.cli", "campaign"]
    planned = run([*cli, "plan", "--configfile", *overlays, "--out", "plan.json"], repo)
    assert planned.returncode == 0, planned.stdout
    ran = run([*cli, "run", "plan.json", "--parallel", "2", "--threads", "1", "--summary", "summary.json"], repo, timeout=1800)
    assert ran.returncode == 0, ran.stdout[-3000:]
    summary = json.loads((repo / "summary.json").read_text())
    assert summary["counts"] == {"ok": 6}  # data, pool, random, dm_iid, and the two evaluations
    assert [entry["job"] for entry in summary["jobs"]][:3] == ["prepare_data dataset=digits", "pretrain_pool dataset=digits",
                                                               "distill dataset=digits ipc=10 method=dm_iid"]
    dry = run(["snakemake", "-n", "--cores", "1", "--configfile", *overlays], repo, timeout=600)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert set(job_counts(dry.stdout)) == {"aggregate", "report", "all"}
    again = run([*cli, "run", "plan.json"], repo)
    assert again.returncode == 0 and "6 found" in again.stdout  # a second run changes nothing
