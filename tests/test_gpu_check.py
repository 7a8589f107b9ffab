"""The one-shot GPU check script's CPU-runnable parts: its checks and its reproduction step, on digits at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_agreement_detects_a_different_run(digits, monkeypatch):
    gpu_check = load_script()
    import iid_distill.distill as distill

    original = distill.image_step

    def nudged(images, *args, **kwargs):  # a device run that drifts: the check must report it
        new_images, velocity, terms = original(images, *args, **kwargs)
        return new_images + 1e-2, velocity, terms

    calls = {"n": 0}

    def every_other(*args, **kwargs):
        calls["n"] += 1
        return (nudged if calls["n"] % 2 == 0 else original)(*args, **kwargs)

    monkeypatch.setattr(distill, "image_step", every_other)
    result = gpu_check.check_agreement(digits, "cpu", iterations=1, tolerance=1e-3, ipc=2)
    assert not result["ok"] and result["max_image_difference"]["dm_iid"] > 1e-3


def test_main_writes_a_summary_and_the_reproduction_outputs(tmp_path):
    gpu_check = load_script()
    out = tmp_path / "gpu"
    # the checks themselves are the first test's; here the reproduction step through the command line
    code = gpu_check.main(["--out", str(out), "--device", "cpu", "--dataset", "digits", "--steps", "reproduce",
                           "--iterations", "2", "--eval-seeds", "0", "1", "--eval-epochs", "2", "--pool-epochs", "1",
                           "--pool-subset-per-class", "10"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary
    assert set(summary["steps"]) == {"reproduce"}
    reproduce = summary["steps"]["reproduce"]
    assert reproduce["status"] == "ok" and len(reproduce["accuracies"]) == 2
    assert (out / "digits_dm_iid_ipc10.pt").exists() and (out / "digits_dm_iid_ipc10_eval.json").exists()
