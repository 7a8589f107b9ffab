"""The feature-network pool: training, resuming, hash checks and the frozen sampler used by class centralisation."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

import iid_distill.evaluate as evaluate_module
import iid_distill.pretrain as pretrain_module
from iid_distill.data import Split, get_spec
from iid_distill.models import get_network
from iid_distill.pretrain import MANIFEST_NAME, FeaturePool, PoolError, PretrainConfig, model_seeds, pretrain_pool
from iid_distill.utils import sha256_file

TINY_CONVNET = dict(arch="ConvNet", arch_kwargs={"width": 8, "depth": 2}, num_models=2, epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def digits(digits):
    """A 200/100-image subset of the embedded digits dataset: enough to train, small enough to be fast."""
    full = digits
    return dataclasses.replace(
        full,
        train=Split(full.train.images[:200], full.train.labels[:200]),
        test=Split(full.test.images[:100], full.test.labels[:100]),
    )


@pytest.fixture
def train_calls(monkeypatch):
    """Counts calls of the real ``train_network`` (pretrain looks it up in iid_distill.evaluate)."""
    calls = []
    real = evaluate_module.train_network

    def counting(*args, **kwargs):
        calls.append(kwargs["generator"].initial_seed())
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "train_network", counting)
    return calls


def _manifest(pool_dir):
    return json.loads((pool_dir / MANIFEST_NAME).read_text())


def test_pretrain_pool_writes_state_dicts_and_manifest(digits, tmp_path, train_calls, monkeypatch):
    config = PretrainConfig(**TINY_CONVNET, seed=5)
    allocator_calls = []
    monkeypatch.setattr(pretrain_module, "keep_freed_memory", lambda device: allocator_calls.append(device.type) or True)
    entries = pretrain_pool(digits, config, tmp_path / "pool", "cpu", progress=False)

    assert len(train_calls) == 2 and allocator_calls  # CPU training keeps freed memory (no page-fault churn)
    manifest = _manifest(tmp_path / "pool")
    assert manifest["dataset"] == "digits" and manifest["arch"] == "ConvNet" and manifest["complete"]
    assert manifest["config"]["epochs"] == 2 and manifest["dataset_sha256"] == digits.sha256 and manifest["git_sha"]
    assert manifest["models"] == entries
    assert [entry["seed"] for entry in entries] == [5, 6]
    assert [entry["file"] for entry in entries] == ["model_0000.pt", "model_0001.pt"]
    states = []
    for entry in entries:
        path = tmp_path / "pool" / entry["file"]
        assert entry["sha256"] == sha256_file(path)
        assert 0.0 <= entry["test_acc"] <= 100.0 and 0.0 <= entry["train_acc"] <= 100.0
        assert entry["epochs"] == 2 and entry["wall_s"] > 0
        states.append(torch.load(path, weights_only=True))
    assert set(states[0]) == set(get_network("ConvNet", 1, 10, 32, width=8, depth=2).state_dict())
    assert not torch.equal(states[0]["classifier.weight"], states[1]["classifier.weight"])  # different seeds, different models


def test_resume_skips_intact_models_and_retrains_a_corrupt_one(digits, tmp_path, train_calls):
    pool_dir = tmp_path / "pool"
    config = PretrainConfig(**TINY_CONVNET)
    pretrain_pool(digits, config, pool_dir, "cpu", progress=False)
    first, second = pool_dir / "model_0000.pt", pool_dir / "model_0001.pt"
    original_second = torch.load(second, weights_only=True)
    mtime_first = os.stat(first).st_mtime_ns

    pretrain_pool(digits, config, pool_dir, "cpu", progress=False)
    assert len(train_calls) == 2  # nothing re-trained

    second.write_bytes(second.read_bytes()[:-10] + b"corrupted!")
    entries = pretrain_pool(digits, config, pool_dir, "cpu", progress=False)
    assert len(train_calls) == 3  # only the corrupt model
    assert os.stat(first).st_mtime_ns == mtime_first
    assert entries[1]["sha256"] == sha256_file(second)
    retrained = torch.load(second, weights_only=True)
    assert all(torch.equal(retrained[name], original_second[name]) for name in original_second)  # seeded: same model again

    bigger = dataclasses.replace(config, num_models=3)
    entries = pretrain_pool(digits, bigger, pool_dir, "cpu", progress=False)
    assert len(train_calls) == 4 and len(entries) == 3 and _manifest(pool_dir)["complete"]


def test_pretrain_refuses_a_directory_of_another_pool(digits, tmp_path):
    pool_dir = tmp_path / "pool"
    config = PretrainConfig(**{**TINY_CONVNET, "num_models": 1, "epochs": 1})
    pretrain_pool(digits, config, pool_dir, "cpu", progress=False)
    with pytest.raises(PoolError, match="other settings"):
        pretrain_pool(digits, dataclasses.replace(config, lr=0.1), pool_dir, "cpu", progress=False)
    other_data = dataclasses.replace(digits, sha256={**digits.sha256, "train_images": "0" * 64})
    with pytest.raises(PoolError, match="choose another --out"):
        pretrain_pool(other_data, config, pool_dir, "cpu", progress=False)
    with pytest.raises(PoolError, match="distinct seeds"):
        pretrain_pool(digits, config, tmp_path / "other", "cpu", seeds=[1, 2], progress=False)


def test_feature_pool_samples_frozen_models_deterministically(digits, tmp_path):
    pool_dir = tmp_path / "pool"
    pretrain_pool(digits, PretrainConfig(**TINY_CONVNET), pool_dir, "cpu", progress=False)
    pool = FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet", dataset_sha256=digits.sha256)

    assert len(pool) == 2
    draws = [[pool.models.index(pool.sample(generator)) for _ in range(30)] for generator in (torch.Generator().manual_seed(3), torch.Generator().manual_seed(3))]
    assert draws[0] == draws[1] and set(draws[0]) == {0, 1}
    for model, entry in zip(pool.models, _manifest(pool_dir)["models"]):
        saved = torch.load(pool_dir / entry["file"], weights_only=True)
        assert all(torch.equal(tensor, saved[name]) for name, tensor in model.state_dict().items())
        assert not model.training and not any(parameter.requires_grad for parameter in model.parameters())

    images = torch.randn(4, 1, 32, 32, requires_grad=True)
    pool.sample(torch.Generator().manual_seed(0)).embed(images).pow(2).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(parameter.grad is None for model in pool.models for parameter in model.parameters())


@pytest.mark.slow
def test_feature_pool_loads_resnet18_with_512d_embedding(digits, tmp_path, monkeypatch):
    """ResNet18 is too slow to train here: the pool holds untrained (seeded) networks, which is enough to test loading."""
    monkeypatch.setattr(evaluate_module, "train_network", lambda net, *args, **kwargs: {"train_loss": 2.3, "train_acc": 10.0})
    small_test = dataclasses.replace(digits, test=Split(digits.test.images[:8], digits.test.labels[:8]))
    pool_dir = tmp_path / "pool"
    pretrain_pool(small_test, PretrainConfig(num_models=2, epochs=1), pool_dir, "cpu", progress=False)

    pool = FeaturePool.load(pool_dir, digits.spec, "cpu")
    expected = get_network("ResNet18", 1, 10, 32, seed=model_seeds(0)[0]).state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in pool.models[0].state_dict().items())
    images = torch.randn(3, 1, 32, 32, requires_grad=True)
    embedding = pool.sample(torch.Generator().manual_seed(0)).embed(images)
    assert embedding.shape == (3, 512)
    embedding.sum().backward()
    assert images.grad.abs().sum() > 0
    assert pool.describe()["num_models"] == 2 and len(pool.fingerprint()) == 16


@pytest.mark.slow
def test_feature_pool_rejects_missing_mismatched_and_tampered_pools(digits, tmp_path):
    pool_dir = tmp_path / "pool"
    config = PretrainConfig(**{**TINY_CONVNET, "epochs": 1})
    pretrain_pool(digits, config, pool_dir, "cpu", progress=False)

    with pytest.raises(PoolError, match="iid-distill pretrain --dataset digits"):
        FeaturePool.load(tmp_path / "absent", digits.spec, "cpu", arch="ConvNet")
    with pytest.raises(PoolError, match="trained on 'digits', not 'mnist'"):
        FeaturePool.load(pool_dir, get_spec("mnist"), "cpu", arch="ConvNet")
    with pytest.raises(PoolError, match="architecture is 'ConvNet', expected 'ResNet18'"):
        FeaturePool.load(pool_dir, digits.spec, "cpu")
    with pytest.raises(PoolError, match="another copy"):
        FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet", dataset_sha256={**digits.sha256, "train_labels": "0" * 64})

    manifest = _manifest(pool_dir)
    (pool_dir / MANIFEST_NAME).write_text(json.dumps({**manifest, "num_models": 3, "complete": False}))
    with pytest.raises(PoolError, match="unfinished"):
        FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet")
    assert len(FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet", allow_partial=True)) == 2

    tampered = pool_dir / "model_0000.pt"
    state = torch.load(tampered, weights_only=True)
    state["classifier.bias"] = state["classifier.bias"] + 1.0
    torch.save(state, tampered)
    with pytest.raises(PoolError, match="model_0000.pt: sha256 does not match"):
        FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet", allow_partial=True)
    (pool_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(PoolError, match="unreadable pool manifest"):
        FeaturePool.load(pool_dir, digits.spec, "cpu", arch="ConvNet")


def test_config_validation_and_schedules():
    assert PretrainConfig(epochs=40).lr_decay_epoch == 40  # constant: the decay epoch is never reached
    assert PretrainConfig(epochs=40, lr_schedule="step").lr_decay_epoch == 20
    with pytest.raises(PoolError, match="lr_schedule"):
        PretrainConfig(lr_schedule="cosine")
    with pytest.raises(PoolError, match="num_models"):
        PretrainConfig(num_models=0)
    assert "num_models" not in PretrainConfig().training_settings()


def test_subset_per_class_takes_the_first_images_of_each_class(digits):
    from iid_distill.pretrain import training_subset

    picks = training_subset(digits.train, 10, 3)
    labels = digits.train.labels
    assert torch.equal(torch.bincount(labels[picks], minlength=10), torch.full((10,), 3))
    for c in range(10):  # the first three of class c in dataset order
        assert torch.equal(picks[labels[picks] == c], (labels == c).nonzero().flatten()[:3])
    assert torch.equal(training_subset(digits.train, 10, None), torch.arange(len(labels)))
    with pytest.raises(PoolError, match="subset_per_class"):
        PretrainConfig(subset_per_class=0)


def test_a_batched_pool_equals_one_trained_model_by_model(digits, tmp_path):
    """model_batching batched trains the models as one vmapped stack: the same SGD per model, to float rounding;
    the choice is not a training setting, so the two pools share a manifest's training settings."""
    settings = {**TINY_CONVNET, "num_models": 2, "epochs": 1}
    one_by_one = pretrain_pool(digits, PretrainConfig(**settings, model_batching="sequential"), tmp_path / "seq", "cpu", progress=False)
    batched = pretrain_pool(digits, PretrainConfig(**settings, model_batching="batched"), tmp_path / "vmap", "cpu", progress=False)
    for first, second in zip(one_by_one, batched):
        assert first["seed"] == second["seed"] and abs(first["test_acc"] - second["test_acc"]) <= 1.0
        a = torch.load(tmp_path / "seq" / first["file"], weights_only=True)
        b = torch.load(tmp_path / "vmap" / second["file"], weights_only=True)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert _manifest(tmp_path / "seq")["training"] == _manifest(tmp_path / "vmap")["training"]


