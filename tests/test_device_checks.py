"""The device checks (tests/device_checks.py) on the CPU, on digits at tiny sizes, and on CUDA where there is one
(marked gpu: a GPU lease runs these first)."""

from __future__ import annotations

import pytest

import device_checks as checks

pytestmark = pytest.mark.slow  # each test trains and distils through the distiller: about a minute each on 2 cores


def test_checks_pass_on_cpu_and_the_replayed_run_agrees(digits):
    assert checks.check_placement(digits, "cpu", ipc=2)["ok"]
    autocast = checks.check_autocast(digits, "cpu", ipc=2)
    assert autocast["activation_dtype"] == "torch.bfloat16" and autocast["finite"] and autocast["ok"]
    assert checks.check_vmapped_evaluation(digits, "cpu", epochs=2)["ok"]
    agreement = checks.check_agreement(digits, "cpu", iterations=1, tolerance=1e-3, ipc=2)
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
    assert checks.check_placement(digits, "cuda", ipc=2)["ok"]
    assert checks.check_autocast(digits, "cuda", ipc=2)["ok"]
    assert checks.check_vmapped_evaluation(digits, "cuda", epochs=2)["ok"]
    assert checks.check_agreement(digits, "cuda", iterations=2, tolerance=1e-3, ipc=2)["ok"]


def test_agreement_detects_a_different_run(digits, monkeypatch):
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
    result = checks.check_agreement(digits, "cpu", iterations=1, tolerance=1e-3, ipc=2)
    assert not result["ok"] and result["max_image_difference"]["dm_iid"] > 0.05
    assert result["max_image_difference"]["dm_iid"] > result["sensitivity_factor"] * result["rounding_sensitivity"]["dm_iid"]
