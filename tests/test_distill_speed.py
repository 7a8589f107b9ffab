"""benchmarks/distill_speed.py: one measurement (random CIFAR-shaped data), its fields and its FLOP count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_speed.py"

# CIFAR ConvNet (width 128, 3 blocks) convolution FLOPs per 32 px image, forward: 2 * C_in * 9 * 128 * H * W per layer
CONVNET_FORWARD_FLOP = 2 * 9 * 128 * (3 * 32 * 32 + 128 * 16 * 16 + 128 * 8 * 8)


def load_script():
    spec = importlib.util.spec_from_file_location("distill_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_dm_measurement_reports_its_figures_and_counts_the_network_passes(tmp_path):
    distill_speed = load_script()
    args = distill_speed.parse_args(["--measure", "dm", "--compile", "false", "--iterations", "1", "--warmup", "0", "--ipc", "1",
                                     "--batch-real", "16", "--per-class", "16", "--cache-dir", str(tmp_path), "--count-flops"])
    result = distill_speed.measure(args)
    assert result["variant"] == "dm" and not result["compiled"] and len(result["iterations"]) == 1
    assert result["wall_s_per_iteration"] > 0 and result["peak_rss_mb"] > 0 and result["minor_faults_per_iteration"] >= 0
    # DM: 160 real images forward; 10 synthetic images forward and backward to the images (no weight gradients)
    expected = (160 + 2 * 10) * CONVNET_FORWARD_FLOP / 1e9
    assert result["gflop_per_iteration"] == pytest.approx(expected, rel=1e-3)
    table = [{"variant": "dm", "precision": "fp32", "ours": [result], "authors": []}]
    text = distill_speed.markdown(table, args)
    assert "GFLOP per iteration" in text and f"| {expected:,.0f} |" in text
