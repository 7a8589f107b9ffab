"""The batched DM / IDM (+ IID) distiller against the authors' per-class loop, and its settings, determinism and outputs."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import pytest
import torch

from iid_distill.data import get_spec
from iid_distill.distill import (
    CheckpointError,
    DistillConfig,
    DistillContext,
    DistillError,
    FreshNetFactory,
    InMemoryPool,
    RealSampler,
    batched_loss_and_gradient,
    batched_loss_terms,
    class_groups,
    current_synthetic_set,
    distill_iteration,
    draw_iteration,
    image_step,
    initial_images,
    initial_state,
    structural_label,
    new_queue_member,
    per_class_coefficients,
    published_settings,
    read_checkpoint,
    resolve_distill_settings,
    restore_state,
    run_distillation,
    save_checkpoint,
    train_queue_nets,
)
from distill_reference import reference_class_loss, reference_per_class_step
from iid_distill.evaluate import EvalConfig
from iid_distill.models import get_network
from iid_distill.synthetic import load_synthetic_set
from iid_distill.utils import UserError, make_generator

TINY = {"width": 8}


def _tiny_config(method: str, constraints: str, **overrides) -> DistillConfig:
    """Published settings shrunk to test size; CC and CM weights large enough that their gradients matter."""
    settings = published_settings("digits", 2, method, constraints, source="code")
    settings.update(batch_real=16, arch_kwargs=TINY, lambda_cc=0.1 if "cc" in constraints else 0.0,
                    lambda_cm=0.1 if "cm" in constraints else 0.0, net_batch=32, train_steps=2, log_every=1)
    settings.update(overrides)
    return DistillConfig(**settings)


def _small_net(seed: int, width: int = 8) -> torch.nn.Module:
    return get_network("ConvNet", 1, 10, 32, seed=seed, width=width)


def _pool(dtype=torch.float32) -> InMemoryPool:
    # g only needs an embedding; a narrow ConvNet stands in for the ResNet18 pool (the loss code is network-agnostic)
    return InMemoryPool([_small_net(seed, width=4).to(dtype) for seed in (101, 102)])


# ---------------------------------------------------------------------------------------------- settings


def test_published_settings_match_the_published_commands():
    dm = published_settings("cifar10", 10, "dm")
    assert (dm["lr_img"], dm["iterations"], dm["batch_real"], dm["image_step"], dm["expand_factor"]) == (1.0, 20000, 256, "joint", 1)
    assert published_settings("cifar10", 100, "dm")["lr_img"] == 10.0
    assert published_settings("cifar100", 100, "dm")["lr_img"] == 1.0
    idm1 = published_settings("cifar10", 1, "idm")
    assert (idm1["lr_img"], idm1["expand_factor"], idm1["image_step"], idm1["batch_real"], idm1["queue_interval"], idm1["ce_weight"]) == \
        (0.2, 2, "per_class", 5000, 5, 0.5)
    assert published_settings("cifar100", 10, "idm")["train_steps"] == 50
    assert published_settings("cifar100", 10, "idm")["ce_weight"] == 0.1
    assert published_settings("cifar10", 50, "idm")["acc_reset_interval"] == 500
    tiny50 = published_settings("tinyimagenet", 50, "idm")
    assert (tiny50["ce_weight"], tiny50["train_steps"], tiny50["acc_reset_interval"], tiny50["batch_real"]) == (0.8, 50, 1000, 256)
    assert published_settings("tinyimagenet", 1, "idm")["queue_interval"] == 30


def test_iid_weights_paper_versus_code():
    assert {k: published_settings("cifar10", 10, "dm", "cc+cm", source="paper")[k] for k in ("lambda_cc", "lambda_cm", "cc_form")} == \
        {"lambda_cc": 0.05, "lambda_cm": 0.01, "cc_form": "paper"}
    assert published_settings("cifar10", 50, "idm", "cc+cm", source="paper")["lambda_cc"] == 0.003
    code_dm = published_settings("cifar10", 10, "dm", "cc+cm")  # the default: the authors' code
    code_idm = published_settings("cifar10", 10, "idm", "cc+cm")
    assert (code_dm["lambda_cc"], code_dm["lambda_cm"], code_dm["cc_form"]) == (0.05, 0.01, "squared")
    assert (code_idm["lambda_cc"], code_idm["lambda_cm"]) == (0.01, 0.03)
    only_cm = published_settings("cifar10", 10, "dm", "cm")
    assert (only_cm["lambda_cc"], only_cm["lambda_cm"]) == (0.0, 0.01)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn", "tinyimagenet", "mnist", "digits"])
@pytest.mark.parametrize("method", ["dm", "idm"])
def test_every_published_setting_builds_a_config(dataset, method):
    for ipc in (1, 10, 50):
        for constraints in ("none", "cc", "cm", "cc+cm"):
            for source in ("paper", "code"):
                config = DistillConfig(**published_settings(dataset, ipc, method, constraints, source))
                assert structural_label(config).startswith(method.upper())


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="unknown dataset"):
        published_settings("imagenet", 10, "dm")
    with pytest.raises(UserError, match="unknown method"):
        published_settings("cifar10", 10, "mtt")
    with pytest.raises(UserError, match="constraints"):
        published_settings("cifar10", 10, "dm", "cc+xx")
    with pytest.raises(UserError, match="distill.iterations"):
        DistillConfig(iterations=-1)
    with pytest.raises(UserError, match="distill.image_step"):
        DistillConfig(image_step="sometimes")


def test_resolve_distill_settings_layers_params_over_published_values():
    params = {"distill": {"settings": "code", "common": {"iterations": 500, "lr_img": 3.0},
                          "methods": {"idm_iid": {"method": "idm", "constraints": "cc+cm", "lr_img": 0.4}, "mine": {"method": "dm", "constraints": "cm"}}}}
    idm = resolve_distill_settings(params, "cifar10", 10, "idm_iid")
    assert (idm["iterations"], idm["lr_img"], idm["lambda_cm"], idm["image_step"]) == (500, 0.4, 0.03, "per_class")
    dm = resolve_distill_settings(params, "cifar10", 10, "dm_cc")  # not in params: the built-in id table
    assert (dm["method"], dm["constraints"], dm["lr_img"], dm["lambda_cc"]) == ("dm", "cc", 3.0, 0.05)
    assert resolve_distill_settings(params, "cifar10", 10, "mine")["constraints"] == "cm"
    assert resolve_distill_settings({}, "cifar10", 50, "dm_iid")["lambda_cc"] == 0.05  # the code's objective by default
    assert resolve_distill_settings({"distill": {"settings": "paper"}}, "cifar10", 50, "dm_iid")["lambda_cc"] == 0.003
    with pytest.raises(UserError, match="unknown method id 'dm_xyz'"):
        resolve_distill_settings(params, "cifar10", 10, "dm_xyz")
    with pytest.raises(UserError, match="'distill.common.lr_image' is unknown"):
        resolve_distill_settings({"distill": {"common": {"lr_image": 1}}}, "cifar10", 10, "dm")


def test_method_labels():
    assert [structural_label(DistillConfig(method=m, constraints=c)) for m, c in [("dm", "none"), ("dm", "cc+cm"), ("idm", "cc"), ("idm", "cm")]] == \
        ["DM", "DM+IID", "IDM+CC", "IDM+CM"]


# ---------------------------------------------------------------------------------------------- randomness


def test_real_sampler_draws_distinct_images_of_each_class():
    labels = torch.tensor([0] * 7 + [1] * 3 + [2] * 12)[torch.randperm(22, generator=make_generator(0))]
    sampler = RealSampler(labels, 3, batch=5)
    generator = make_generator(1)
    seen_first = set()
    for _ in range(30):
        indices = sampler.sample(generator)
        assert indices.shape == (5 + 3 + 5,) and sampler.class_offsets == [0, 5, 8, 13]
        assert torch.equal(labels[indices], sampler.labels)
        for c in range(3):
            chunk = indices[sampler.class_offsets[c] : sampler.class_offsets[c + 1]]
            assert chunk.unique().numel() == chunk.numel()
        assert set(indices[5:8].tolist()) == set(torch.nonzero(labels == 1).flatten().tolist())  # class 1 has only 3
        seen_first.add(int(indices[0]))
    assert seen_first == set(torch.nonzero(labels == 0).flatten().tolist())  # every class-0 image gets drawn first sometime


def test_class_groups_cover_every_class_once():
    assert class_groups(10, 8, 20) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert class_groups(10, 2, 6) == [(0, 2), (2, 5), (5, 8), (8, 10)]  # 4 groups of at most 3, balanced
    assert class_groups(10, 10, 64) == [(0, 5), (5, 10)]  # one batch shape (was 60 + 40 images)
    assert class_groups(3, 40, 4096) == [(0, 3)]
    assert class_groups(3, 40, 1) == [(0, 1), (1, 2), (2, 3)]
    for num_classes in range(1, 40):
        for per_class, chunk in ((1, 1), (3, 7), (10, 64), (40, 64), (2, 2048)):
            groups, limit = class_groups(num_classes, per_class, chunk), max(1, chunk // per_class)
            sizes = [last - first for first, last in groups]
            assert [first for first, _ in groups] == [0] + [last for _, last in groups[:-1]] and groups[-1][1] == num_classes
            assert len(groups) == -(-num_classes // limit) and max(sizes) <= limit and max(sizes) - min(sizes) <= 1


def test_per_class_coefficients_match_a_momentum_loop():
    mu, num_classes = 0.5, 4
    coefficients = per_class_coefficients(num_classes, mu, torch.device("cpu"), torch.float64)
    for c in range(num_classes):
        velocity, drift = 1.0, 0.0
        for _ in range(c):
            velocity *= mu
            drift += velocity
        assert math.isclose(float(coefficients["drift"][c]), drift)
        assert math.isclose(float(coefficients["decay"][c]), mu * velocity)
        buffer, moved = 1.0, 1.0  # the gradient step moves by the buffer, then the momentum-only sub-steps
        for _ in range(num_classes - 1 - c):
            buffer *= mu
            moved += buffer
        assert math.isclose(float(coefficients["tail"][c]), moved)
        assert math.isclose(float(coefficients["tail_decay"][c]), buffer)


def test_fresh_net_factory_gives_get_network_weights():
    config = DistillConfig(arch_kwargs=TINY)
    factory = FreshNetFactory(config, get_spec("digits"), torch.device("cpu"), torch.float32)
    assert factory.reuse
    for seed in (3, 99):
        expected = _small_net(seed).state_dict()
        got = factory(seed).state_dict()
        assert all(torch.equal(got[name], expected[name]) for name in expected)


# ---------------------------------------------------------------------------------------------- batched == per-class loop


def _draw_and_state(config: DistillConfig, dataset, dtype=torch.float64):
    ctx = DistillContext.create(config, dataset, "cpu", dtype)
    pool = _pool(dtype)
    draw = draw_iteration(0, ctx, make_generator(0), make_generator(1), queue_length=3, pool=pool)
    images = initial_images(ctx, make_generator(2))
    velocity = torch.randn(images.shape, generator=make_generator(3), dtype=dtype)  # a non-zero buffer, as mid-run
    net = _small_net(7).to(dtype).eval().requires_grad_(False)
    return ctx, draw, images, velocity, net


@pytest.mark.parametrize("constraints", ["none", "cc", "cm", "cc+cm"])
@pytest.mark.parametrize("method", ["dm", "idm"])
def test_batched_loss_and_gradient_equal_the_per_class_loop(digits, method, constraints):
    config = _tiny_config(method, constraints, ce_weight=0.01)
    ctx, draw, images, _, net = _draw_and_state(config, digits)
    ce_scale = torch.tensor(42.0, dtype=torch.float64)
    point = images.clone().requires_grad_(True)
    terms = batched_loss_terms(point, net, ctx, draw.passes[0], draw.pool_net, ce_scale)
    (gradient,) = torch.autograd.grad(terms["total"], point)
    reference_point = images.clone().requires_grad_(True)
    losses = [reference_class_loss(reference_point, c, net, ctx, draw.passes[0], draw.pool_net, ce_scale) for c in range(10)]
    reference_total = sum(loss for loss, _ in losses)
    (reference_gradient,) = torch.autograd.grad(reference_total, reference_point)
    torch.testing.assert_close(terms["total"], reference_total, rtol=1e-10, atol=1e-10)
    for name in ("mean", "cc", "cm", "ce"):
        torch.testing.assert_close(terms[name], sum(parts[name] for _, parts in losses), rtol=1e-10, atol=1e-10)
        assert (float(terms[name].detach()) != 0.0) == (name in {"mean", *constraints.split("+")} or (name == "ce" and method == "idm"))
    torch.testing.assert_close(gradient, reference_gradient, rtol=1e-5, atol=1e-8)
    assert gradient.abs().sum() > 0


@pytest.mark.parametrize("constraints", ["none", "cc", "cm", "cc+cm"])
@pytest.mark.parametrize("method,step,syn_chunk", [("dm", "joint", 4096), ("idm", "per_class", 4096), ("idm", "joint", 6),
                                                   ("dm", "per_class", 6), ("idm", "per_class", 20)])
def test_image_step_equals_the_per_class_loop_with_torch_sgd(digits, method, step, syn_chunk, constraints):
    """syn_chunk 6 / 20: the synthetic side runs in class groups (DM: 3 classes of 2 images; IDM: 1 or 2 classes of 8)."""
    config = _tiny_config(method, constraints, image_step=step, ce_weight=0.01, lr_img=0.3, syn_chunk=syn_chunk)
    ctx, draw, images, velocity, net = _draw_and_state(config, digits)
    ce_scale = torch.tensor(42.0, dtype=torch.float64)
    gradient_fn = lambda point: batched_loss_and_gradient(point, net, ctx, draw.passes[0], draw.pool_net, ce_scale)  # noqa: E731
    new_images, new_velocity, terms = image_step(images, velocity, ctx.syn_labels, gradient_fn, config, 10)
    ref_images, ref_velocity, ref_terms = reference_per_class_step(images, velocity, net, ctx, draw.passes[0], draw.pool_net, ce_scale)
    torch.testing.assert_close(new_images, ref_images, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_velocity, ref_velocity, rtol=1e-5, atol=1e-5)
    assert (new_images - images).abs().max() > 1e-3  # the step moved the images
    # per_class: both sum each class's loss at the point its slice has drifted to when the loop reaches it
    for name in ("mean", "cc", "cm", "ce", "total"):
        torch.testing.assert_close(terms[name], ref_terms[name], rtol=1e-10, atol=1e-10)


def test_per_class_step_differs_from_joint_step(digits):
    """Guards the per-class test against a vacuous pass: with a non-zero buffer the two updates must differ."""
    results = []
    for step in ("per_class", "joint"):
        config = _tiny_config("idm", "none", image_step=step, ce_weight=0.0)
        ctx, draw, images, velocity, net = _draw_and_state(config, digits)
        gradient_fn = lambda point: batched_loss_and_gradient(point, net, ctx, draw.passes[0])  # noqa: E731
        results.append(image_step(images, velocity, ctx.syn_labels, gradient_fn, config, 10)[0])
    assert (results[0] - results[1]).abs().max() > 1e-3


def test_batched_fp32_loss_matches_reference(digits):
    config = _tiny_config("dm", "cc+cm")
    ctx, draw, images, _, net = _draw_and_state(config, digits, torch.float32)
    terms = batched_loss_terms(images, net, ctx, draw.passes[0], draw.pool_net)
    reference = sum(reference_class_loss(images, c, net, ctx, draw.passes[0], draw.pool_net)[0] for c in range(10))
    torch.testing.assert_close(terms["total"], reference, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- IDM queue


@pytest.mark.slow
def test_idm_queue_grows_pops_trains_and_resets_meters(digits):
    config = _tiny_config("idm", "none", queue_initial=2, queue_size=4, queue_interval=2, acc_reset_interval=3, train_nets=2,
                          train_steps=2, net_batch=16, ce_weight=0.5)
    ctx = DistillContext.create(config, digits, "cpu")
    state = initial_state(ctx)
    first_seed = state.queue[0].seed
    lengths, seen = [], []
    for iteration in range(5):
        distill_iteration(state, ctx, None, None)
        lengths.append(len(state.queue))
        seen.append(sum(int(member.meter[1]) for member in state.queue))
    # appends at iterations 0, 2, 4; the queue holds at most 4, dropping its oldest network
    assert lengths == [3, 3, 4, 4, 4]
    assert state.queue[0].seed != first_seed
    # two networks x two steps x 16 images per iteration; the meters are reset at iteration 3
    # (a network dropped from the queue at iteration 4 takes its samples with it, hence <= 128 there)
    assert seen[:3] == [64, 128, 192] and seen[3] == 64 and seen[4] <= 128
    assert all(0.0 <= float(member.accuracy_percent()) <= 100.0 for member in state.queue)


def test_idm_queue_training_in_chunks_equals_whole_batch_steps(digits):
    """real_chunk splits each training step's batch (memory); the step and the meters stay the whole batch's."""
    results = []
    for chunk in (4096, 7):  # one chunk; chunks of 7, 7, 2 images of a 16-image batch
        config = _tiny_config("idm", "none", net_batch=16, train_steps=3, real_chunk=chunk)
        ctx = DistillContext.create(config, digits, "cpu", torch.float64)
        queue = [new_queue_member(seed, config, ctx.spec, ctx.device, torch.float64) for seed in (5, 6)]
        batches = torch.randint(len(ctx.train_labels), (2, 3, 16), generator=make_generator(0))
        train_queue_nets(queue, [1, 0], batches, ctx)
        results.append(queue)
    for whole, chunked in zip(*results):
        assert torch.equal(whole.meter, chunked.meter) and int(whole.meter[1]) == 48
        for a, b in zip(whole.net.state_dict().values(), chunked.net.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    untrained = new_queue_member(5, config, ctx.spec, ctx.device, torch.float64).net.state_dict()
    assert any(not torch.equal(untrained[name], value) for name, value in results[1][0].net.state_dict().items())


@pytest.mark.parametrize("cc_form, beta", [("paper", 0.0), ("paper", 1.5), ("margin", 0.0), ("margin", 0.9)])
def test_every_cc_form_in_the_batched_distiller_equals_the_per_class_loop(digits, cc_form, beta):
    config = _tiny_config("dm", "cc", cc_form=cc_form, cc_beta=beta)
    ctx, draw, images, _, net = _draw_and_state(config, digits)
    point = images.clone().requires_grad_(True)
    terms = batched_loss_terms(point, net, ctx, draw.passes[0], draw.pool_net)
    (gradient,) = torch.autograd.grad(terms["total"], point)
    reference_point = images.clone().requires_grad_(True)
    reference_cc = sum(reference_class_loss(reference_point, c, net, ctx, draw.passes[0], draw.pool_net)[1]["cc"] for c in range(10))
    reference_total = sum(reference_class_loss(reference_point, c, net, ctx, draw.passes[0], draw.pool_net)[0] for c in range(10))
    (reference_gradient,) = torch.autograd.grad(reference_total, reference_point)
    torch.testing.assert_close(terms["cc"], reference_cc.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gradient, reference_gradient, rtol=1e-5, atol=1e-8)


def test_a_short_table5_sweep_gives_pairwise_different_sets(digits, tmp_path):
    """Table 5 in the margin form: each beta of the paper's sweep changes the objective, so each gives its own set."""
    sets = {}
    for beta in (0.0, 0.7, 0.9, 1.0):
        # IPC 4: with two images per class both sit at the mean distance, and every beta < 1 pulls alike
        config = _tiny_config("dm", "cc", cc_form="margin", cc_beta=beta, iterations=3, lambda_cc=1.0, ipc=4)
        _run(config, digits, tmp_path / f"beta{beta}.pt")
        sets[beta] = load_synthetic_set(tmp_path / f"beta{beta}.pt").images
    betas = list(sets)
    for i, first in enumerate(betas):
        for second in betas[i + 1:]:
            assert not torch.equal(sets[first], sets[second]), (first, second)


