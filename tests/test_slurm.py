"""The Slurm profile against a real Slurm: a slice of the quick workflow (config/quick.yaml, cut by config/smoke.yaml)
through `snakemake --profile workflow/profiles/slurm`, with no other flag. Needs a running Slurm whose nodes see this
machine's files: `make test-slurm` brings up a single-node one on loopback (workflow/scripts/local_slurm.sh) and runs
this file; elsewhere the test is skipped."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from test_workflow import BIN, SMOKE_CONFIG, SMOKE_DIR, make_scratch_repo, merged_params, run

SLURM_TIMEOUT_S = 1200  # a guard against a hang only; the test took 63-105 s on the local Slurm


def slurm_is_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return result.returncode == 0 and any(state in result.stdout for state in ("idle", "mixed"))


pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module", autouse=True)
def slurm():
    """Skip without a running Slurm, except under `make test-slurm` (IID_DISTILL_REQUIRE_SLURM=1), where that fails."""
    if not slurm_is_up():
        if os.environ.get("IID_DISTILL_REQUIRE_SLURM") == "1":
            pytest.fail("no running Slurm although make test-slurm brought one up: see /var/log/slurm/")
        pytest.skip("no running Slurm: `make test-slurm` brings up a local one")


def scontrol_job(job_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def test_a_slice_of_the_quick_workflow_runs_through_the_slurm_profile(tmp_path):
    repo = make_scratch_repo(tmp_path / "repo")
    targets = [f"{SMOKE_DIR}/evals/digits/ipc10/dm.ConvNet.json", f"{SMOKE_DIR}/sets/digits/ipc10/random.pt"]
    result = run([str(BIN / "snakemake"), *targets, "--profile", "workflow/profiles/slurm", *SMOKE_CONFIG], repo,
                 timeout=SLURM_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-5000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S+/rule_(\w+)/", result.stdout)  # through sbatch
    jobs = {rule: job_id for job_id, rule in submitted}
    assert sorted(jobs) == ["coreset", "distill", "evaluate", "prepare_data"], result.stdout[-3000:]
    resources = merged_params("quick.yaml", "smoke.yaml")["workflow"]["resources"]
    kinds = {"coreset": "coreset", "distill": "distill", "evaluate": "evaluate", "prepare_data": "prepare"}
    for rule, job_id in jobs.items():
        job = scontrol_job(job_id)  # Slurm keeps finished jobs for MinJobAge (600 s on the local Slurm)
        assert job["JobState"] == "COMPLETED", (rule, job)
        wanted = resources[kinds[rule]]
        hours, minutes = divmod(wanted["runtime"], 60)
        assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (rule, job["TimeLimit"])  # from workflow.resources
        assert job["MinMemoryNode"] == f"{wanted['mem_mb']}M", (rule, job["MinMemoryNode"])
        assert job["NumCPUs"] == "1"  # config/quick.yaml's threads: 1, not a profile default
    records = json.loads((repo / targets[0]).read_text())
    assert [record["seed"] for record in records] == yaml.safe_load((repo / "config" / "smoke.yaml").read_text())["evaluation"]["seeds"]
    assert (repo / targets[1]).stat().st_size > 0
