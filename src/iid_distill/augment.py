"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021) and IDM's partition-and-expand.

Faithful to the DSA used by DM / IDM / IID (``ParamDiffAug`` in the authors' ``utils.py``), rewritten batched:

* ``color``  brightness ``x + (r - 0.5) * 1.0``, then saturation ``(x - m_c) * (2 r) + m_c`` (``m_c`` = mean over
  channels), then contrast ``(x - m) * (r + 0.5) + m`` (``m`` = mean over C, H, W); three separate ``r ~ U(0, 1)``.
* ``crop``   integer translation by ``[-int(H * 0.125 + 0.5), +int(H * 0.125 + 0.5)]`` per axis, zeros moved in.
* ``cutout`` a zeroed square of side ``int(H * 0.5 + 0.5)``, centre ``randint(0, H + 1 - side % 2)``, clipped to the image.
* ``flip``   horizontal flip with probability 0.5.
* ``scale``  ``diag(sx, sy)`` with ``sx, sy ~ U(1/1.2, 1.2)`` through ``affine_grid`` / ``grid_sample`` (align_corners=True).
* ``rotate`` angle ``U(-15, 15)`` degrees, ``theta = [[cos, sin, 0], [-sin, cos, 0]]``, same sampler.

Each call picks ONE op of the strategy uniformly (the original ``aug_mode='S'``).  Parameters are drawn by
:func:`draw_params` and applied by the pure :func:`apply_op`, so each op is testable with given parameters.
All randomness comes from an explicit ``torch.Generator`` living on the images' device.

Two modes:

* :func:`dsa_independent` (evaluation): one op per call, its own parameter draw per sample.
* :func:`dsa_siamese` (distillation): one op and one parameter draw per *group* (class), shared by every sample of
  the group, so a class's real batch and synthetic batch concatenated under the same group id get the same transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from iid_distill.utils import UserError

OP_NAMES: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
FULL_STRATEGY = "_".join(OP_NAMES)
_IDENTITY_STRATEGIES = ("", "none", "None")

Params = dict[str, torch.Tensor]


class AugmentError(UserError, ValueError):
    """Invalid augmentation input: a bad strategy, config value, tensor shape or device."""


@dataclass(frozen=True)
class DSAConfig:
    """DSA strategy and ranges; the defaults are the original ``ParamDiffAug`` values.

    ``strategy`` joins op names from :data:`OP_NAMES` with ``_`` (any subset, any order); ``"none"`` is the identity.
    """

    strategy: str = FULL_STRATEGY
    scale: float = 1.2
    rotate_degrees: float = 15.0
    crop_ratio: float = 0.125
    cutout_ratio: float = 0.5
    flip_probability: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        parse_strategy(self.strategy)
        if not self.scale >= 1.0:
            raise AugmentError(f"DSAConfig.scale={self.scale}: must be >= 1 (factors are drawn from [1/scale, scale])")
        for name in ("rotate_degrees", "crop_ratio", "cutout_ratio", "brightness", "saturation", "contrast"):
            if not getattr(self, name) >= 0.0:
                raise AugmentError(f"DSAConfig.{name}={getattr(self, name)}: must be >= 0")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise AugmentError(f"DSAConfig.flip_probability={self.flip_probability}: must be in [0, 1]")

    @property
    def ops(self) -> tuple[str, ...]:
        return parse_strategy(self.strategy)


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """``"color_crop"`` -> ``("color", "crop")``; ``"none"`` / ``""`` -> ``()`` (identity)."""
    if strategy in _IDENTITY_STRATEGIES:
        return ()
    ops = tuple(strategy.split("_"))
    unknown = [op for op in ops if op not in OP_NAMES]
    if unknown:
        raise AugmentError(f"DSA strategy {strategy!r}: unknown op(s) {unknown}; use '_'-joined names from {OP_NAMES} or 'none'")
    if len(set(ops)) != len(ops):
        raise AugmentError(f"DSA strategy {strategy!r}: an op is listed twice; list each op once")
    return ops


# ----------------------------------------------------------------------------------------------------------------
# Parameter draws: every tensor has leading dimension `count` (one row per sample or per group), float32 or int64.


def _uniform(count: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=device) * (high - low) + low


def crop_max_shift(size: int, config: DSAConfig) -> int:
    """Largest translation along an axis of ``size`` pixels (original ``int(size * ratio + 0.5)``)."""
    return int(size * config.crop_ratio + 0.5)


def cutout_side(size: int, config: DSAConfig) -> int:
    """Side of the cutout square along an axis of ``size`` pixels (original ``int(size * ratio + 0.5)``)."""
    return int(size * config.cutout_ratio + 0.5)


def draw_params(
    op: str, count: int, height: int, width: int, generator: torch.Generator, config: DSAConfig, device: torch.device | str
) -> Params:
    """Draw ``count`` parameter sets for ``op`` (see :func:`apply_op` for their meaning), in the original's order."""
    device = torch.device(device)
    if op == "color":
        return {
            "brightness_shift": (torch.rand(count, generator=generator, device=device) - 0.5) * config.brightness,
            "saturation_factor": torch.rand(count, generator=generator, device=device) * config.saturation,
            "contrast_factor": torch.rand(count, generator=generator, device=device) + config.contrast,
        }
    if op == "crop":
        shift_rows, shift_cols = crop_max_shift(height, config), crop_max_shift(width, config)
        return {
            "shift_rows": torch.randint(-shift_rows, shift_rows + 1, (count,), generator=generator, device=device),
            "shift_cols": torch.randint(-shift_cols, shift_cols + 1, (count,), generator=generator, device=device),
        }
    if op == "cutout":
        side_rows, side_cols = cutout_side(height, config), cutout_side(width, config)
        # Centre range and the side//2 offset follow the original exactly (odd sides get one position fewer).
        centre_rows = torch.randint(0, height + (1 - side_rows % 2), (count,), generator=generator, device=device)
        centre_cols = torch.randint(0, width + (1 - side_cols % 2), (count,), generator=generator, device=device)
        top, left = centre_rows - side_rows // 2, centre_cols - side_cols // 2
        return {"top": top, "bottom": top + side_rows, "left": left, "right": left + side_cols}
    if op == "flip":
        return {"flip": torch.rand(count, generator=generator, device=device) < config.flip_probability}
    if op == "scale":
        low, high = 1.0 / config.scale, config.scale
        scale_x = _uniform(count, low, high, generator, device)
        scale_y = _uniform(count, low, high, generator, device)
        return {"scale_x": scale_x, "scale_y": scale_y}
    if op == "rotate":
        max_radians = math.radians(config.rotate_degrees)
        return {"angle": _uniform(count, -max_radians, max_radians, generator, device)}
    raise AugmentError(f"DSA op {op!r}: unknown; expected one of {OP_NAMES}")


# ----------------------------------------------------------------------------------------------------------------
# Pure application: x is (N, C, H, W); every parameter tensor has shape (N,). Differentiable w.r.t. x.


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, 1, 1, 1)


