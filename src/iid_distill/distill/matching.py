"""Every class's loss and gradient in one batched pass (the host's matching term and IID's constraints), and the image
update (DM's joint step, IDM's exact per-class steps).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from iid_distill.augment import apply_group_plan
from iid_distill.distill.context import DistillContext, _full_precision, expand_training_view, per_class_coefficients
from iid_distill.distill.draws import MatchDraw
from iid_distill.distill.hosts.base import MatchFeatures, concat_features, map_features
from iid_distill.distill.settings import DistillConfig, LOSS_TERMS, host_of
from iid_distill.losses import class_aware_ce_loss, class_centralization_loss, covariance_matching_loss


@torch.no_grad()
def real_features(net: nn.Module, ctx: DistillContext, draw: MatchDraw, need_map: bool) -> MatchFeatures:
    """The host's features of the pass's real images (the feature map only if ``need_map``), in chunks of
    ``real_chunk``, in full precision."""
    labels = ctx.sampler.labels
    parts = []
    chunk = ctx.chunks[0]
    for start in range(0, labels.numel(), chunk):
        images = ctx.real_images(draw.real_indices[start : start + chunk])
        if draw.plan is not None:
            with torch.profiler.record_function("distill/dsa"):
                images = ctx.memory_format(apply_group_plan(images, labels[start : start + chunk], draw.plan))
        with torch.profiler.record_function("distill/forward_real"), ctx.autocast():
            features = ctx.match_forward(net, images)
        parts.append(map_features(features._replace(feature_map=features.feature_map if need_map else None), _full_precision))
    return concat_features(parts)


def batched_loss_terms(
    images: torch.Tensor,
    net: nn.Module,
    ctx: DistillContext,
    draw: MatchDraw,
    pool_net: nn.Module | None = None,
    ce_scale: float | torch.Tensor = 0.0,
    *,
    classes: tuple[int, int] | None = None,
    real: MatchFeatures | None = None,
) -> dict[str, torch.Tensor]:
    """Every class's loss at once for the stored images ``images`` (class-major, ipc per class).

    Returns 0-d tensors: ``mean`` (the host's matching term: DM's Eq. 2, DataDAM's attention matching, M3D's MMD,
    summed over classes), ``cc`` (Eq. 3, on g of the augmented synthetic batch), ``cm`` (Eq. 5, on the host's last
    feature map), ``ce`` (IDM's class-aware CE, already weighted by ce_weight and ``ce_scale`` = the matching
    network's train accuracy in percent) and ``total`` = mean + lambda_cc cc + lambda_cm cm + ce.
    Terms that are off are zero. ``net`` and ``pool_net`` must be frozen (no parameter gradients).

    ``classes=(c0, c1)``: ``images`` hold only classes c0..c1-1 (a class group; the losses are sums of independent
    per-class terms, so groups add up exactly); ``real``: this pass's :func:`real_features`, if already computed.
    """
    config = ctx.config
    host = host_of(config.method)
    first, last = classes if classes is not None else (0, ctx.num_classes)
    num_classes = last - first
    stored_labels = ctx.syn_labels[first * config.ipc : last * config.ipc]
    syn, syn_labels = expand_training_view(images, stored_labels, config.expand_factor)
    if draw.plan is not None:
        with torch.profiler.record_function("distill/dsa"):
            syn = apply_group_plan(syn, syn_labels, draw.plan)
    syn = ctx.memory_format(syn)
    global_labels, syn_labels = syn_labels, syn_labels - first  # group-local ids: the losses pad only this group's classes
    real = real if real is not None else real_features(net, ctx, draw, config.uses_cm)
    real_rows = slice(ctx.sampler.class_offsets[first], ctx.sampler.class_offsets[last])
    real_labels = ctx.sampler.labels[real_rows] - first
    real = map_features(real, lambda tensor: tensor[real_rows])
    with torch.profiler.record_function("distill/forward_syn"), ctx.autocast():
        syn_features = ctx.match_forward(net, syn)
        logits = net.classifier(syn_features.embedding) if config.uses_ce else None
    syn_features = map_features(syn_features, _full_precision)
    zero = images.new_zeros(())
    terms = {"mean": host.matching_loss(real, real_labels, syn_features, syn_labels, num_classes, config)}
    terms["cc"] = zero
    if config.uses_cc:
        with torch.profiler.record_function("distill/cc_network"), ctx.autocast():
            g = ctx.embed_forward(pool_net, syn)
        terms["cc"] = class_centralization_loss(_full_precision(g), syn_labels, num_classes, form=config.cc_form, alpha=config.cc_alpha, beta=config.cc_beta)
    terms["cm"] = zero
    if config.uses_cm:
        terms["cm"] = covariance_matching_loss(real.feature_map, real_labels, syn_features.feature_map, syn_labels, num_classes,
                                               unbiased=config.cm_unbiased)
    terms["ce"] = zero
    if config.uses_ce:
        # the CE targets are the real class ids (logits span all classes); absent classes add nothing
        terms["ce"] = class_aware_ce_loss(_full_precision(logits), global_labels, ctx.num_classes, ce_scale, config.ce_weight)
    terms["total"] = terms["mean"] + config.lambda_cc * terms["cc"] + config.lambda_cm * terms["cm"] + terms["ce"]
    return terms


def class_groups(num_classes: int, images_per_class: int, syn_chunk: int) -> list[tuple[int, int]]:
    """Consecutive class ranges holding at most ``syn_chunk`` synthetic training images each (at least one class),
    as few as that allows and balanced (sizes differ by at most one class): where the classes divide evenly the groups
    share one batch shape, so a compiled pass is not compiled again for a smaller last group (CIFAR-10 IPC 10 in groups
    of 64: 50 + 50 images, not 60 + 40), and the largest group is as small as it can be."""
    count = -(-num_classes // max(1, syn_chunk // images_per_class))
    bounds = [round(k * num_classes / count) for k in range(count + 1)]
    return list(zip(bounds, bounds[1:]))


def batched_loss_and_gradient(
    images: torch.Tensor,
    net: nn.Module,
    ctx: DistillContext,
    draw: MatchDraw,
    pool_net: nn.Module | None = None,
    ce_scale: float | torch.Tensor = 0.0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Loss terms (detached) and the gradient of ``total`` w.r.t. the stored ``images``.

    The real images go through the network once; the synthetic side runs in class groups of at most ``syn_chunk``
    training images (one group on GPU by default), each with its own forward and backward, so activation memory stays
    bounded. The group losses are sums of independent per-class terms on disjoint image slices, so the group gradients
    are the exact slices of the full gradient.
    """
    config = ctx.config
    real = real_features(net, ctx, draw, config.uses_cm)
    totals: dict[str, torch.Tensor] = {}
    gradients = []
    for first, last in class_groups(ctx.num_classes, config.ipc * config.expand_factor**2, ctx.chunks[1]):
        leaf = images[first * config.ipc : last * config.ipc].detach().requires_grad_(True)
        terms = batched_loss_terms(leaf, net, ctx, draw, pool_net, ce_scale, classes=(first, last), real=real)
        with torch.profiler.record_function("distill/backward"):
            (gradient,) = torch.autograd.grad(terms["total"], leaf)
        gradients.append(gradient)
        for name in LOSS_TERMS:
            totals[name] = totals[name] + terms[name].detach() if name in totals else terms[name].detach()
    return totals, torch.cat(gradients) if len(gradients) > 1 else gradients[0]


def _per_sample(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return values[labels].view(-1, 1, 1, 1)


def image_step(
    images: torch.Tensor,
    velocity: torch.Tensor,
    labels: torch.Tensor,
    gradient_fn: Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor]],
    config: DistillConfig,
    num_classes: int,
    coefficients: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One SGD-with-momentum update of ``images`` (buffer ``velocity``); ``gradient_fn(point)`` returns the loss terms
    and the gradient of their ``total`` at ``point`` (:func:`batched_loss_and_gradient`).

    ``joint``: exactly ``torch.optim.SGD(momentum=mu)`` on the summed loss (the first step's buffer is the gradient,
    as ``mu * 0 + g``). ``per_class``: the published per-class loop, via :func:`per_class_coefficients`: the loss is
    evaluated at every slice's drifted point, one batched backward gives every class's gradient (each class's loss
    depends on its own slice only), the closed forms finish the loop. ``coefficients``: precomputed :func:`per_class_coefficients`.
    Returns (new images, new velocity, the loss terms).
    """
    lr, mu = float(config.lr_img), float(config.momentum_img)
    if config.image_step == "joint":
        terms, gradient = gradient_fn(images.detach())
        velocity = velocity.mul(mu).add_(gradient)
        return images.add(velocity, alpha=-lr), velocity, terms
    if coefficients is None:
        coefficients = per_class_coefficients(num_classes, mu, images.device, images.dtype)
    point = images - lr * _per_sample(coefficients["drift"], labels) * velocity
    terms, gradient = gradient_fn(point)
    buffer = _per_sample(coefficients["decay"], labels) * velocity + gradient
    new_images = point - lr * _per_sample(coefficients["tail"], labels) * buffer
    return new_images, _per_sample(coefficients["tail_decay"], labels) * buffer, terms