# ---------------------------------------------------------------------------------------------- runs


def _run(config, dataset, path, **kwargs):
    return run_distillation(config, dataset, path, "cpu", pool=_pool(), progress=False, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "idm"])
def test_runs_are_deterministic_and_write_every_output(digits, tmp_path, method):
    config = _tiny_config(method, "cc+cm", iterations=4, checkpoint_every=2, eval_every=2, queue_interval=2)
    eval_config = EvalConfig(epochs=1, arch_kwargs=TINY)
    global_rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ipc 2 is not degenerate: no DegenerateIIDWarning
        record = _run(config, digits, tmp_path / "a.pt", eval_config=eval_config)
    assert torch.equal(torch.get_rng_state(), global_rng)  # all randomness came from the run's own generators
    _run(config, digits, tmp_path / "b.pt", eval_config=eval_config)
    first, second = load_synthetic_set(tmp_path / "a.pt"), load_synthetic_set(tmp_path / "b.pt")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.meta["method"] == f"{method.upper()}+IID" and first.meta["method_id"] == f"{method}_iid"  # label and id
    assert first.meta["expand_factor"] == (2 if method == "idm" else 1)
    assert first.meta["params"]["lambda_cm"] == 0.1 and first.meta["params"]["dsa_strategy"] == digits.spec.dsa_strategy
    on_disk = json.loads((tmp_path / "a.json").read_text())
    assert on_disk["iterations"] == 4 and on_disk["it_per_s"] > 0 and on_disk["peak_memory_bytes"] > 0
    assert [entry["iteration"] for entry in on_disk["loss_log"]] == [0, 1, 2, 3]
    assert set(on_disk["loss_log"][0]) == {"iteration", "mean", "cc", "cm", "ce", "total"}
    assert (tmp_path / "a.png").stat().st_size > 0
    rows = (tmp_path / "a.eval.csv").read_text().splitlines()
    assert rows[0] == "iteration,seed,acc" and [row.split(",")[0] for row in rows[1:]] == ["0", "2", "4"]
    assert not (tmp_path / "a.pt.ckpt").exists()
    assert record["resumed_from"] is None
    assert not torch.equal(first.images, initial_images(DistillContext.create(config, digits, "cpu"), make_generator(0)))


