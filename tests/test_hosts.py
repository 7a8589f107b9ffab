"""The host plug-in point: a host registered from a test module (no edits to the package) distils digits with IID's
constraints, through the same run as DM and IDM."""

from __future__ import annotations

import json

import pytest
import torch

from iid_distill.distill import HOSTS, DistillConfig, DistillError, Host, InMemoryPool, published_settings, register_host, run_distillation
from iid_distill.models import get_network
from iid_distill.synthetic import load_synthetic_set


class FixedNetHost(Host):
    """A toy host: DM's matching, but through ONE random network kept for the whole run (seeded by the run's seed)."""

    name = "fixednet"
    code_iid_weights = (0.05, 0.01)

    def published_settings(self, spec, ipc):
        return dict(lr_img=1.0, expand_factor=1, image_step="joint", ce_weight=0.0)

    def fresh_net_factory(self, config, spec, device, dtype):
        return HOSTS["dm"].fresh_net_factory(config, spec, device, dtype)

    def draw_networks(self, iteration, config, host_generator, queue_length):
        return None, [], 1, queue_length  # nothing to draw: the same network every iteration

    def matchers(self, state, ctx, draw, fresh_net):
        return [(fresh_net(ctx.config.seed), 0.0)]


@pytest.fixture
def fixednet_host():
    register_host(FixedNetHost())
    yield HOSTS["fixednet"]
    HOSTS.pop("fixednet")


def test_a_registered_host_distils_digits_with_iids_constraints(digits, tmp_path, fixednet_host):
    settings = published_settings("digits", 2, "fixednet", "cc+cm")
    assert (settings["lambda_cc"], settings["lambda_cm"], settings["image_step"]) == (0.05, 0.01, "joint")
    config = DistillConfig(**{**settings, "iterations": 3, "batch_real": 16, "arch_kwargs": {"width": 8}, "log_every": 1})
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=101, width=4)])
    record = run_distillation(config, digits, tmp_path / "fixed.pt", "cpu", pool=pool, progress=False)
    sset = load_synthetic_set(tmp_path / "fixed.pt")
    assert sset.meta["method"] == "FIXEDNET+IID" and sset.meta["method_id"] == "fixednet_iid" and sset.meta["iteration"] == 3
    losses = json.loads((tmp_path / "fixed.json").read_text())["loss_log"]
    assert all(entry["cc"] > 0 and entry["cm"] > 0 and entry["mean"] > 0 for entry in losses)  # IID's terms act on it
    # its images moved, and differently from DM's (which draws a new network every iteration)
    dm = DistillConfig(**{**published_settings("digits", 2, "dm", "cc+cm"), "iterations": 3, "batch_real": 16, "arch_kwargs": {"width": 8}})
    run_distillation(dm, digits, tmp_path / "dm.pt", "cpu", pool=pool, progress=False)
    assert not torch.equal(sset.images, load_synthetic_set(tmp_path / "dm.pt").images)
    assert record["iterations"] == 3


def test_an_unknown_host_is_a_one_line_error():
    with pytest.raises(DistillError, match="unknown method 'fixednet'; expected one of dm, idm"):
        DistillConfig(method="fixednet")