def apply_color(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Brightness shift, then saturation factor (around the channel mean), then contrast factor (around the image mean)."""
    x = x + _per_sample(params["brightness_shift"], x)
    channel_mean = x.mean(dim=1, keepdim=True)
    x = (x - channel_mean) * _per_sample(params["saturation_factor"], x) + channel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * _per_sample(params["contrast_factor"], x) + image_mean


def apply_crop(x: torch.Tensor, params: Params) -> torch.Tensor:
    """``out[n, :, i, j] = x[n, :, i + shift_rows[n], j + shift_cols[n]]``, zero where that index leaves the image."""
    count, channels, height, width = x.shape
    # As the original: pad one zero pixel, then clamp source indices onto that border.
    padded = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(height, device=x.device) + params["shift_rows"].view(-1, 1) + 1).clamp(0, height + 1)
    cols = (torch.arange(width, device=x.device) + params["shift_cols"].view(-1, 1) + 1).clamp(0, width + 1)
    picked_rows = padded.gather(2, rows.view(count, 1, height, 1).expand(count, channels, height, width + 2))
    return picked_rows.gather(3, cols.view(count, 1, 1, width).expand(count, channels, height, width))


def apply_cutout(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Zero rows ``[top, bottom)`` x columns ``[left, right)`` of each sample (the part inside the image)."""
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, -1)
    in_rows = (rows >= params["top"].view(-1, 1)) & (rows < params["bottom"].view(-1, 1))
    in_cols = (cols >= params["left"].view(-1, 1)) & (cols < params["right"].view(-1, 1))
    keep = ~(in_rows.unsqueeze(2) & in_cols.unsqueeze(1))
    return x * keep.unsqueeze(1).to(x.dtype)