def test_a_different_seed_gives_different_images(digits, tmp_path):
    config = _tiny_config("dm", "none", iterations=2)
    _run(config, digits, tmp_path / "a.pt")
    _run(DistillConfig(**{**config.to_dict(), "seed": 1}), digits, tmp_path / "b.pt")
    assert not torch.equal(load_synthetic_set(tmp_path / "a.pt").images, load_synthetic_set(tmp_path / "b.pt").images)


def test_non_finite_loss_names_the_iteration(digits, tmp_path):
    config = _tiny_config("dm", "cc", iterations=3, cc_form="paper", cc_alpha=1e6)
    with pytest.raises(DistillError, match="iteration 0"):
        _run(config, digits, tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()


def test_cc_without_a_pool_and_batchnorm_nets_are_refused(digits, tmp_path):
    with pytest.raises(DistillError, match="--pool"):
        run_distillation(_tiny_config("dm", "cc", iterations=1), digits, tmp_path / "x.pt", "cpu", progress=False)
    with pytest.raises(DistillError, match="BatchNorm"):
        _run(_tiny_config("dm", "none", iterations=1, arch="ConvNetBN", arch_kwargs={}), digits, tmp_path / "y.pt")


def test_state_is_updated_in_place_and_snapshots_stay_fixed(digits):
    """distill_iteration writes the new images into the state's own buffers (heap stability on the CPU); a synthetic
    set taken mid-run is a copy, so later iterations never change it."""
    ctx = DistillContext.create(_tiny_config("dm", "none", iterations=3), digits, "cpu")
    state = initial_state(ctx)
    fresh = FreshNetFactory(ctx.config, digits.spec, ctx.device, torch.float32)
    buffers = (state.images.data_ptr(), state.velocity.data_ptr())
    distill_iteration(state, ctx, fresh, None)
    snapshot = current_synthetic_set(state, ctx, {})
    kept = snapshot.images.clone()
    distill_iteration(state, ctx, fresh, None)
    assert (state.images.data_ptr(), state.velocity.data_ptr()) == buffers
    assert torch.equal(snapshot.images, kept) and not torch.equal(snapshot.images, state.images)


def test_checkpoint_round_trip_and_refusal_of_other_data(digits, tmp_path):
    config = _tiny_config("idm", "cm", iterations=3, queue_interval=1)
    ctx = DistillContext.create(config, digits, "cpu")
    state = initial_state(ctx)
    distill_iteration(state, ctx, None, None)
    path = tmp_path / "run.pt.ckpt"
    save_checkpoint(path, state, ctx, digits)
    restored = restore_state(read_checkpoint(path, ctx, digits), ctx)
    assert restored.iteration == 1 and torch.equal(restored.images, state.images) and torch.equal(restored.velocity, state.velocity)
    assert [member.seed for member in restored.queue] == [member.seed for member in state.queue]
    assert all(torch.equal(a.meter, b.meter) for a, b in zip(restored.queue, state.queue))
    # both continue identically: generators, queue weights and optimiser states all came back
    distill_iteration(state, ctx, None, None)
    distill_iteration(restored, ctx, None, None)
    assert torch.equal(restored.images, state.images)
    other_data = dataclasses.replace(digits, sha256={**digits.sha256, "train_images": "0" * 64})
    with pytest.raises(CheckpointError, match="other digits data .train_images sha256 differ.*--restart"):
        read_checkpoint(path, ctx, other_data)
    other_config = DistillContext.create(dataclasses.replace(config, lr_img=0.7), digits, "cpu")
    with pytest.raises(CheckpointError, match="lr_img: 0.2 in checkpoint, 0.7 now"):
        read_checkpoint(path, other_config, digits)


def test_default_dm_iid_objective_is_the_published_codes(digits):
    """At the default settings the CC and CM terms carry the code's weights and forms: the gradient of the distiller's
    IID terms equals 0.05 * d/dx sum_j ||g_j - mean||^2 + 0.01 * d/dx sum_c ||Sigma_syn - Sigma_real||_F^2, computed
    directly here (the code's formulas, per class, float64)."""
    settings = resolve_distill_settings({}, "cifar10", 10, "dm_iid")
    assert (settings["lambda_cc"], settings["lambda_cm"], settings["cc_form"]) == (0.05, 0.01, "squared")
    config = DistillConfig(**settings)
    torch.manual_seed(3)
    syn = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)  # 2 classes x 3 images, 8-d embeddings
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    maps_syn = torch.randn(6, 4, 3, 2, dtype=torch.float64, requires_grad=True)  # (N, d, h, w) feature maps
    maps_real = torch.randn(10, 4, 3, 2, dtype=torch.float64)
    real_labels = torch.tensor([0] * 5 + [1] * 5)
    from iid_distill.losses import class_centralization_loss, covariance_matching_loss

    ours = (config.lambda_cc * class_centralization_loss(syn, labels, 2, form=config.cc_form, alpha=config.cc_alpha, beta=config.cc_beta)
            + config.lambda_cm * covariance_matching_loss(maps_real, real_labels, maps_syn, labels, 2, unbiased=config.cm_unbiased))
    ours_grad = torch.autograd.grad(ours, [syn, maps_syn])
    code = torch.zeros((), dtype=torch.float64)
    for c in range(2):
        g = syn[labels == c]
        code = code + 0.05 * sum(torch.sum((g[j] - g.mean(0)) ** 2) for j in range(g.shape[0]))
        covariances = []
        for maps in (maps_syn[labels == c], maps_real[real_labels == c]):
            centred = (maps - maps.mean(0)).flatten(2)  # (K, d, hw): local descriptors, centred per channel and position
            covariances.append(torch.einsum("kdh,keh->de", centred, centred) / maps.shape[0])
        code = code + 0.01 * torch.sum((covariances[0] - covariances[1]) ** 2)
    code_grad = torch.autograd.grad(code, [syn, maps_syn])
    torch.testing.assert_close(ours, code, rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(ours_grad, code_grad):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_a_run_of_a_known_method_id_carries_its_display_label(digits, tmp_path):
    from iid_distill.names import method_label as display_label

    config = DistillConfig(method="dm", constraints="none", ipc=1, iterations=1, batch_real=8, arch_kwargs={"width": 8})
    for method_id in ("dm", "dm_cc_eq3", "mine"):
        record = run_distillation(config, digits, tmp_path / f"{method_id}.pt", "cpu", progress=False, provenance={"method_id": method_id})
        expected = display_label(method_id) if method_id != "mine" else "DM"  # an id of one's own: the host and constraints
        assert record["params"]["method_label"] == expected and record["method"] == "DM"
