"""The device checks (used by tests/test_device_checks.py): on a device, the distiller's state and loss terms stay
there, bf16 autocast computes in bf16 with fp32 losses, the vmapped evaluation ensemble equals the seeds one by one,
and the distiller agrees with the CPU's replayed run within float rounding. On the CPU they check themselves (and
the test suite runs them there); marked ``gpu``, the same tests run on CUDA, first in a GPU lease
(`python -m pytest -m gpu tests/test_device_checks.py`)."""

from __future__ import annotations


def _iteration_setup(variant: str, dataset, device, seed: int = 0, ipc: int = 10, **overrides):
    import torch

    from iid_distill.distill import DistillConfig, DistillContext, FreshNetFactory, InMemoryPool, initial_state, published_settings
    from iid_distill.models import get_network

    method, constraints = {"dm": ("dm", "none"), "dm_iid": ("dm", "cc+cm"), "idm_iid": ("idm", "cc+cm")}[variant]
    spec = dataset.spec
    config = DistillConfig(**{**published_settings(spec.name, ipc, method, constraints, source="code"), "seed": seed, **overrides})
    pool = InMemoryPool([get_network("ResNet18", spec.channels, spec.num_classes, spec.image_size, seed=0).to(device)])
    ctx = DistillContext.create(config, dataset, device)
    state = initial_state(ctx)
    fresh = FreshNetFactory(config, spec, torch.device(device), torch.float32) if method == "dm" else None
    return ctx, state, fresh, pool


def check_placement(dataset, device: str, ipc: int = 10) -> dict:
    """One DM+IID iteration on ``device``: every tensor of the state and the loss terms live there."""
    from iid_distill.distill import distill_iteration

    ctx, state, fresh, pool = _iteration_setup("dm_iid", dataset, device, ipc=ipc, batch_real=32)
    terms = distill_iteration(state, ctx, fresh, pool)
    devices = {str(state.images.device), str(state.velocity.device), str(ctx.train_images.device), *(str(v.device) for v in terms.values())}
    expected = str(ctx.device) if ctx.device.index is not None or ctx.device.type == "cpu" else f"{ctx.device.type}:0"
    ok = devices == {expected}
    return {"ok": ok, "devices": sorted(devices), "expected": expected}


def check_autocast(dataset, device: str, ipc: int = 10) -> dict:
    """bf16 autocast: activations inside are bf16, the loss terms are finite fp32."""
    import torch

    from iid_distill.distill import distill_iteration

    ctx, state, fresh, pool = _iteration_setup("dm_iid", dataset, device, ipc=ipc, batch_real=32, precision="bf16")
    net = fresh(0)
    probe = ctx.real_images(ctx.sampler.sample(state.device_generator)[:4])
    # a convolution's output: normalisation layers may run in fp32 by autocast's own op list (CUDA's does)
    first_conv = next(module for module in net.modules() if isinstance(module, torch.nn.Conv2d))
    seen = []
    hook = first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with ctx.autocast():
        net.feature_map(probe)
    hook.remove()
    inner = seen[0]
    terms = distill_iteration(state, ctx, fresh, pool)
    finite = all(bool(torch.isfinite(value)) for value in terms.values())
    outer = {str(value.dtype) for value in terms.values()}
    return {"ok": inner == torch.bfloat16 and finite and outer == {"torch.float32"}, "activation_dtype": str(inner), "loss_dtypes": sorted(outer), "finite": finite}


def check_vmapped_evaluation(dataset, device: str, epochs: int = 3) -> dict:
    """The vmapped seed ensemble trains the same weights as the seeds one by one (same test accuracies)."""
    import dataclasses

    import torch

    from iid_distill.evaluate import EvalConfig, train_evaluation_networks

    spec = dataset.spec
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(spec.num_classes * 2, spec.channels, spec.image_size, spec.image_size, generator=generator).to(device)
    labels = torch.arange(spec.num_classes).repeat_interleave(2).to(device)
    config = EvalConfig(epochs=epochs, arch_kwargs={"width": 16})
    batched = train_evaluation_networks(images, labels, spec, dataclasses.replace(config, seed_batching="batched"), [0, 1, 2], device)
    sequential = train_evaluation_networks(images, labels, spec, dataclasses.replace(config, seed_batching="sequential"), [0, 1, 2], device)
    difference = 0.0
    for one, two in zip(batched, sequential):
        for (name, a), (_, b) in zip(one.net.state_dict().items(), two.net.state_dict().items()):
            difference = max(difference, float((a.float() - b.float()).abs().max()))
    return {"ok": difference < 1e-4, "max_weight_difference": difference}


