"""Golden pins of what the distiller and the evaluation compute: every host x IID constraint for 3 iterations on
digits in float64, and one short evaluation, against tests/golden/pins.json.

The workflow re-runs jobs when a step's implementation version changes (iid_distill.versions), not when code is
edited. These pins tie the two together: if an edit changes what ``distill`` or ``evaluate`` computes, the test fails
until the step's number in ``IMPLEMENTATION`` is bumped and the pins are rewritten:

    UPDATE_GOLDEN=1 PYTHONPATH=src python -m pytest tests/test_pins.py

which refuses to rewrite a step's pins under an unchanged number. float64 keeps the pins machine-independent: the
distiller amplifies rounding (about 1e4 per iteration with class centralisation, reports/gpu_check/README.md), so
float32 pins would differ between CPUs; float64 rounding amplified the same way stays near 1e-11.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from iid_distill.distill import DistillConfig, DistillContext, FreshNetFactory, InMemoryPool, distill_iteration, initial_state, published_settings
from iid_distill.evaluate import EvalConfig, train_evaluation_networks
from iid_distill.models import get_network
from iid_distill.versions import IMPLEMENTATION

PINS = Path(__file__).resolve().parent / "golden" / "pins.json"
HOSTS = ("dm", "idm")
CONSTRAINTS = ("none", "cc", "cm", "cc+cm")
RTOL = 1e-7  # float64; what a real change moves is many orders larger


def distill_pin(dataset, method: str, constraints: str) -> dict:
    """Three iterations of ``method`` + ``constraints`` from the published settings shrunk to test size, float64."""
    settings = published_settings("digits", 2, method, constraints, source="code")
    settings.update(batch_real=16, arch_kwargs={"width": 8}, net_batch=32, train_steps=2, queue_initial=2, seed=3)
    config = DistillConfig(**settings)
    ctx = DistillContext.create(config, dataset, "cpu", torch.float64)
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=seed, width=4).to(torch.float64) for seed in (101, 102)])
    fresh = FreshNetFactory(config, dataset.spec, torch.device("cpu"), torch.float64) if method == "dm" else None
    state = initial_state(ctx)
    for _ in range(3):
        terms = distill_iteration(state, ctx, fresh, pool)
    images = state.images.flatten()
    return {"images_sum": float(images.sum()), "images_abs_sum": float(images.abs().sum()),
            "images_sample": [float(value) for value in images[:: max(1, images.numel() // 16)][:16]],
            "last_terms": {name: float(value) for name, value in sorted(terms.items())}}


def evaluation_pin(dataset) -> dict:
    """Two epochs of the evaluation protocol (DSA on) on a fixed 20-image set, seed 0: the trained weights' checksum."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(20, 1, 32, 32, generator=generator)
    labels = torch.arange(10).repeat_interleave(2)
    config = EvalConfig(epochs=2, arch_kwargs={"width": 8})
    (trained,) = train_evaluation_networks(images, labels, dataset.spec, config, [0], "cpu")
    weights = [value.double() for value in trained.net.state_dict().values() if value.is_floating_point()]
    return {"weights_sum": float(sum(w.sum() for w in weights)), "weights_abs_sum": float(sum(w.abs().sum() for w in weights))}


def compute_pins(dataset) -> dict:
    return {"distill": {f"{method}+{constraints}": distill_pin(dataset, method, constraints) for method in HOSTS for constraints in CONSTRAINTS},
            "evaluate": {"convnet_2_epochs": evaluation_pin(dataset)}}


def differences(pinned, computed, path="") -> list[str]:
    """Where ``computed`` departs from ``pinned`` beyond RTOL (nested dicts and lists of floats)."""
    if isinstance(pinned, dict):
        if set(pinned) != set(computed):
            return [f"{path}: keys {sorted(pinned)} != {sorted(computed)}"]
        return [line for key in pinned for line in differences(pinned[key], computed[key], f"{path}.{key}")]
    if isinstance(pinned, list):
        if len(pinned) != len(computed):
            return [f"{path}: {len(pinned)} values pinned, {len(computed)} computed"]
        return [line for index, (a, b) in enumerate(zip(pinned, computed)) for line in differences(a, b, f"{path}[{index}]")]
    return [] if abs(pinned - computed) <= RTOL * max(1.0, abs(pinned)) else [f"{path}: pinned {pinned!r}, computed {computed!r}"]


@pytest.fixture(scope="module")
def computed(digits):
    return compute_pins(digits)


@pytest.mark.slow
def test_pins_hold_for_the_current_implementation_versions(computed):
    pinned = json.loads(PINS.read_text()) if PINS.exists() else {"implementation": {}, "pins": {}}
    changed = {step: differences(pinned["pins"].get(step, {}), values) for step, values in computed.items()}
    if os.environ.get("UPDATE_GOLDEN") == "1":
        unbumped = [step for step, lines in changed.items() if lines and step in pinned["implementation"]
                    and pinned["implementation"][step] == IMPLEMENTATION[step]]
        assert not unbumped, f"{unbumped}: outputs changed; bump IMPLEMENTATION in src/iid_distill/versions.py before rewriting the pins"
        PINS.write_text(json.dumps({"implementation": {step: IMPLEMENTATION[step] for step in computed}, "pins": computed}, indent=1) + "\n")
        pinned = json.loads(PINS.read_text())
    for step, lines in changed.items():
        if pinned["implementation"].get(step) != IMPLEMENTATION[step]:
            pytest.fail(f"{step}: IMPLEMENTATION is {IMPLEMENTATION[step]} but the pins were made for {pinned['implementation'].get(step)}; "
                        "rewrite them with UPDATE_GOLDEN=1 (tests/test_pins.py)")
        lines = differences(pinned["pins"][step], computed[step])
        assert not lines, (f"{step} computes something else than its pins ({len(lines)} values, e.g. {lines[0]}): bump "
                           f"IMPLEMENTATION['{step}'] in src/iid_distill/versions.py and rewrite the pins with UPDATE_GOLDEN=1")


def test_every_pin_is_sensitive(computed, digits):
    """Each host x constraint pins a different result: no constraint is silently inactive in the pinned runs."""
    sums = [pin["images_sum"] for pin in computed["distill"].values()]
    assert len({round(value, 6) for value in sums}) == len(sums)
    moved = distill_pin(digits, "dm", "cc+cm")  # recomputed: bit-for-bit the same in one process
    assert moved == computed["distill"]["dm+cc+cm"]
