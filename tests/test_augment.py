"""DSA ops against slow reference computations, the two sampling modes, and IDM's partition / tiling."""

from __future__ import annotations

import collections

import math

import pytest
import torch
import torch.nn.functional as F

from iid_distill.augment import (
    OP_NAMES,
    AugmentError,
    DSAConfig,
    apply_group_plan,
    apply_op,
    cutout_side,
    draw_group_plan,
    draw_params,
    dsa_independent,
    dsa_siamese,
    parse_strategy,
    partition_and_expand,
    tile_downscaled,
)
from iid_distill.utils import make_generator


def _images(count: int = 4, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, channels, size, size, generator=make_generator(seed))


# ---------------------------------------------------------------------------------------------------------------
# Each op with given parameters against an explicit, slow computation.


def test_color_matches_formulas():
    x = _images(3)
    shift, sat, con = [-0.3, 0.1, 0.45], [0.2, 1.0, 1.9], [0.6, 1.0, 1.4]
    params = {"brightness_shift": torch.tensor(shift), "saturation_factor": torch.tensor(sat), "contrast_factor": torch.tensor(con)}
    out = apply_op("color", x, params)
    for n in range(3):
        y = x[n] + shift[n]
        channel_mean = sum(y[c] for c in range(3)) / 3
        y = torch.stack([(y[c] - channel_mean) * sat[n] + channel_mean for c in range(3)])
        image_mean = y.sum() / y.numel()
        y = (y - image_mean) * con[n] + image_mean
        torch.testing.assert_close(out[n], y)


def test_crop_matches_explicit_translation():
    x = _images(4, channels=2, size=6)
    shift_rows, shift_cols = [0, 2, -1, -3], [1, -2, 0, 3]
    out = apply_op("crop", x, {"shift_rows": torch.tensor(shift_rows), "shift_cols": torch.tensor(shift_cols)})
    expected = torch.zeros_like(x)
    for n in range(4):
        for c in range(2):
            for i in range(6):
                for j in range(6):
                    si, sj = i + shift_rows[n], j + shift_cols[n]
                    if 0 <= si < 6 and 0 <= sj < 6:
                        expected[n, c, i, j] = x[n, c, si, sj]
    assert torch.equal(out, expected)