def apply_flip(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Mirror the width axis of the samples whose ``flip`` is true."""
    return torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def apply_scale(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Resample with ``theta = [[scale_x, 0, 0], [0, scale_y, 0]]`` (bilinear, zero padding, align_corners=True)."""
    scale_x, scale_y = params["scale_x"], params["scale_y"]
    zeros = torch.zeros_like(scale_x)
    theta = torch.stack([torch.stack([scale_x, zeros, zeros], 1), torch.stack([zeros, scale_y, zeros], 1)], 1)
    return _affine(x, theta)


def apply_rotate(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Resample with ``theta = [[cos a, sin a, 0], [-sin a, cos a, 0]]`` (a in radians; same sampler as scale)."""
    angle = params["angle"]
    cos, sin, zeros = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zeros], 1), torch.stack([-sin, cos, zeros], 1)], 1)
    return _affine(x, theta)


_APPLY = {
    "color": apply_color,
    "crop": apply_crop,
    "cutout": apply_cutout,
    "flip": apply_flip,
    "scale": apply_scale,
    "rotate": apply_rotate,
}


def apply_op(op: str, x: torch.Tensor, params: Params) -> torch.Tensor:
    """Apply ``op`` to ``x`` (N, C, H, W) with per-sample ``params`` (tensors of shape (N,)); pure and differentiable."""
    if op not in _APPLY:
        raise AugmentError(f"DSA op {op!r}: unknown; expected one of {OP_NAMES}")
    if x.shape[0] == 0:
        return x
    return _APPLY[op](x, params)


# ----------------------------------------------------------------------------------------------------------------
# The two modes.


def _check_images(x: torch.Tensor, generator: torch.Generator) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise AugmentError(f"DSA input: expected a float tensor (N, C, H, W), got {tuple(x.shape)} {x.dtype}")
    if generator.device.type != x.device.type:
        raise AugmentError(f"DSA generator is on {generator.device} but the images are on {x.device}; create it with make_generator(seed, device)")


def dsa_independent(x: torch.Tensor, generator: torch.Generator, config: DSAConfig = DSAConfig()) -> torch.Tensor:
    """Evaluation-time DSA: one op per call, drawn uniformly from the strategy, with its own parameters per sample.

    ``x`` (N, C, H, W) -> same shape, on ``x``'s device; ``generator`` must live on that device.
    One host sync (the op choice) per call.
    """
    _check_images(x, generator)
    ops = config.ops
    if not ops:
        return x
    op = ops[int(torch.randint(len(ops), (1,), generator=generator, device=x.device).item())]
    params = draw_params(op, x.shape[0], x.shape[2], x.shape[3], generator, config, x.device)
    return apply_op(op, x, params)


@dataclass(frozen=True)
class GroupPlan:
    """One op and one parameter draw per group.

    ``op_index`` (num_groups,) int64 indexes ``ops``; ``params[op]`` holds that op's parameters for every group
    (tensors of shape (num_groups,)), drawn for all ops so the generator's consumption never depends on the outcome.
    """

    ops: tuple[str, ...]
    op_index: torch.Tensor
    params: dict[str, Params]


def draw_group_plan(
    num_groups: int, height: int, width: int, generator: torch.Generator, config: DSAConfig, device: torch.device | str
) -> GroupPlan:
    """Draw the op of each group, then every op's parameters per group (vectors of length ``num_groups``)."""
    ops = config.ops
    if num_groups < 1:
        raise AugmentError(f"DSA num_groups={num_groups}: must be >= 1")
    if not ops:
        return GroupPlan(ops=ops, op_index=torch.zeros(num_groups, dtype=torch.int64, device=device), params={})
    op_index = torch.randint(len(ops), (num_groups,), generator=generator, device=device)
    params = {op: draw_params(op, num_groups, height, width, generator, config, device) for op in ops}
    return GroupPlan(ops=ops, op_index=op_index, params=params)


def apply_group_plan(x: torch.Tensor, groups: torch.Tensor, plan: GroupPlan, *, sync_free: bool | None = None) -> torch.Tensor:
    """Apply ``plan`` to ``x`` (N, C, H, W): sample n gets its group ``groups[n]``'s op and parameters.

    Samples are sorted by op and each op runs once on its subset; one host sync fetches the subset sizes
    (and checks the group ids) for the whole batch. ``sync_free`` (default: on CUDA) instead runs every op on the
    whole batch and keeps each sample's own result: the same values with no host sync (the group ids are checked
    on the device), for the strategy's number of ops times the augmentation's arithmetic.
    """
    num_groups = plan.op_index.shape[0]
    if groups.dim() != 1 or groups.shape[0] != x.shape[0] or groups.dtype != torch.int64:
        raise AugmentError(f"DSA groups: expected an int64 tensor of shape ({x.shape[0]},), got {tuple(groups.shape)} {groups.dtype}")
    if not plan.ops or x.shape[0] == 0:
        return x
    groups = groups.to(x.device)
    if x.device.type == "cuda" if sync_free is None else sync_free:
        return _apply_every_op(x, groups, plan)
    invalid = ((groups < 0) | (groups >= num_groups)).sum().view(1)
    safe_groups = groups.clamp(0, num_groups - 1)  # indexing stays in range until the check below has run
    sample_op = plan.op_index[safe_groups]
    counts = torch.cat([torch.bincount(sample_op, minlength=len(plan.ops)), invalid]).tolist()
    if counts[-1]:
        raise AugmentError(f"DSA groups: {counts[-1]} id(s) outside [0, {num_groups}); pass num_groups > the largest group id")
    order = torch.argsort(sample_op, stable=True)
    pieces = []
    for op, indices in zip(plan.ops, order.split(counts[:-1])):
        if indices.numel() == 0:
            continue
        sample_groups = safe_groups[indices]
        params = {name: values[sample_groups] for name, values in plan.params[op].items()}
        pieces.append(apply_op(op, x[indices], params))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(pieces)[inverse]


def _apply_every_op(x: torch.Tensor, groups: torch.Tensor, plan: GroupPlan) -> torch.Tensor:
    """:func:`apply_group_plan` without a host sync: each op on every sample, each sample's own op kept."""
    num_groups = plan.op_index.shape[0]
    torch._assert_async(((groups >= 0) & (groups < num_groups)).all(), f"DSA groups: an id outside [0, {num_groups})")
    safe_groups = groups.clamp(0, num_groups - 1)
    sample_op = plan.op_index[safe_groups].view(-1, 1, 1, 1)
    result = x
    for index, op in enumerate(plan.ops):
        params = {name: values[safe_groups] for name, values in plan.params[op].items()}
        result = torch.where(sample_op == index, apply_op(op, x, params), result)
    return result


def dsa_siamese(
    x: torch.Tensor, groups: torch.Tensor, num_groups: int, generator: torch.Generator, config: DSAConfig = DSAConfig()
) -> torch.Tensor:
    """Distillation-time DSA: every sample of a group gets the group's op and parameters.

    ``x`` (N, C, H, W), ``groups`` int64 (N,) with ids in ``[0, num_groups)`` -> (N, C, H, W) on ``x``'s device.
    Concatenate a class's real and synthetic images under the same id to give them the identical transform.
    """
    _check_images(x, generator)
    if not config.ops:
        return x
    plan = draw_group_plan(num_groups, x.shape[2], x.shape[3], generator, config, x.device)
    return apply_group_plan(x, groups, plan)


# ----------------------------------------------------------------------------------------------------------------
# IDM's partition-and-expansion and its tiled initialisation.


def _check_divisible(images: torch.Tensor, factor: int, what: str) -> None:
    if images.dim() != 4:
        raise AugmentError(f"{what}: expected images (N, C, H, W), got shape {tuple(images.shape)}")
    if factor < 1 or images.shape[2] % factor or images.shape[3] % factor:
        raise AugmentError(f"{what}: factor {factor} must be >= 1 and divide the image size {tuple(images.shape[2:])}")


def partition_and_expand(images: torch.Tensor, labels: torch.Tensor, factor: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each image into ``factor x factor`` patches and upsample each back to full size (IDM / IDC decode).

    ``images`` (N, C, H, W), ``labels`` (N,) -> images (factor^2 * N, C, H, W), labels (factor^2 * N,), patch-major:
    rows ``[k * N, (k + 1) * N)`` hold patch ``k = i * factor + j`` (row i, column j) of every image, in input order.
    Upsampling is bilinear with align_corners=False (``nn.Upsample(mode='bilinear')``). Differentiable.
    """
    _check_divisible(images, factor, "partition_and_expand")
    if labels.shape[:1] != images.shape[:1]:
        raise AugmentError(f"partition_and_expand: {labels.shape[0]} labels for {images.shape[0]} images")
    count, channels, height, width = images.shape
    patch_h, patch_w = height // factor, width // factor
    patches = images.reshape(count, channels, factor, patch_h, factor, patch_w).permute(2, 4, 0, 1, 3, 5)
    patches = patches.reshape(factor * factor * count, channels, patch_h, patch_w)
    expanded = F.interpolate(patches, size=(height, width), mode="bilinear", align_corners=False)
    return expanded, labels.repeat(factor * factor)


def tile_downscaled(images: torch.Tensor, factor: int = 2, mode: str = "bilinear") -> torch.Tensor:
    """Build IDM's initial images: each output tiles ``factor^2`` source images, each downscaled by ``factor``.

    ``images`` (factor^2 * K, C, H, W), read as K consecutive groups of factor^2 -> (K, C, H, W); source
    ``k * factor^2 + i * factor + j`` fills tile (row i, column j) of output k.  ``mode`` is passed to
    ``F.interpolate`` (antialias off; align_corners=False for bilinear). The published IDM/IID code downscales with
    ``F.upsample(scale_factor=0.5, mode="bilinear")`` (``dc_utils.downscale``), the default here; ``nearest`` is offered
    for comparison only.
    """
    _check_divisible(images, factor, "tile_downscaled")
    tiles = factor * factor
    if images.shape[0] % tiles:
        raise AugmentError(f"tile_downscaled: {images.shape[0]} images is not a multiple of factor^2 = {tiles}")
    count, channels, height, width = images.shape
    tile_h, tile_w = height // factor, width // factor
    align = False if mode in ("bilinear", "bicubic") else None
    small = F.interpolate(images, size=(tile_h, tile_w), mode=mode, align_corners=align, antialias=False)
    small = small.reshape(count // tiles, factor, factor, channels, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5)
    return small.reshape(count // tiles, channels, height, width)
