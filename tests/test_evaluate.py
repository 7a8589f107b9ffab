"""The DM evaluation protocol: the SGD loop, its schedule and augmentation, seed batching and the records."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from iid_distill.evaluate import (
    EvalConfig,
    EvaluationError,
    evaluate_synthetic_set,
    evaluate_synthetic_sets,
    learning_rate_at,
    resolve_seed_batching,
    test_accuracy,
    train_evaluation_networks,
    train_evaluation_networks_for_sets,
    train_network,
    write_records,
)
from iid_distill.synthetic import SyntheticSet
from iid_distill.utils import make_generator

TINY_NET = {"width": 8}


def real_subset(digits, ipc: int, seed: int = 0, **meta) -> SyntheticSet:
    """``ipc`` random real training images per class, normalised, as a synthetic set."""
    from iid_distill.data import normalize

    generator = make_generator(seed)
    picks = torch.cat([indices[torch.randperm(indices.numel(), generator=generator)[:ipc]] for indices in digits.train_class_indices])
    images = normalize(digits.train.images[picks], digits.spec)
    base = {"dataset": "digits", "ipc": ipc, "method": "random", "params": {"ipc": ipc}, "seed": seed, "git_sha": "test"}
    return SyntheticSet(images, digits.train.labels[picks], {**base, **meta})


def toy_problem(count: int = 40):
    """Two linearly separable blobs as (count, 1, 2, 2) 'images' and a linear classifier."""
    generator = make_generator(0)
    labels = torch.arange(count) % 2
    images = torch.randn(count, 1, 2, 2, generator=generator) * 0.5 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    torch.manual_seed(0)
    return images, labels, nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)


def test_train_network_reduces_the_loss_and_sees_every_sample_once_per_epoch():
    images, labels, net = toy_problem()
    with torch.no_grad():
        initial_loss = float(nn.functional.cross_entropy(net(images), labels))
    seen = []
    stats = train_network(
        net, images, labels, epochs=15, batch_size=16, lr_decay_epoch=15, generator=make_generator(1),
        on_batch_end=lambda indices, logits, targets: seen.append((indices.clone(), logits.shape, torch.equal(targets, labels[indices]))), **SGD,
    )
    assert stats["train_loss"] < initial_loss / 3 and stats["train_acc"] == 100.0
    assert len(seen) == 15 * 3  # 40 samples in batches of 16: the last partial batch is kept
    first_epoch = torch.cat([indices for indices, _, _ in seen[:3]])
    assert torch.equal(first_epoch.sort().values, torch.arange(40))
    assert all(shape[1] == 2 and matches for _, shape, matches in seen)


def test_learning_rate_schedule():
    assert EvalConfig().lr_decay_epoch == 500 and EvalConfig(epochs=7).lr_decay_epoch == 3
    assert [learning_rate_at(epoch, 0.01, 500) for epoch in (0, 499, 500, 999)] == [0.01, 0.01, 0.01 * 0.1, 0.01 * 0.1]


def test_optimizer_lr_drops_at_the_decay_epoch(monkeypatch):
    images, labels, net = toy_problem(count=10)
    lrs = []
    original_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    train_network(net, images, labels, epochs=4, batch_size=5, lr_decay_epoch=2, generator=make_generator(1), **SGD)
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 4)


def test_code_schedule_reproduces_the_published_loop():
    # Published DM evaluate_synset: range(Epoch + 1) epochs, decay after epoch index Epoch // 2 + 1, new optimiser.
    paper, code = EvalConfig(epochs=1000), EvalConfig(epochs=1000, schedule="code")
    assert (paper.total_epochs, paper.lr_decay_epoch, paper.reset_momentum_at_decay) == (1000, 500, False)
    assert (code.total_epochs, code.lr_decay_epoch, code.reset_momentum_at_decay) == (1001, 502, True)
    with pytest.raises(EvaluationError, match="evaluation.schedule"):
        EvalConfig(schedule="best")


def test_momentum_reset_at_decay_equals_a_fresh_optimiser():
    images, labels, net = toy_problem(count=10)
    manual = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    manual.load_state_dict(net.state_dict())
    train_network(net, images, labels, epochs=4, batch_size=10, lr_decay_epoch=2, reset_momentum_at_decay=True,
                  generator=make_generator(1), **SGD)
    # The same four full-batch steps with a new optimiser at the decay, as the published loop does.
    optimizer = torch.optim.SGD(manual.parameters(), **SGD)
    for epoch in range(4):
        if epoch == 2:
            optimizer = torch.optim.SGD(manual.parameters(), **{**SGD, "lr": SGD["lr"] * 0.1})
        loss = nn.functional.cross_entropy(manual(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for trained, expected in zip(net.parameters(), manual.parameters()):
        assert torch.allclose(trained, expected, atol=1e-6)


def test_augmentation_runs_on_every_batch_and_changes_training():
    images, labels, plain_net = toy_problem()
    augmented_net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    augmented_net.load_state_dict(plain_net.state_dict())
    calls = []

    def noisy(x, generator):
        calls.append(x.shape[0])
        return x + torch.randn(x.shape, generator=generator)

    common = dict(epochs=3, batch_size=16, lr_decay_epoch=3, **SGD)
    train_network(plain_net, images, labels, generator=make_generator(1), **common)
    train_network(augmented_net, images, labels, generator=make_generator(1), augment=noisy, **common)
    assert calls == [16, 16, 8] * 3
    assert not torch.allclose(plain_net[1].weight, augmented_net[1].weight)


def tiny_config(**changes) -> EvalConfig:
    return EvalConfig(**{"epochs": 3, "batch_size": 8, "arch_kwargs": TINY_NET, **changes})


def max_weight_difference(first: nn.Module, second: nn.Module) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_batched_training_gives_the_weights_of_sequential_training(digits):
    sset = real_subset(digits, ipc=2)  # 20 images, batches 8 + 8 + 4, DSA on
    sequential = train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(seed_batching="sequential"), [1, 3], "cpu")
    batched = train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(seed_batching="batched"), [1, 3], "cpu")
    assert [t.seed_batching for t in batched] == ["batched", "batched"]
    for one, other in zip(sequential, batched):
        assert max_weight_difference(one.net, other.net) < 1e-4
        assert one.train_loss == pytest.approx(other.train_loss, abs=1e-4)
    assert max_weight_difference(sequential[0].net, sequential[1].net) > 1e-2  # the two seeds really differ


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_a_seed_does_not_depend_on_its_company(digits, mode):
    sset = real_subset(digits, ipc=2)
    alone = train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(seed_batching=mode), [3], "cpu")
    together = train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(seed_batching=mode), [1, 3], "cpu")
    assert max_weight_difference(alone[0].net, together[1].net) < 1e-4


def test_several_sets_train_together_as_each_alone(digits):
    """Batched across sets: every (set, seed) network in one stack equals the one its set and seed give alone
    (the sets differ, so a mixed-up set would show); a set of another size gets its own stack."""
    sets = [real_subset(digits, ipc=2, seed=seed) for seed in (0, 1)] + [real_subset(digits, ipc=1, seed=2)]
    config = tiny_config(seed_batching="batched")
    together = train_evaluation_networks_for_sets([(s.images, s.labels) for s in sets], digits.spec, config, [1, 3], "cpu")
    assert [[t.seed for t in networks] for networks in together] == [[1, 3]] * 3
    for sset, networks in zip(sets, together):
        alone = train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(seed_batching="sequential"), [1, 3], "cpu")
        for one, other in zip(alone, networks):
            assert max_weight_difference(one.net, other.net) < 1e-4
    assert max_weight_difference(together[0][0].net, together[1][0].net) > 1e-2  # same seed, other set: other weights


def test_evaluating_several_sets_gives_each_sets_records(digits):
    sets = [real_subset(digits, ipc=1, seed=seed) for seed in (0, 1)]
    config = tiny_config(epochs=1, seed_batching="batched")
    together = evaluate_synthetic_sets(sets, digits, config, [0, 1], "cpu")
    for sset, records in zip(sets, together):
        alone = evaluate_synthetic_set(sset, digits, config, [0, 1], "cpu")
        assert [r["synthetic_sha256"] for r in records] == [r["synthetic_sha256"] for r in alone]
        assert [r["params_hash"] for r in records] == [r["params_hash"] for r in alone]
        assert [r["acc"] for r in records] == pytest.approx([r["acc"] for r in alone], abs=0.2)


def test_end_to_end_reports_the_final_models_test_accuracy(digits, tmp_path):
    from iid_distill.data import normalize

    sset = real_subset(digits, ipc=5)
    config = EvalConfig(epochs=20, arch_kwargs={"width": 16})
    records = evaluate_synthetic_set(sset, digits, config, seeds=[0], device="cpu")
    (record,) = records
    assert record["acc"] > 30.0  # chance is 10%
    assert {"dataset", "ipc", "method", "arch", "seed", "acc", "train_acc", "epochs", "wall_s", "device", "git_sha", "params_hash", "eval_params"} <= set(record)
    assert (record["dataset"], record["ipc"], record["seed"], record["epochs"], record["test_size"]) == ("digits", 5, 0, 20, len(digits.test))
    assert record["method_id"] is None  # a set made before method_id existed: the report falls back on its label
    labelled = real_subset(digits, ipc=1, method="DM+CC", method_id="dm_cc_eq3")
    assert evaluate_synthetic_set(labelled, digits, EvalConfig(epochs=1, arch_kwargs={"width": 8}), [0], "cpu")[0]["method_id"] == "dm_cc_eq3"
    assert record["eval_params"]["dsa_strategy"] == digits.spec.dsa_strategy and record["eval_params"]["lr_decay_epoch"] == 10
    # the reported number is the final network's accuracy on the whole test split
    (trained,) = train_evaluation_networks(sset.images, sset.labels, digits.spec, config, [0], "cpu")
    final_acc = test_accuracy(trained.net, normalize(digits.test.images, digits.spec), digits.test.labels, batch_size=64)
    assert record["acc"] == pytest.approx(final_acc)
    write_records(records, tmp_path / "records.json")
    assert json.loads((tmp_path / "records.json").read_text()) == json.loads(json.dumps(records))


def test_records_hash_the_settings_not_the_batching(digits):
    sset = real_subset(digits, ipc=1)
    sequential = evaluate_synthetic_set(sset, digits, tiny_config(epochs=1, seed_batching="sequential"), [0, 1], "cpu")
    batched = evaluate_synthetic_set(sset, digits, tiny_config(epochs=1, seed_batching="batched"), [0, 1], "cpu")
    other_lr = evaluate_synthetic_set(sset, digits, tiny_config(epochs=1, lr=0.02), [0], "cpu")
    assert len({r["params_hash"] for r in sequential + batched}) == 1
    assert other_lr[0]["params_hash"] != sequential[0]["params_hash"]
    assert [r["acc"] for r in sequential] == pytest.approx([r["acc"] for r in batched], abs=0.5)


def test_bf16_fast_mode_trains_under_autocast_and_is_recorded(digits, monkeypatch):
    """EvalConfig.precision bf16 runs the network passes in bfloat16 (losses in fp32); fp32 records keep their hash."""
    sset = real_subset(digits, ipc=2)
    dtypes = []
    forward = nn.Conv2d.forward
    monkeypatch.setattr(nn.Conv2d, "forward", lambda self, x: dtypes.append(forward(self, x).dtype) or forward(self, x))
    (fast,) = evaluate_synthetic_set(sset, digits, tiny_config(epochs=2, precision="bf16"), [0], "cpu")
    assert dtypes.count(torch.bfloat16) > 10 and dtypes.count(torch.float32) <= 3  # fp32: the constructor's shape probe only
    dtypes.clear()
    (exact,) = evaluate_synthetic_set(sset, digits, tiny_config(epochs=2), [0], "cpu")
    assert set(dtypes) == {torch.float32}
    assert fast["eval_params"]["precision"] == "bf16" and "precision" not in exact["eval_params"]
    assert fast["params_hash"] != exact["params_hash"]
    # an fp32 record's hashed settings are those of before the field existed, so earlier records keep their hash
    assert set(exact["eval_params"]) == {"arch", "epochs", "lr", "momentum", "weight_decay", "batch_size", "lr_decay_fraction", "dsa",
                                         "dsa_strategy", "schedule", "arch_kwargs", "lr_decay_epoch", "total_epochs"}
    assert 0.0 <= fast["acc"] <= 100.0
    with pytest.raises(EvaluationError, match="precision"):
        EvalConfig(precision="fp16")


def test_idm_sets_are_partitioned_and_expanded(digits):
    sset = real_subset(digits, ipc=1, expand_factor=2)
    (record,) = evaluate_synthetic_set(sset, digits, tiny_config(epochs=1), [0], "cpu")
    assert record["train_size"] == 4 * 10


def test_bad_settings_are_user_errors(digits):
    with pytest.raises(EvaluationError, match="seed_batching"):
        EvalConfig(seed_batching="fast")
    with pytest.raises(EvaluationError, match="epochs"):
        EvalConfig(epochs=0)
    sset = real_subset(digits, ipc=1)
    with pytest.raises(EvaluationError, match="without BatchNorm"):
        train_evaluation_networks(sset.images, sset.labels, digits.spec, tiny_config(arch="ConvNetBN", seed_batching="batched"), [0, 1], "cpu")
    from iid_distill.synthetic import SyntheticSetError

    with pytest.raises(SyntheticSetError, match="expected 'digits'"):
        evaluate_synthetic_set(SyntheticSet(sset.images, sset.labels, {**sset.meta, "dataset": "mnist"}), digits, tiny_config(), [0], "cpu")


def test_auto_batching_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_seed_batching("auto", True, cpu, 5) == "sequential"
    assert resolve_seed_batching("auto", True, cuda, 5) == "batched"
    assert resolve_seed_batching("auto", True, cuda, 1) == "sequential"
    assert resolve_seed_batching("auto", False, cuda, 5) == "sequential"
    assert resolve_seed_batching("sequential", True, cuda, 5) == "sequential"


def test_arch_kwargs_belong_to_the_evaluation_arch_and_other_archs_get_their_own():
    from iid_distill.jobs import evaluation_config

    params = {"evaluation": {"arch": "ConvNet", "arch_kwargs": {"width": 8}, "other_arch_kwargs": {"ConvNetBN": {"width": 4}}}}
    assert evaluation_config(params)[0]["arch_kwargs"] == {"width": 8}
    assert evaluation_config(params, {"arch": "ConvNetBN"})[0]["arch_kwargs"] == {"width": 4}
    assert evaluation_config(params, {"arch": "AlexNet"})[0]["arch_kwargs"] == {}
    assert evaluation_config(params, {"arch": "ConvNetBN", "arch_kwargs": {"width": 2}})[0]["arch_kwargs"] == {"width": 2}
    with pytest.raises(EvaluationError, match="evaluation.other_arch_kwargs: expected a mapping"):
        evaluation_config({"evaluation": {"other_arch_kwargs": [1]}}, {"arch": "AlexNet"})
