"""Losses (paper Eq. 2-7 and IDM's class-aware CE) against slow references written with explicit Python loops."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from iid_distill import losses
from iid_distill.losses import (
    LossInputError,
    class_aware_ce_loss,
    class_centralization_loss,
    class_covariances,
    class_means,
    covariance_matching_loss,
    group_by_class,
    mean_matching_loss,
    warn_if_degenerate,
)
from iid_distill.utils import UserError

NUM_CLASSES = 5
D, H, W = 8, 4, 4  # d = 8 channels, h*w = 16 positions
# class 1: one synthetic sample; class 3: real only; class 4: synthetic only
REAL_SIZES = [6, 4, 5, 3, 0]
SYN_SIZES = [3, 1, 2, 0, 4]


def shuffled_labels(sizes: list[int], generator: torch.Generator) -> torch.Tensor:
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return labels[torch.randperm(labels.numel(), generator=generator)]


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1234)
    real_labels = shuffled_labels(REAL_SIZES, gen)
    syn_labels = shuffled_labels(SYN_SIZES, gen)
    real_maps = torch.randn(real_labels.numel(), D, H, W, generator=gen, dtype=torch.float64)
    syn_maps = torch.randn(syn_labels.numel(), D, H, W, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    return real_maps, real_labels, syn_maps.requires_grad_(True), syn_labels


# ---------------------------------------------------------------- slow references (loops over classes and samples)


def members(features, labels, c):
    return [features[i] for i in range(labels.numel()) if int(labels[i]) == c]


def loop_mean(rows):
    total = torch.zeros_like(rows[0])
    for row in rows:
        total = total + row
    return total / len(rows)


def ref_mean_matching(real, real_labels, syn, syn_labels, num_classes):
    loss = torch.zeros((), dtype=syn.dtype)
    for c in range(num_classes):
        r, s = members(real, real_labels, c), members(syn, syn_labels, c)
        if r and s:
            loss = loss + ((loop_mean(r) - loop_mean(s)) ** 2).sum()
    return loss


def ref_centralization(features, labels, num_classes, form, alpha, beta):
    loss = torch.zeros((), dtype=features.dtype)
    for c in range(num_classes):
        rows = members(features, labels, c)
        if not rows:
            continue
        centre = loop_mean(rows)
        for row in rows:
            dist = ((row - centre) ** 2).sum()
            if form == "squared":
                loss = loss + dist
            else:
                loss = loss + torch.maximum(torch.exp(alpha * dist) - beta, torch.zeros((), dtype=features.dtype))
    return loss


def ref_covariance(maps, labels, c, unbiased):
    blocks = [m.reshape(m.shape[0], -1) for m in members(maps, labels, c)]
    if not blocks:
        return torch.zeros(maps.shape[1], maps.shape[1], dtype=maps.dtype)
    centre = loop_mean(blocks)
    sigma = torch.zeros(maps.shape[1], maps.shape[1], dtype=maps.dtype)
    for block in blocks:
        sigma = sigma + (block - centre) @ (block - centre).T
    divisor = len(blocks) - 1 if unbiased else len(blocks)
    return sigma / max(divisor, 1)


def ref_covariance_matching(real, real_labels, syn, syn_labels, num_classes, unbiased):
    loss = torch.zeros((), dtype=syn.dtype)
    for c in range(num_classes):
        if members(real, real_labels, c) and members(syn, syn_labels, c):
            diff = ref_covariance(syn, syn_labels, c, unbiased) - ref_covariance(real, real_labels, c, unbiased)
            loss = loss + (diff**2).sum()
    return loss


def ref_class_aware_ce(logits, labels, num_classes, acc, weight):
    loss = torch.zeros((), dtype=logits.dtype)
    for c in range(num_classes):
        idx = [i for i in range(labels.numel()) if int(labels[i]) == c]
        if idx:  # the published per-class loop: CE with mean reduction over the class's synthetic samples
            loss = loss + weight * acc * F.cross_entropy(logits[idx], labels[idx])
    return loss


def value_and_grad(fn, wrt):
    value = fn()
    (grad,) = torch.autograd.grad(value, wrt)
    return value.detach(), grad


def assert_matches_reference(fast, slow, wrt):
    fast_value, fast_grad = value_and_grad(fast, wrt)
    slow_value, slow_grad = value_and_grad(slow, wrt)
    assert fast_value.shape == ()
    torch.testing.assert_close(fast_value, slow_value, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=0, atol=1e-8)


def embed(maps):
    return maps.flatten(1)


# ---------------------------------------------------------------- grouping helpers


def test_class_means_and_counts_match_loops(data):
    _, _, syn, syn_labels = data
    feats = embed(syn).detach()
    means, counts = class_means(feats, syn_labels, NUM_CLASSES)
    assert counts.tolist() == SYN_SIZES
    for c in range(NUM_CLASSES):
        rows = members(feats, syn_labels, c)
        expected = loop_mean(rows) if rows else torch.zeros(feats.shape[1], dtype=feats.dtype)
        torch.testing.assert_close(means[c], expected, rtol=0, atol=1e-12)


def test_group_by_class_keeps_order_and_pads_with_zeros(data):
    _, _, syn, syn_labels = data
    grouped, counts = group_by_class(syn.detach(), syn_labels, NUM_CLASSES)
    assert grouped.shape == (NUM_CLASSES, max(SYN_SIZES), D, H, W)
    for c in range(NUM_CLASSES):
        rows = members(syn.detach(), syn_labels, c)
        for k in range(grouped.shape[1]):
            expected = rows[k] if k < len(rows) else torch.zeros(D, H, W, dtype=syn.dtype)
            assert torch.equal(grouped[c, k], expected)


# ---------------------------------------------------------------- DM, Eq. 2


def test_mean_matching_matches_reference(data):
    real, real_labels, syn, syn_labels = data
    assert_matches_reference(
        lambda: mean_matching_loss(embed(real), real_labels, embed(syn), syn_labels, NUM_CLASSES),
        lambda: ref_mean_matching(embed(real), real_labels, embed(syn), syn_labels, NUM_CLASSES),
        syn,
    )


# ---------------------------------------------------------------- class centralization, Eq. 3-4


def syn_distances(syn, syn_labels):
    feats = embed(syn).detach()
    means, _ = class_means(feats, syn_labels, NUM_CLASSES)
    return (feats - means[syn_labels]).pow(2).sum(1)


@pytest.mark.parametrize(
    "form, alpha, beta",
    [("squared", 0.02, 0.0), ("paper", 0.02, 0.0), ("paper", 0.02, 0.7), ("paper", 0.01, 3.0), ("paper", 0.05, 1.0)],
)
def test_centralization_matches_reference(data, form, alpha, beta):
    _, _, syn, syn_labels = data
    assert_matches_reference(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form=form, alpha=alpha, beta=beta),
        lambda: ref_centralization(embed(syn), syn_labels, NUM_CLASSES, form, alpha, beta),
        syn,
    )


def test_centralization_clip_mixed(data):
    _, _, syn, syn_labels = data
    alpha = 0.01
    in_multi_sample_class = torch.bincount(syn_labels, minlength=NUM_CLASSES)[syn_labels] >= 2
    exp_terms = torch.exp(alpha * syn_distances(syn, syn_labels))
    ordered = exp_terms[in_multi_sample_class].sort().values
    middle = ordered.numel() // 2
    beta = float(ordered[middle - 1] + ordered[middle]) / 2  # between two samples: no tie at the kink
    terms = exp_terms - beta
    # max(0, .) clips some samples of classes that still pass gradient through their other samples
    assert (terms[in_multi_sample_class] < 0).any() and (terms[in_multi_sample_class] > 0).any()
    value = class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="paper", alpha=alpha, beta=beta)
    torch.testing.assert_close(value.detach(), terms.clamp(min=0).sum(), rtol=0, atol=1e-10)
    assert value < terms.abs().sum()
    assert_matches_reference(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="paper", alpha=alpha, beta=beta),
        lambda: ref_centralization(embed(syn), syn_labels, NUM_CLASSES, "paper", alpha, beta),
        syn,
    )


def test_centralization_fully_clipped_is_zero_with_zero_gradient(data):
    _, _, syn, syn_labels = data
    beta = float(torch.exp(0.02 * syn_distances(syn, syn_labels)).max()) + 1.0
    value, grad = value_and_grad(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="paper", alpha=0.02, beta=beta), syn
    )
    assert value == 0 and torch.count_nonzero(grad) == 0


def test_centralization_beta_below_one_only_shifts_the_value(data):
    _, _, syn, syn_labels = data
    n = syn_labels.numel()
    results = [
        value_and_grad(lambda b=b: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="paper", beta=b), syn)
        for b in (0.0, 0.5, 0.99)
    ]
    for (value, grad), b in zip(results[1:], (0.5, 0.99)):
        torch.testing.assert_close(value, results[0][0] - b * n, rtol=0, atol=1e-10)
        torch.testing.assert_close(grad, results[0][1], rtol=0, atol=1e-12)


def test_paper_form_tends_to_alpha_times_squared_form(data):
    _, _, syn, syn_labels = data
    alpha = 1e-7
    paper_value, paper_grad = value_and_grad(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="paper", alpha=alpha, beta=0.0), syn
    )
    sq_value, sq_grad = value_and_grad(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="squared"), syn
    )
    dist = syn_distances(syn, syn_labels)
    feats = embed(syn).detach()
    spread = (feats - class_means(feats, syn_labels, NUM_CLASSES)[0][syn_labels]).abs().max()
    # exact bound: paper grad / alpha - squared grad = 2[(w_j-1)(g_j-m) - mean_k (w_k-1)(g_k-m)], w = exp(alpha d)
    weight_excess = math.expm1(alpha * float(dist.max()))
    assert 0 < weight_excess < 1e-4
    torch.testing.assert_close(paper_grad / alpha, sq_grad, rtol=0, atol=4 * weight_excess * float(spread) + 1e-9)
    # value: sum_j exp(alpha d_j) = N + alpha * sum_j d_j + O(alpha^2)
    excess = paper_value - syn_labels.numel()
    torch.testing.assert_close(excess / alpha, sq_value, rtol=weight_excess, atol=1e-6)


@pytest.mark.parametrize("form, beta, per_sample", [("squared", 0.0, 0.0), ("paper", 0.0, 1.0), ("paper", 0.3, 0.7),
                                                    ("paper", 1.0, 0.0), ("paper", 1.5, 0.0)])
def test_centralization_one_sample_per_class(form, beta, per_sample):
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(4, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([3, 0, 2, 1])
    value, grad = value_and_grad(
        lambda: class_centralization_loss(feats * 10, labels, NUM_CLASSES, form=form, alpha=0.02, beta=beta), feats
    )
    assert value.item() == pytest.approx(4 * per_sample, abs=1e-12)  # max(0, exp(0) - beta) per sample
    assert torch.count_nonzero(grad) == 0


def test_centralization_unknown_form_raises(data):
    _, _, syn, syn_labels = data
    with pytest.raises(ValueError, match="unknown class-centralization form 'exp'"):
        class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="exp")


# ---------------------------------------------------------------- covariance matching, Eq. 5-7


@pytest.mark.parametrize("unbiased", [False, True])
def test_class_covariances_match_reference(data, unbiased):
    real, real_labels, _, _ = data
    cov, counts = class_covariances(real, real_labels, NUM_CLASSES, unbiased=unbiased)
    assert cov.shape == (NUM_CLASSES, D, D) and counts.tolist() == REAL_SIZES
    for c in range(NUM_CLASSES):
        torch.testing.assert_close(cov[c], ref_covariance(real, real_labels, c, unbiased), rtol=0, atol=1e-12)


def test_unbiased_to_biased_ratio_is_k_over_k_minus_one(data):
    _, _, syn, syn_labels = data
    biased, counts = class_covariances(syn.detach(), syn_labels, NUM_CLASSES)
    unbiased, _ = class_covariances(syn.detach(), syn_labels, NUM_CLASSES, unbiased=True)
    for c, k in enumerate(counts.tolist()):
        if k >= 2:
            assert biased[c].abs().max() > 0
            torch.testing.assert_close(unbiased[c], biased[c] * k / (k - 1), rtol=1e-12, atol=0)
        else:  # one sample: zero matrix in both (no 0/0); absent class: zero matrix
            assert torch.count_nonzero(biased[c]) == 0 and torch.count_nonzero(unbiased[c]) == 0
            assert not torch.isnan(unbiased[c]).any()


def test_covariance_is_centred_per_position_and_not_divided_by_hw():
    # two samples differing only by a constant shift of a whole map: per-position centring gives
    # Sigma = (1/2) * 2 * (shift/2)^2 * hw in every entry
    base = torch.randn(1, D, H, W, dtype=torch.float64)
    maps = torch.cat([base, base + 2.0])
    cov, _ = class_covariances(maps, torch.tensor([0, 0]), 1)
    torch.testing.assert_close(cov[0], torch.full((D, D), float(H * W), dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_covariance_matching_matches_reference(data, unbiased):
    real, real_labels, syn, syn_labels = data
    assert_matches_reference(
        lambda: covariance_matching_loss(real, real_labels, syn, syn_labels, NUM_CLASSES, unbiased=unbiased),
        lambda: ref_covariance_matching(real, real_labels, syn, syn_labels, NUM_CLASSES, unbiased),
        syn,
    )


def test_covariance_matching_other_hw_layout(data):
    real, real_labels, syn, syn_labels = data
    real2, syn2 = real.reshape(-1, D, 2, 8), syn.reshape(-1, D, 2, 8)  # h*w = 16, another layout
    assert_matches_reference(
        lambda: covariance_matching_loss(real2, real_labels, syn2, syn_labels, NUM_CLASSES),
        lambda: ref_covariance_matching(real2, real_labels, syn2, syn_labels, NUM_CLASSES, False),
        syn,
    )


def test_covariance_matching_one_syn_sample_per_class(data):
    real, real_labels, _, _ = data
    syn = torch.randn(3, D, H, W, dtype=torch.float64, requires_grad=True)
    syn_labels = torch.tensor([2, 0, 1])
    value, grad = value_and_grad(
        lambda: covariance_matching_loss(real, real_labels, syn, syn_labels, NUM_CLASSES), syn
    )
    assert torch.count_nonzero(grad) == 0
    expected = sum((ref_covariance(real, real_labels, c, False) ** 2).sum() for c in (0, 1, 2))
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-10)


# ---------------------------------------------------------------- absent classes, NaN, dtypes


def test_absent_or_one_sided_classes_contribute_nothing(data):
    real, real_labels, syn, syn_labels = data
    keep = syn_labels != 4  # class 4 exists only in the synthetic set
    args_all = (real, real_labels, syn, syn_labels)
    args_kept = (real, real_labels, syn[keep], syn_labels[keep])
    for loss in (
        lambda r, rl, s, sl, n: mean_matching_loss(embed(r), rl, embed(s), sl, n),
        lambda r, rl, s, sl, n: covariance_matching_loss(r, rl, s, sl, n),
    ):
        reference = loss(*args_all, NUM_CLASSES)
        torch.testing.assert_close(loss(*args_kept, NUM_CLASSES), reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(loss(*args_all, NUM_CLASSES + 3), reference, rtol=0, atol=1e-12)
    cc = class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES)
    torch.testing.assert_close(class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES + 3), cc)
    # a one-sided class receives no gradient from the matching losses
    dm = mean_matching_loss(embed(real), real_labels, embed(syn), syn_labels, NUM_CLASSES)
    (grad,) = torch.autograd.grad(dm, syn)
    assert torch.count_nonzero(grad[syn_labels == 4]) == 0 and torch.count_nonzero(grad[syn_labels == 0]) > 0


ALL_LOSSES = {
    "dm": lambda r, rl, s, sl: mean_matching_loss(embed(r), rl, embed(s), sl, NUM_CLASSES),
    "cc_paper": lambda r, rl, s, sl: class_centralization_loss(embed(s), sl, NUM_CLASSES, beta=3.0),
    "cc_squared": lambda r, rl, s, sl: class_centralization_loss(embed(s), sl, NUM_CLASSES, form="squared"),
    "cm": lambda r, rl, s, sl: covariance_matching_loss(r, rl, s, sl, NUM_CLASSES),
    "ce": lambda r, rl, s, sl: class_aware_ce_loss(embed(s)[:, :NUM_CLASSES], sl, NUM_CLASSES, 50.0, 0.5),
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("nan_class", [0, 4])  # 4: a class present only in the synthetic set
def test_nan_input_gives_nan_loss(data, name, nan_class):
    real, real_labels, syn, syn_labels = data
    syn = syn.detach().clone()
    syn[int(torch.nonzero(syn_labels == nan_class)[0])].view(-1)[0] = float("nan")
    assert torch.isnan(ALL_LOSSES[name](real, real_labels, syn, syn_labels))


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_float32_agrees_with_float64(data, name):
    real, real_labels, syn, syn_labels = data
    double = ALL_LOSSES[name](real, real_labels, syn.detach(), syn_labels)
    single = ALL_LOSSES[name](real.float(), real_labels, syn.detach().float(), syn_labels)
    assert single.dtype == torch.float32 and double > 0
    torch.testing.assert_close(single.double(), double, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- IDM class-aware CE


@pytest.mark.parametrize("acc", [37.5, torch.tensor(62.0, dtype=torch.float64)])
def test_class_aware_ce_matches_reference(data, acc):
    _, _, syn, syn_labels = data
    projection = torch.randn(D * H * W, NUM_CLASSES, dtype=torch.float64) / 16
    assert_matches_reference(
        lambda: class_aware_ce_loss(embed(syn) @ projection, syn_labels, NUM_CLASSES, acc, 0.1),
        lambda: ref_class_aware_ce(embed(syn) @ projection, syn_labels, NUM_CLASSES, acc, 0.1),
        syn,
    )


def test_class_aware_ce_is_class_summed_per_class_mean():
    # class 0 has 3 samples, class 1 has 1: a per-class mean weighs the lone sample 3x more than a global mean
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    ce0, ce1 = F.cross_entropy(logits[:1], labels[:1]), F.cross_entropy(logits[3:], labels[3:])
    value = class_aware_ce_loss(logits, labels, 2, 80.0, 0.5)
    torch.testing.assert_close(value, 0.5 * 80.0 * (ce0 + ce1), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- input errors and the degenerate-IPC warning


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 1, 5]), "label >= num_classes=5"),
        (torch.tensor([0, -1, 2]), "non-negative"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer tensor"),
        (torch.tensor([0, 1]), r"shape \(3,\)"),
    ],
)
def test_bad_labels_raise_user_error(labels, message):
    with pytest.raises(LossInputError, match=message) as info:
        class_means(torch.zeros(3, 4), labels, NUM_CLASSES)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_mismatched_map_shapes_raise():
    with pytest.raises(LossInputError, match="share"):
        covariance_matching_loss(torch.zeros(2, 8, 4, 4), torch.tensor([0, 0]), torch.zeros(2, 8, 2, 2),
                                 torch.tensor([0, 0]), 1)


def test_warn_if_degenerate_warns_once(monkeypatch):
    monkeypatch.setattr(losses, "_degenerate_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_degenerate(2, 1) is False and warn_if_degenerate(1, 2) is False
        assert caught == []
        assert warn_if_degenerate(1, 1) is True
        assert warn_if_degenerate(1, 1) is True
    assert len(caught) == 1
    assert issubclass(caught[0].category, losses.DegenerateIIDWarning)
    assert "DM+IID equals DM" in str(caught[0].message)
    with pytest.raises(LossInputError, match="ipc must be a positive int"):
        warn_if_degenerate(0, 1)


# ---------------------------------------------------------------- the margin form (Table 5's beta) and the default form


def ref_margin_centralization(feats, labels, num_classes, beta):
    """Per-class loop: sum_j max(0, d_j - beta * mean_k d_k), the class mean distance held constant."""
    loss = torch.zeros((), dtype=feats.dtype)
    for c in range(num_classes):
        idx = [i for i in range(labels.numel()) if int(labels[i]) == c]
        if not idx:
            continue
        centre = feats[idx].mean(0)
        distances = [((feats[i] - centre) ** 2).sum() for i in idx]
        threshold = beta * (sum(d.detach() for d in distances) / len(distances))
        for d in distances:
            loss = loss + torch.clamp(d - threshold, min=0.0)
    return loss


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5])
def test_margin_form_matches_the_per_class_loop(data, beta):
    _, _, syn, syn_labels = data
    assert_matches_reference(
        lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="margin", beta=beta),
        lambda: ref_margin_centralization(embed(syn), syn_labels, NUM_CLASSES, beta),
        syn,
    )


def test_margin_form_at_beta_zero_is_the_codes_objective_and_beta_acts_below_one(data):
    _, _, syn, syn_labels = data
    squared = value_and_grad(lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="squared"), syn)
    margin0 = value_and_grad(lambda: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="margin", beta=0.0), syn)
    torch.testing.assert_close(margin0[0], squared[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(margin0[1], squared[1], rtol=0, atol=1e-12)
    # beta 1: a sample nearer its centre than the class average gets no pull of its own
    dist = syn_distances(syn, syn_labels)
    values = {beta: class_centralization_loss(embed(syn), syn_labels, NUM_CLASSES, form="margin", beta=beta).item()
              for beta in (0.0, 0.1, 0.7, 0.9, 1.0)}
    assert len(set(values.values())) == 5 and values[0.0] > values[0.7] > values[1.0] > 0.0  # unlike Eq. 3, each beta differs
    means = torch.zeros(NUM_CLASSES, dtype=dist.dtype).index_add_(0, syn_labels, dist) / torch.bincount(syn_labels, minlength=NUM_CLASSES)
    active = dist > means[syn_labels]
    assert 0 < int(active.sum()) < dist.numel()
    expected = (dist - means[syn_labels]).clamp(min=0).sum()
    torch.testing.assert_close(torch.tensor(values[1.0], dtype=dist.dtype), expected, rtol=1e-12, atol=1e-12)


def test_default_form_is_the_authors_code():
    """The library default is the objective that produced the paper's numbers: the plain squared form."""
    import inspect

    assert inspect.signature(class_centralization_loss).parameters["form"].default == "squared"