def _moved_draw(draw, device, cpu_pool, device_pool):
    """An IterationDraw made on the CPU, with its tensors on ``device`` and the same pool network's twin there."""
    from iid_distill.augment import GroupPlan
    from iid_distill.distill import IterationDraw, MatchDraw

    def plan_on(plan):
        if plan is None:
            return None
        return GroupPlan(plan.ops, plan.op_index.to(device), {op: {k: v.to(device) for k, v in p.items()} for op, p in plan.params.items()})

    passes = [MatchDraw(one.real_indices.to(device), plan_on(one.plan)) for one in draw.passes]
    pool_net = None if draw.pool_net is None else device_pool.models[[id(m) for m in cpu_pool.models].index(id(draw.pool_net))]
    batches = None if draw.train_batches is None else draw.train_batches.to(device)
    return IterationDraw(draw.net_seed, draw.match_slots, passes, pool_net, draw.train_slots, batches)


def check_agreement(dataset, device: str, iterations: int, tolerance: float, ipc: int = 10, variants=("dm_iid", "idm_iid"),
                    sensitivity_factor: float = 3.0) -> dict:
    """The distiller on ``device`` against the CPU for DM+IID and IDM+IID: the device run replays the CPU run's
    draws (its generators draw differently) from the same initial images; TF32 off, so both are fp32 throughout.

    The runs amplify rounding: a twin CPU run whose initial images differ by one float32 rounding step (relative
    2^-23) drifts from the CPU run by about as much as a correct device run does (CIFAR-10, IPC 10, batch_real 32,
    3 iterations: 0.017-0.019 for CC). So a variant passes when the device differs from the CPU by at most
    ``tolerance`` or by at most ``sensitivity_factor`` times that twin's drift; a real fault (a wrong term, a lost
    draw) moves the images by the size of an update, 0.1-0.4 per iteration."""
    import torch

    import iid_distill.distill as distill
    import iid_distill.distill.iteration as iteration_module  # where distill_iteration looks its draw up

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    differences, sensitivities, moved = {}, {}, {}
    original_draw = distill.draw_iteration
    for variant in variants:
        overrides = dict(ipc=ipc, batch_real=32, queue_initial=2, train_steps=2)
        cpu_ctx, cpu_state, cpu_fresh, cpu_pool = _iteration_setup(variant, dataset, "cpu", **overrides)
        dev_ctx, dev_state, dev_fresh, dev_pool = _iteration_setup(variant, dataset, device, **overrides)
        twin_ctx, twin_state, twin_fresh, _ = _iteration_setup(variant, dataset, "cpu", **overrides)
        start = cpu_state.images.clone()
        dev_state.images = start.to(device, copy=True)  # the iterations update state.images in place
        signs = torch.randint(0, 2, start.shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1
        twin_state.images = start * (1 + 2.0 ** -23 * signs)
        replay_ctx, replay_state, _, _ = _iteration_setup(variant, dataset, "cpu", **overrides)  # draws only
        for _ in range(iterations):
            distill.distill_iteration(cpu_state, cpu_ctx, cpu_fresh, cpu_pool)

            def replayed(iteration, ctx, host, dev, queue_length=0, pool=None):
                draw = original_draw(iteration, replay_ctx, replay_state.host_generator, replay_state.device_generator, queue_length, cpu_pool)
                return _moved_draw(draw, device, cpu_pool, dev_pool)

            iteration_module.draw_iteration = replayed
            try:
                distill.distill_iteration(dev_state, dev_ctx, dev_fresh, dev_pool)
            finally:
                iteration_module.draw_iteration = original_draw
            distill.distill_iteration(twin_state, twin_ctx, twin_fresh, cpu_pool)  # same seeds: the CPU run's draws
        differences[variant] = float((cpu_state.images - dev_state.images.cpu()).abs().max())
        sensitivities[variant] = float((cpu_state.images - twin_state.images).abs().max())
        moved[variant] = float((cpu_state.images - start).abs().max())
    ok = all(differences[v] <= max(tolerance, sensitivity_factor * sensitivities[v]) for v in variants)
    return {"ok": ok, "max_image_difference": differences, "rounding_sensitivity": sensitivities, "max_image_change": moved,
            "tolerance": tolerance, "sensitivity_factor": sensitivity_factor, "iterations": iterations, "tf32": False}