@pytest.mark.parametrize("side", [3, 4])
def test_cutout_matches_original_clamped_loop(side):
    size = 8
    centres = [(0, 0), (size - side % 2, 3), (4, size - side % 2), (2, 5)]  # includes the extreme centres
    x = _images(len(centres), size=size)
    top = torch.tensor([r - side // 2 for r, _ in centres])
    left = torch.tensor([c - side // 2 for _, c in centres])
    out = apply_op("cutout", x, {"top": top, "bottom": top + side, "left": left, "right": left + side})
    for n, (centre_r, centre_c) in enumerate(centres):
        mask = torch.ones(size, size)
        for a in range(side):  # the original's gather with indices clamped to the image
            for b in range(side):
                r = min(max(centre_r - side // 2 + a, 0), size - 1)
                c = min(max(centre_c - side // 2 + b, 0), size - 1)
                mask[r, c] = 0
        assert torch.equal(out[n], x[n] * mask)


def test_flip_matches_explicit_mirror():
    x = _images(3, size=5)
    out = apply_op("flip", x, {"flip": torch.tensor([True, False, True])})
    for n, flipped in enumerate([True, False, True]):
        for j in range(5):
            assert torch.equal(out[n, :, :, j], x[n, :, :, 4 - j] if flipped else x[n, :, :, j])


def _reference_affine(image: torch.Tensor, theta_rows: list[list[float]]) -> torch.Tensor:
    theta = torch.tensor([theta_rows], dtype=image.dtype)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=True)
    return F.grid_sample(image[None], grid, align_corners=True)[0]


def test_scale_matches_per_sample_affine():
    x = _images(3, size=9)
    scale_x, scale_y = [0.85, 1.0, 1.19], [1.1, 0.9, 1.0]
    out = apply_op("scale", x, {"scale_x": torch.tensor(scale_x), "scale_y": torch.tensor(scale_y)})
    for n in range(3):
        expected = _reference_affine(x[n], [[scale_x[n], 0.0, 0.0], [0.0, scale_y[n], 0.0]])
        torch.testing.assert_close(out[n], expected)


def test_rotate_matches_per_sample_affine():
    x = _images(3, size=9)
    angles = [math.radians(d) for d in (-15.0, 0.0, 7.5)]
    out = apply_op("rotate", x, {"angle": torch.tensor(angles)})
    for n, a in enumerate(angles):
        expected = _reference_affine(x[n], [[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]])
        torch.testing.assert_close(out[n], expected)
    torch.testing.assert_close(out[1], x[1])  # zero angle is the identity with align_corners=True


# ---------------------------------------------------------------------------------------------------------------
# Parameter draws.


def test_draw_ranges_follow_the_original():
    config, count, size = DSAConfig(), 4000, 32
    g = make_generator(1)
    color = draw_params("color", count, size, size, g, config, "cpu")
    assert -0.5 <= color["brightness_shift"].min() and color["brightness_shift"].max() <= 0.5
    assert 0.0 <= color["saturation_factor"].min() and color["saturation_factor"].max() <= 2.0
    assert 0.5 <= color["contrast_factor"].min() and color["contrast_factor"].max() <= 1.5
    crop = draw_params("crop", count, size, size, g, config, "cpu")
    for key in ("shift_rows", "shift_cols"):
        assert set(crop[key].tolist()) == set(range(-4, 5))  # int(32 * 0.125 + 0.5) = 4
    cutout = draw_params("cutout", count, size, size, g, config, "cpu")
    side = cutout_side(size, config)
    assert side == 16
    assert torch.equal(cutout["bottom"] - cutout["top"], torch.full((count,), side))
    assert set(cutout["top"].tolist()) == set(range(-8, 25))  # centre in [0, 32], minus side // 2
    flip = draw_params("flip", count, size, size, g, config, "cpu")["flip"]
    assert 0.45 < flip.float().mean() < 0.55
    scale = draw_params("scale", count, size, size, g, config, "cpu")
    for key in ("scale_x", "scale_y"):
        assert 1 / 1.2 <= scale[key].min() and scale[key].max() <= 1.2
    assert not torch.equal(scale["scale_x"], scale["scale_y"])
    angle = draw_params("rotate", count, size, size, g, config, "cpu")["angle"]
    assert angle.abs().max() <= math.radians(15.0) and angle.abs().max() > math.radians(14.0)


def test_odd_cutout_side_has_one_centre_fewer():
    config = DSAConfig(cutout_ratio=0.3)  # side int(10 * 0.3 + 0.5) = 3
    cutout = draw_params("cutout", 3000, 10, 10, make_generator(2), config, "cpu")
    assert set(cutout["top"].tolist()) == set(range(-1, 9))  # centre in [0, 9]


# ---------------------------------------------------------------------------------------------------------------
# The two modes.


@pytest.mark.parametrize("op", OP_NAMES)
@pytest.mark.parametrize("mode", ["independent", "siamese"])
def test_gradients_reach_the_input(op, mode):
    x = _images(6, size=8).requires_grad_(True)
    config = DSAConfig(strategy=op)
    g = make_generator(3)
    if mode == "independent":
        out = dsa_independent(x, g, config)
    else:
        out = dsa_siamese(x, torch.tensor([0, 1, 2, 0, 1, 2]), 3, g, config)
    (out * torch.rand(out.shape, generator=make_generator(4))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_seed_controls_both_modes():
    x, groups = _images(8), torch.arange(8) % 4
    runs = {
        "independent": lambda seed: dsa_independent(x, make_generator(seed)),
        "siamese": lambda seed: dsa_siamese(x, groups, 4, make_generator(seed)),
    }
    for run in runs.values():
        assert torch.equal(run(5), run(5))
        assert not torch.equal(run(5), run(6))


def test_none_strategy_is_identity():
    x = _images(3)
    config = DSAConfig(strategy="none")
    assert parse_strategy("none") == () and parse_strategy("") == ()
    assert torch.equal(dsa_independent(x, make_generator(0), config), x)
    assert torch.equal(dsa_siamese(x, torch.zeros(3, dtype=torch.int64), 1, make_generator(0), config), x)


def test_independent_draws_parameters_per_sample_for_one_op():
    x = _images(1).expand(6, -1, -1, -1).contiguous()
    config = DSAConfig(strategy="color_scale_rotate")
    out = dsa_independent(x, make_generator(7), config)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 6  # identical inputs, different per-sample parameters
    # Replaying the documented draw (op choice, then that op's parameters) reproduces the call exactly.
    g = make_generator(7)
    op = config.ops[int(torch.randint(len(config.ops), (1,), generator=g).item())]
    assert torch.equal(out, apply_op(op, x, draw_params(op, 6, 8, 8, g, config, "cpu")))


@pytest.mark.parametrize("strategy", [*OP_NAMES, DSAConfig().strategy])
def test_siamese_same_group_same_transform(strategy):
    base = _images(3, size=8)
    groups = torch.tensor([0, 1, 2, 2, 0, 1, 0])
    x = base[groups]  # samples of a group hold identical images
    out = dsa_siamese(x, groups, 3, make_generator(8), DSAConfig(strategy=strategy))
    for g in range(3):
        members = out[groups == g]
        for member in members[1:]:
            assert torch.equal(member, members[0])


# Distinct results among 16 groups holding one image (seeded): continuous parameters give 16; crop on 8x8 has 9
# possible shifts, cutout 64 positions; flip has two outcomes, each drawn several times.
DISTINCT_OF_16 = {"color": 16, "scale": 16, "rotate": 16, "cutout": 12, "crop": 5, "flip": 2}


@pytest.mark.parametrize("op", OP_NAMES)
def test_siamese_different_groups_can_differ(op):
    x = _images(1, size=8).expand(16, -1, -1, -1).contiguous()
    out = dsa_siamese(x, torch.arange(16), 16, make_generator(9), DSAConfig(strategy=op))
    outcomes = collections.Counter(tuple(o.flatten().tolist()) for o in out)
    assert len(outcomes) >= DISTINCT_OF_16[op]
    assert max(outcomes.values()) <= 16 - 4 if op == "flip" else max(outcomes.values()) <= 4  # no transform dominates


def test_siamese_applies_each_groups_op_and_parameters():
    num_groups, per_group = 12, 3
    groups = torch.arange(num_groups).repeat(per_group)[torch.randperm(num_groups * per_group, generator=make_generator(10))]
    x = _images(num_groups * per_group, size=8, seed=11)
    config = DSAConfig()
    out = dsa_siamese(x, groups, num_groups, make_generator(12), config)
    plan = draw_group_plan(num_groups, 8, 8, make_generator(12), config, "cpu")
    assert plan.op_index.shape == (num_groups,) and len(plan.op_index.unique()) > 2
    for op in plan.ops:
        assert all(v.shape == (num_groups,) for v in plan.params[op].values())
    for g in range(num_groups):
        op = plan.ops[plan.op_index[g]]
        params = {name: values[g].expand(per_group) for name, values in plan.params[op].items()}
        torch.testing.assert_close(out[groups == g], apply_op(op, x[groups == g], params))
    torch.testing.assert_close(apply_group_plan(x, groups, plan), out)


def test_the_sync_free_plan_gives_the_sorted_plans_images_and_gradients():
    """The GPU's path (every op on the whole batch, each sample's own kept: no host sync) equals the sorted one's
    values and gradients; a group id out of range is still refused."""
    num_groups = 10
    groups = torch.arange(num_groups).repeat(4)[torch.randperm(4 * num_groups, generator=make_generator(20))]
    plan = draw_group_plan(num_groups, 16, 16, make_generator(21), DSAConfig(), "cpu")
    assert len(plan.op_index.unique()) > 2
    x = _images(4 * num_groups, size=16, seed=22).requires_grad_()
    sorted_out = apply_group_plan(x, groups, plan, sync_free=False)
    (sorted_grad,) = torch.autograd.grad((sorted_out * sorted_out).sum(), x)
    free_out = apply_group_plan(x, groups, plan, sync_free=True)
    (free_grad,) = torch.autograd.grad((free_out * free_out).sum(), x)
    torch.testing.assert_close(free_out, sorted_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(free_grad, sorted_grad, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="DSA groups: an id outside"):
        apply_group_plan(x.detach(), groups + num_groups, plan, sync_free=True)


@pytest.mark.parametrize("channels,size,count", [(1, 28, 1), (3, 32, 5), (3, 64, 2)])
def test_shapes_sizes_and_channels(channels, size, count):
    x = _images(count, channels=channels, size=size)
    for op in OP_NAMES:
        config = DSAConfig(strategy=op)
        assert dsa_independent(x, make_generator(0), config).shape == x.shape
        assert dsa_siamese(x, torch.zeros(count, dtype=torch.int64), 1, make_generator(0), config).shape == x.shape


def test_bad_input_is_rejected():
    with pytest.raises(AugmentError, match="unknown op"):
        DSAConfig(strategy="color_blur")
    with pytest.raises(AugmentError, match="twice"):
        parse_strategy("flip_flip")
    with pytest.raises(AugmentError, match="outside"):
        dsa_siamese(_images(2), torch.tensor([0, 3]), 2, make_generator(0))
    with pytest.raises(AugmentError, match="int64"):
        dsa_siamese(_images(2), torch.tensor([0, 1], dtype=torch.int32), 2, make_generator(0))


# ---------------------------------------------------------------------------------------------------------------
# IDM partition-and-expansion and tiled initialisation.


def _quadrant_images(values: torch.Tensor, size: int = 8) -> torch.Tensor:
    """values (N, 4) -> images (N, 1, size, size) whose 2x2 quadrants are constant values[n, i * 2 + j]."""
    half = size // 2
    return values.view(-1, 1, 2, 1, 2, 1).expand(-1, 1, 2, half, 2, half).reshape(-1, 1, size, size).clone()


def test_partition_and_expand_order_labels_and_constant_patches():
    values = torch.arange(12, dtype=torch.float32).view(3, 4)  # image n, patch k -> 4 n + k
    images, labels = _quadrant_images(values), torch.tensor([7, 8, 9])
    out, out_labels = partition_and_expand(images, labels)
    assert out.shape == (12, 1, 8, 8)
    assert out_labels.tolist() == [7, 8, 9] * 4
    for k in range(4):
        for n in range(3):
            assert torch.equal(out[k * 3 + n], torch.full((1, 8, 8), values[n, k].item()))


def test_partition_and_expand_matches_upsample_and_rejects_indivisible():
    images = _images(2, size=8)
    out, _ = partition_and_expand(images, torch.tensor([0, 1]), factor=2)
    upsample = torch.nn.Upsample(size=(8, 8), mode="bilinear")
    torch.testing.assert_close(out[1 * 2 + 0], upsample(images[0:1, :, 0:4, 4:8])[0])  # patch (0, 1) of image 0
    with pytest.raises(ValueError):
        partition_and_expand(_images(2, size=9), torch.tensor([0, 1]), factor=2)


def test_tile_downscaled_quadrants_and_round_trip():
    sources = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 8, 8) / 10
    tiled = tile_downscaled(sources, factor=2)
    assert tiled.shape == (2, 1, 8, 8)
    torch.testing.assert_close(tiled, _quadrant_images(torch.arange(8, dtype=torch.float32).view(2, 4) / 10))
    expanded, _ = partition_and_expand(tiled, torch.tensor([0, 1]))
    for k in range(4):
        for n in range(2):
            torch.testing.assert_close(expanded[k * 2 + n], sources[n * 4 + k])
    with pytest.raises(ValueError):
        tile_downscaled(sources[:6], factor=2)
