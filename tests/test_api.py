"""The library face: distil and evaluate digits in memory, as a notebook would (files optional)."""

from __future__ import annotations

import torch

import iid_distill
from iid_distill.distill import InMemoryPool
from iid_distill.models import get_network


def test_distill_and_evaluate_in_memory_leave_no_files(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=101, width=8)])
    result = iid_distill.distill_dataset(digits, "dm_iid", ipc=2, iterations=2, batch_real=16, arch_kwargs={"width": 8}, pool=pool)
    sset = result.synthetic_set
    assert sset.images.shape == (20, 1, 32, 32) and sset.meta["method_id"] == "dm_iid" and sset.meta["iteration"] == 2
    assert result.record["iterations"] == 2 and result.record["params"]["lambda_cc"] > 0  # the published DM+IID weights
    records = iid_distill.evaluate_set(sset, digits, seeds=[0, 1], epochs=2, arch_kwargs={"width": 8})
    assert [record["seed"] for record in records] == [0, 1] and all(0.0 <= record["acc"] <= 100.0 for record in records)
    assert records[0]["method_id"] == "dm_iid"
    assert not list(tmp_path.iterdir())  # nothing written


def test_distill_with_out_writes_the_set_as_the_cli_does(digits, tmp_path):
    out = tmp_path / "dm.pt"
    result = iid_distill.distill_dataset(digits, "dm", ipc=1, iterations=1, batch_real=8, arch_kwargs={"width": 8}, out=out)
    on_disk = iid_distill.load_synthetic_set(out)
    assert torch.equal(on_disk.images, result.synthetic_set.images) and out.with_suffix(".json").exists()


def test_the_package_names_its_exports():
    assert set(iid_distill.__all__) >= {"load_dataset", "distill_dataset", "evaluate_set", "load_synthetic_set"}
    assert iid_distill.load_dataset is __import__("iid_distill.data", fromlist=["load_dataset"]).load_dataset
