"""The literal per-class loop of the authors' code: the slow test oracle the batched path is checked against (kept out
of the package: nothing in production reaches it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.augment import apply_group_plan
from iid_distill.distill.context import DistillContext, _full_precision, expand_training_view
from iid_distill.distill.draws import MatchDraw
from iid_distill.distill.settings import LOSS_TERMS


def _reference_covariance(local: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """The authors' local covariance: (N, d, hw) -> mean over samples of (X_i - mean)(X_i - mean)^T."""
    centred = local - local.mean(dim=0, keepdim=True)
    products = torch.matmul(centred, centred.transpose(1, 2))
    if unbiased:
        return products.sum(dim=0) / max(local.shape[0] - 1, 1)
    return products.mean(dim=0)


def reference_class_loss(
    images: torch.Tensor,
    c: int,
    net: nn.Module,
    ctx: DistillContext,
    draw: MatchDraw,
    pool_net: nn.Module | None = None,
    ce_scale: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Class ``c``'s loss as the authors' per-class loop computes it (slow path; tests and benchmark only).

    Per class: real images, the class's stored images (IDM: partitioned and expanded), the same DSA op and parameters
    on both (``apply_group_plan`` with the class's plan entries), the real embedding detached, then
    ||mean real - mean syn||^2, the local covariance difference, the CC sum over the class's images (a Python loop
    over samples, as the authors' code) and IDM's CE on ``net(img_syn)``.
    """
    config = ctx.config
    start, end = ctx.sampler.class_offsets[c], ctx.sampler.class_offsets[c + 1]
    img_real = ctx.real_images(draw.real_indices[start:end])
    img_syn = images[c * config.ipc : (c + 1) * config.ipc]
    lab_syn = torch.full((config.ipc,), c, dtype=torch.int64, device=images.device)
    img_syn, lab_syn = expand_training_view(img_syn, lab_syn, config.expand_factor)
    if draw.plan is not None:
        img_real = apply_group_plan(img_real, torch.full((img_real.shape[0],), c, dtype=torch.int64, device=images.device), draw.plan)
        img_syn = apply_group_plan(img_syn, lab_syn, draw.plan)
    img_real, img_syn = ctx.memory_format(img_real), ctx.memory_format(img_syn)
    with ctx.autocast():
        map_real = net.feature_map(img_real).detach()
        output_real = net.embedding_from_map(map_real).detach()
        map_syn = net.feature_map(img_syn)
        output_syn = net.embedding_from_map(map_syn)
    output_real, output_syn = _full_precision(output_real), _full_precision(output_syn)
    zero = images.new_zeros(())
    parts = {"mean": torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2), "cc": zero, "cm": zero, "ce": zero}
    if config.uses_cm:
        local_real = _full_precision(map_real).reshape(map_real.shape[0], map_real.shape[1], -1)
        local_syn = _full_precision(map_syn).reshape(map_syn.shape[0], map_syn.shape[1], -1)
        parts["cm"] = torch.sum((_reference_covariance(local_real, config.cm_unbiased) - _reference_covariance(local_syn, config.cm_unbiased)) ** 2)
    if config.uses_cc:
        with ctx.autocast():
            output_syn_res = _full_precision(pool_net.embed(img_syn))
        syn_mean = torch.mean(output_syn_res, dim=0)
        cc = zero
        for idx in range(output_syn_res.shape[0]):
            distance = torch.sum((output_syn_res[idx] - syn_mean) ** 2)
            if config.cc_form == "squared":
                cc = cc + distance
            elif config.cc_form == "margin":
                mean_distance = torch.sum((output_syn_res.detach() - syn_mean.detach()) ** 2) / output_syn_res.shape[0]
                cc = cc + torch.clamp(distance - config.cc_beta * mean_distance, min=0.0)
            else:
                cc = cc + torch.clamp(torch.exp(config.cc_alpha * distance) - config.cc_beta, min=0.0)
        parts["cc"] = cc
    if config.uses_ce:
        with ctx.autocast():
            logits_syn = net(img_syn)
        parts["ce"] = config.ce_weight * ce_scale * F.cross_entropy(_full_precision(logits_syn), lab_syn)
    loss_c = parts["mean"] + config.lambda_cc * parts["cc"] + config.lambda_cm * parts["cm"] + parts["ce"]
    return loss_c, parts


def reference_per_class_step(
    images: torch.Tensor,
    velocity: torch.Tensor,
    net: nn.Module,
    ctx: DistillContext,
    draw: MatchDraw,
    pool_net: nn.Module | None = None,
    ce_scale: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The authors' loop, literally: per class, :func:`reference_class_loss`; ``per_class``: zero_grad, backward and a
    ``torch.optim.SGD`` step on ALL images inside the class loop (IDM); ``joint``: one step on the summed loss (DM).

    Slow path kept for the tests and ``benchmarks/distill_speed.py``. Matching and CC networks are frozen, as in
    DM's and IID's code (IDM's code leaves the matching network's weights trainable and so also computes their unused
    gradients; that changes nothing else). Returns (new images, new momentum buffer, loss terms summed over classes).
    """
    config = ctx.config
    parameter = images.detach().clone().requires_grad_(True)
    optimizer = torch.optim.SGD([parameter], lr=config.lr_img, momentum=config.momentum_img)
    optimizer.state[parameter]["momentum_buffer"] = velocity.detach().clone()
    sums = {name: images.new_zeros(()) for name in LOSS_TERMS}
    joint_loss = images.new_zeros(())
    for c in range(ctx.num_classes):
        loss_c, parts = reference_class_loss(parameter, c, net, ctx, draw, pool_net, ce_scale)
        if config.image_step == "per_class":
            optimizer.zero_grad()
            loss_c.backward()
            optimizer.step()
        else:
            joint_loss = joint_loss + loss_c
        for name, value in parts.items():
            sums[name] = sums[name] + value.detach()
        sums["total"] = sums["total"] + loss_c.detach()
    if config.image_step == "joint":
        optimizer.zero_grad()
        joint_loss.backward()
        optimizer.step()
    return parameter.detach(), optimizer.state[parameter]["momentum_buffer"].detach(), sums
