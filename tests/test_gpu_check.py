"""The one-shot GPU check script: its checks and its reproduction step on the CPU, on digits at tiny sizes, and the
checks on CUDA where there is one (marked gpu)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.slow  # each test trains and distils through the script: about a minute each on 2 cores


def test_checks_pass_on_cpu_and_the_replayed_run_agrees(digits):
    gpu_check = load_script()
    assert gpu_check.check_placement(digits, "cpu", ipc=2)["ok"]
    autocast = gpu_check.check_autocast(digits, "cpu", ipc=2)
    assert autocast["activation_dtype"] == "torch.bfloat16" and autocast["finite"] and autocast["ok"]
    assert gpu_check.check_vmapped_evaluation(digits, "cpu", epochs=2)["ok"]
    agreement = gpu_check.check_agreement(digits, "cpu", iterations=1, tolerance=1e-3, ipc=2)
    # replaying the CPU's draws on the CPU gives the same images: DM+IID bit for bit; IDM+IID within rounding (two
    # IDM runs in one process differed by up to 2.3e-4 after 2 iterations here), far below the drift the next test plants
    assert agreement["ok"] and agreement["max_image_difference"]["dm_iid"] == 0.0
    # the twin run from images one rounding step away drifts, but by far less than an update moves them
    for variant in ("dm_iid", "idm_iid"):
        assert 0.0 < agreement["rounding_sensitivity"][variant] < 0.1 * agreement["max_image_change"][variant]


@pytest.mark.gpu
def test_device_checks_pass_on_cuda(digits):
    """The same checks on a GPU (skipped without CUDA): placement, bf16 autocast, the vmapped evaluation, and the
    device run agreeing with the CPU's replay within float rounding."""
    gpu_check = load_script()
    assert gpu_check.check_placement(digits, "cuda", ipc=2)["ok"]
    assert gpu_check.check_autocast(digits, "cuda", ipc=2)["ok"]
    assert gpu_check.check_vmapped_evaluation(digits, "cuda", epochs=2)["ok"]
    assert gpu_check.check_agreement(digits, "cuda", iterations=2, tolerance=1e-3, ipc=2)["ok"]


def test_agreement_detects_a_different_run(digits, monkeypatch):
    gpu_check = load_script()
    import iid_distill.distill.iteration as iteration_module  # where distill_iteration looks image_step up

    original = iteration_module.image_step

    def nudged(images, *args, **kwargs):  # a device run that drifts: the check must report it
        new_images, velocity, terms = original(images, *args, **kwargs)
        return new_images + 0.1, velocity, terms  # the size of an update

    calls = {"n": 0}

    def device_run_only(*args, **kwargs):  # each iteration steps the CPU run, the device run, then the twin
        calls["n"] += 1
        return (nudged if calls["n"] % 3 == 2 else original)(*args, **kwargs)

    monkeypatch.setattr(iteration_module, "image_step", device_run_only)
    result = gpu_check.check_agreement(digits, "cpu", iterations=1, tolerance=1e-3, ipc=2)
    assert not result["ok"] and result["max_image_difference"]["dm_iid"] > 0.05
    assert result["max_image_difference"]["dm_iid"] > result["sensitivity_factor"] * result["rounding_sensitivity"]["dm_iid"]


def test_main_writes_a_summary_and_the_reproduction_outputs(tmp_path):
    gpu_check = load_script()
    out = tmp_path / "gpu"
    # the checks themselves are the first test's; here the reproduction step through the command line: a distilled
    # cell with its accuracy curve and a coreset, two jobs at a time
    code = gpu_check.main(["--out", str(out), "--device", "cpu", "--dataset", "digits", "--steps", "reproduce",
                           "--iterations", "2", "--eval-seeds", "0", "1", "--eval-epochs", "2", "--pool-epochs", "1",
                           "--pool-subset-per-class", "10", "--cells", "dm_iid", "random", "--convergence", "dm_iid",
                           "--convergence-every", "2", "--convergence-seeds", "0", "--parallel", "2", "--threads", "1"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary
    assert set(summary["steps"]) == {"reproduce"}
    reproduce = summary["steps"]["reproduce"]
    assert reproduce["status"] == "ok" and set(reproduce["cells"]) == {"dm_iid", "random"}
    assert all(len(cell["accuracies"]) == 2 for cell in reproduce["cells"].values())
    assert set(reproduce["jobs"]) == {"pretrain", "distill_dm_iid", "evaluate_dm_iid", "select_random", "evaluate_random"}
    assert (out / "sets" / "digits_dm_iid_ipc10.pt").exists() and (out / "evals" / "digits_random_ipc10.json").exists()
    curve = (out / "sets" / "digits_dm_iid_ipc10.eval.csv").read_text().splitlines()
    assert curve[0] == "iteration,seed,acc" and [line.split(",")[0] for line in curve[1:]] == ["0", "2"]


def test_jobs_wait_for_their_needs_skip_after_a_failure_and_stop_at_the_deadline(tmp_path):
    gpu_check = load_script()
    python = [sys.executable, "-c"]
    order = tmp_path / "order.txt"
    jobs = [gpu_check.Job("first", [*python, f"open({str(order)!r}, 'a').write('first ')"]),
            gpu_check.Job("second", [*python, f"open({str(order)!r}, 'a').write('second ')"], needs=("first",)),
            gpu_check.Job("broken", [*python, "raise SystemExit(3)"]),
            gpu_check.Job("after_broken", [*python, "pass"], needs=("broken",))]
    gpu_check.run_jobs(jobs, tmp_path, parallel=2, deadline=None, threads=1)
    assert [job.status for job in jobs] == ["ok", "ok", "failed", "skipped"]
    assert order.read_text() == "first second "
    import time

    slow = [gpu_check.Job("slow", [*python, "import time; time.sleep(600)"]), gpu_check.Job("later", [*python, "pass"], needs=("slow",))]
    gpu_check.run_jobs(slow, tmp_path, parallel=1, deadline=time.time() + 3, threads=1)  # the job starts at once, then is stopped
    assert [job.status for job in slow] == ["stopped at the deadline", "skipped"]
    assert (tmp_path / "logs" / "slow.log").exists()
