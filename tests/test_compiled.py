"""torch.compile of the network passes: when it is used, its eager fallback, and agreement with eager runs."""

from __future__ import annotations

import logging

import pytest
import torch

from iid_distill import compiled as compiled_module
from iid_distill.compiled import Compiled, compile_wanted
from iid_distill.distill import DistillConfig, DistillContext, DistillError, FreshNetFactory, InMemoryPool, distill_iteration, initial_state, published_settings
from iid_distill.models import get_network

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_compiles_long_cpu_runs_only():
    assert compile_wanted("auto", CPU, 2_000_000, 1_000_000)
    assert not compile_wanted("auto", CPU, 999_999, 1_000_000)
    assert not compile_wanted("auto", CUDA, 2_000_000, 1_000_000)
    assert compile_wanted(True, CUDA, 0, 1_000_000) and not compile_wanted(False, CPU, 10**9, 1)
    with pytest.raises(ValueError, match="expected auto, true or false"):
        compile_wanted("on", CPU, 0, 1)


def test_bad_compile_setting_is_a_one_line_error():
    with pytest.raises(DistillError, match=r"distill.compile = 'on': expected one of auto, true, false"):
        DistillConfig(compile="on")


def test_a_failed_compile_falls_back_to_eager_once(monkeypatch, caplog):
    calls = []

    def broken_compile(function):
        def compiled_call(*args):
            calls.append("compiled")
            raise RuntimeError("no C++ compiler found\nsecond line")
        return compiled_call

    monkeypatch.setattr(compiled_module.torch, "compile", broken_compile)
    wrapped = Compiled(lambda x: x + 1, True, "the test function")
    assert wrapped.active
    with caplog.at_level(logging.WARNING, logger="iid_distill.compiled"):
        assert wrapped(1) == 2 and wrapped(2) == 3
    assert calls == ["compiled"] and not wrapped.active
    assert [record.getMessage() for record in caplog.records] == [
        "torch.compile of the test function failed (RuntimeError: no C++ compiler found); running it eagerly"]


def _digits_config(method: str, **overrides) -> DistillConfig:
    settings = published_settings("digits", 2, method, "cc+cm" if method == "dm" else "cm", source="code")
    settings.update(batch_real=16, arch_kwargs={"width": 8}, net_batch=32, train_steps=2, lambda_cc=0.1, lambda_cm=0.1, **overrides)
    return DistillConfig(**settings)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "idm"])
def test_compiled_iterations_equal_eager_to_float32_rounding(digits, method):
    """DM+IID (compiled matching and CC passes) and IDM+CM (also the compiled queue training): 2 iterations, same draws."""
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=seed, width=4) for seed in (101, 102)])
    images = {}
    for mode in (False, True):
        ctx = DistillContext.create(_digits_config(method, compile=mode), digits, "cpu")
        assert ctx.match_forward.active is mode and ctx.train_forward.active is mode
        state = initial_state(ctx)
        fresh = FreshNetFactory(ctx.config, digits.spec, ctx.device, torch.float32) if method == "dm" else None
        for _ in range(2):
            distill_iteration(state, ctx, fresh, pool)
        assert ctx.match_forward.active is mode  # compiled for real, no fallback
        images[mode] = state.images
    torch.testing.assert_close(images[True], images[False], rtol=1e-4, atol=1e-4)


def test_auto_follows_the_run_length(digits):
    short = DistillContext.create(_digits_config("dm", compile="auto", iterations=10), digits, "cpu")
    long = DistillContext.create(_digits_config("dm", compile="auto", iterations=10_000), digits, "cpu")
    assert not short.match_forward.active and long.match_forward.active  # 10 x 160 vs 10,000 x 160 real images