def test_pretrain_precision_and_batching_are_checked():
    with pytest.raises(PoolError, match="pretrain.precision = 'fp16'"):
        PretrainConfig(precision="fp16")
    with pytest.raises(PoolError, match="pretrain.model_batching = 'always'"):
        PretrainConfig(model_batching="always")
    assert "model_batching" not in PretrainConfig().training_settings() and PretrainConfig().training_settings()["precision"] == "fp32"


def test_a_pool_written_before_the_precision_setting_resumes_as_fp32(digits, tmp_path, train_calls):
    config = PretrainConfig(**{**TINY_CONVNET, "num_models": 1, "epochs": 1})
    pretrain_pool(digits, config, tmp_path / "pool", "cpu", progress=False)
    manifest = _manifest(tmp_path / "pool")
    del manifest["training"]["precision"]
    (tmp_path / "pool" / MANIFEST_NAME).write_text(json.dumps(manifest))
    pretrain_pool(digits, PretrainConfig(**{**TINY_CONVNET, "num_models": 2, "epochs": 1}), tmp_path / "pool", "cpu", progress=False)
    assert len(train_calls) == 2  # the first model kept, only the second trained


def test_an_untrained_pool_holds_the_initial_networks(digits, tmp_path):
    """epochs 0: the pool study's control, networks as initialised (no training epoch, so no train accuracy)."""
    config = PretrainConfig(**{**TINY_CONVNET, "epochs": 0})
    entries = pretrain_pool(digits, config, tmp_path / "untrained", "cpu", progress=False)
    assert [entry["train_acc"] for entry in entries] == [None, None] and all(0 <= entry["test_acc"] <= 100 for entry in entries)
    spec = digits.spec
    initial = get_network("ConvNet", spec.channels, spec.num_classes, spec.image_size, seed=model_seeds(0)[0], width=8, depth=2)
    saved = torch.load(tmp_path / "untrained" / "model_0000.pt", weights_only=True)
    assert all(torch.equal(saved[name], value) for name, value in initial.state_dict().items())
    pool = FeaturePool.load(tmp_path / "untrained", spec, "cpu", arch="ConvNet")
    assert pool.describe()["epochs"] == 0 and pool.describe()["num_models"] == 2
    with pytest.raises(PoolError, match="pretrain.epochs = -1: expected an integer >= 0"):
        PretrainConfig(epochs=-1)
