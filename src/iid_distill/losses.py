"""Loss functions of DM, IDM and IID (Deng et al., CVPR 2024), as pure, class-batched tensor functions.

Every loss takes features plus integer class labels and handles all classes in one pass (no Python loop over
classes or samples), so classes may have different sizes and a class may be absent. Equation numbers refer to
the IID paper (``/work/shared/paper/iid-cvpr2024.txt``); where the authors' code differs from the paper, both
forms are exposed as parameters (see ``/work/shared/paper/method-notes.md``).

Conventions shared by all functions:
- Nothing is detached here: the caller decides what carries gradient (real features are computed without grad).
- Non-finite inputs are not masked: a NaN anywhere in the inputs gives a NaN loss (the caller checks finiteness).
- Class grouping: ``class_means`` uses ``index_add`` + ``bincount`` (O(N*D), no padding); covariances use a
  zero-padded ``(C, Kmax, ...)`` grouping built by a stable sort + scatter (no accumulation, deterministic),
  so one batched matmul with a long inner dimension (Kmax*hw) computes every class's covariance, and the
  padded tensor is no larger than the input when classes have equal sizes. A per-sample (N, d, d) outer
  product + index_add would be exact too but writes d/hw (8x on CIFAR) more memory than it reads.
  On CUDA ``index_add`` accumulates with atomics (last-bit run-to-run differences) unless
  ``torch.use_deterministic_algorithms(True)`` is set, which makes it deterministic.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from iid_distill.utils import UserError

__all__ = [
    "LossInputError",
    "DegenerateIIDWarning",
    "class_means",
    "group_by_class",
    "class_covariances",
    "mean_matching_loss",
    "class_centralization_loss",
    "covariance_matching_loss",
    "class_aware_ce_loss",
    "warn_if_degenerate",
    "CC_FORMS",
    "DEFAULT_CC_ALPHA",
    "DEFAULT_CC_BETA",
]

# "squared": the authors' code, sum_j ||g_j - mean||^2 (no exp, no beta), which produced the paper's numbers;
# "paper": Eq. 3 as printed; "margin": the code's squared distances with Eq. 3's clip at beta times the class's mean
# distance, the reading under which the paper's beta values (0 to 2, Table 5) change the objective.
CC_FORMS = ("squared", "paper", "margin")
# alpha of Eq. 3: the value in the authors' commented-out original implementation (method-notes, "IID constraints").
DEFAULT_CC_ALPHA = 0.02
# beta of Eq. 3: 0.0, the smallest value of the paper's Table 5 sweep and tied-best there (52.2% for 0.0, 0.1
# and 0.7; "optimal performance is achieved when beta is below 0.7"); it is also what the authors' code uses
# (beta 0, method-notes). For any beta < 1 Eq. 3's clip never acts (exp(.) >= 1), so beta only shifts the value;
# in the "margin" form beta 0 is the code's objective and larger beta leaves samples near their centre alone.
DEFAULT_CC_BETA = 0.0


class LossInputError(UserError, ValueError):
    """Tensors or options passed to a loss function do not have the expected shape, dtype or value."""


class DegenerateIIDWarning(UserWarning):
    """One synthetic image per class: the IID constraints are identically zero."""


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise LossInputError(f"num_classes must be a positive int, got {num_classes!r}")


def _check_labels(labels: torch.Tensor, num_rows: int, name: str) -> torch.Tensor:
    """Return ``labels`` as int64 after checking it is a 1-D integer tensor with one label per row."""
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        found = getattr(labels, "dtype", type(labels))
        raise LossInputError(f"{name} must be an integer tensor of class indices, got {found}")
    if labels.dim() != 1 or labels.shape[0] != num_rows:
        raise LossInputError(f"{name} must have shape ({num_rows},) (one label per row), got {tuple(labels.shape)}")
    return labels.long()


def _class_counts(labels: torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    """Samples per class, shape (C,), int64; rejects labels outside [0, num_classes)."""
    try:
        counts = torch.bincount(labels, minlength=num_classes)
    except RuntimeError as error:  # bincount rejects negative values
        raise LossInputError(f"{name} must be non-negative class indices: {error}") from None
    if counts.numel() != num_classes:  # bincount grows past minlength only for a label >= num_classes
        raise LossInputError(f"{name} has a label >= num_classes={num_classes} (max label {counts.numel() - 1})")
    return counts


def _check_features(features: torch.Tensor, dims: int, name: str) -> None:
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        found = getattr(features, "dtype", type(features))
        raise LossInputError(f"{name} must be a floating-point tensor, got {found}")
    if features.dim() != dims:
        raise LossInputError(f"{name} must be {dims}-D, got shape {tuple(features.shape)}")


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of the rows of ``features`` (the class centre of Eq. 4 and the means of Eq. 2).

    Args:
        features: (N, D) floating tensor.
        labels: (N,) integer class indices in [0, num_classes).
        num_classes: C.
    Returns:
        means (C, D) (zero rows for absent classes) and counts (C,) int64.
    """
    _check_num_classes(num_classes)
    _check_features(features, 2, "features")
    labels = _check_labels(labels, features.shape[0], "labels")
    counts = _class_counts(labels, num_classes, "labels")
    sums = features.new_zeros(num_classes, features.shape[1]).index_add(0, labels, features)
    means = sums / counts.clamp(min=1).unsqueeze(1).to(features.dtype)
    return means, counts


def group_by_class(
    rows: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded grouping of the rows of ``rows`` (N, ...) by class: (C, Kmax, ...), plus counts (C,).

    Class c's rows occupy slots [0, counts[c]) of ``grouped[c]`` in their original order (stable sort), the other
    slots are exactly zero. Built with one sort and one scatter (no accumulation, hence deterministic); needs one
    host sync for Kmax.
    """
    _check_num_classes(num_classes)
    if not isinstance(rows, torch.Tensor) or rows.dim() < 1:
        raise LossInputError("rows must be a tensor of shape (N, ...)")
    labels = _check_labels(labels, rows.shape[0], "labels")
    counts = _class_counts(labels, num_classes, "labels")
    sorted_labels, order = torch.sort(labels, stable=True)
    class_starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(labels.shape[0], device=labels.device) - class_starts[sorted_labels]
    max_count = int(counts.max()) if labels.numel() else 0
    grouped = rows.new_zeros((num_classes, max_count) + tuple(rows.shape[1:]))
    grouped = grouped.index_put((sorted_labels, slot), rows[order])
    return grouped, counts


def class_covariances(
    maps: torch.Tensor, labels: torch.Tensor, num_classes: int, *, unbiased: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local feature covariance matrix of every class (Eq. 6 for synthetic, Eq. 7 for real features).

    Each sample's map (d, h, w) is read as X_i in R^{d x hw} (d local descriptors of dimension hw, paper Sec. 3.3).
    Sigma_c = (1/K) sum_i (X_i - mean X)(X_i - mean X)^T, a d x d matrix, where the mean is the class's
    d x hw mean map (centred per channel AND position) and the sum runs over the K samples of class c; it is
    not divided by hw. ``unbiased=True`` divides by K-1 instead (K=1 then gives a zero matrix, not 0/0).

    Batched form: the centred (d, hw) blocks of a class are concatenated along the position axis,
    A_c in R^{d x K*hw} (zero-padded to Kmax*hw, which adds nothing), and Sigma = A A^T / K in one batched matmul.

    Args:
        maps: (N, d, h, w) floating tensor.
        labels: (N,) integer class indices.
        num_classes: C.
        unbiased: divide by K-1 instead of K.
    Returns:
        covariances (C, d, d) (zero for absent classes) and counts (C,) int64.
    """
    _check_features(maps, 4, "maps")
    num_samples, channels = maps.shape[0], maps.shape[1]
    grouped, counts = group_by_class(maps.reshape(num_samples, channels, -1), labels, num_classes)  # (C, Kmax, d, hw)
    sizes = counts.clamp(min=1).to(maps.dtype).view(-1, 1, 1, 1)
    means = grouped.sum(1, keepdim=True) / sizes  # padding slots are exact zeros, so this is the class mean
    filled = torch.arange(grouped.shape[1], device=counts.device) < counts.unsqueeze(1)  # (C, Kmax)
    centred = torch.where(filled.view(num_classes, -1, 1, 1), grouped - means, grouped.new_zeros(()))
    blocks = centred.transpose(1, 2).reshape(num_classes, channels, -1)  # (C, d, Kmax*hw)
    scatter = blocks @ blocks.transpose(1, 2)  # (C, d, d)
    divisor = (counts - 1 if unbiased else counts).clamp(min=1).to(maps.dtype)
    return scatter / divisor.view(-1, 1, 1), counts


def mean_matching_loss(
    real_features: torch.Tensor,
    real_labels: torch.Tensor,
    syn_features: torch.Tensor,
    syn_labels: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """DM distribution-matching loss (Eq. 2), summed over classes.

    sum over classes c present in both sets of ||mean_c(real) - mean_c(syn)||^2 (squared L2 norm, not averaged
    over dimensions, as in DM's code). Features are (N, D) embeddings; returns a 0-d tensor.
    """
    _check_features(real_features, 2, "real_features")
    _check_features(syn_features, 2, "syn_features")
    if real_features.shape[1] != syn_features.shape[1]:
        raise LossInputError(
            "real_features and syn_features must have the same width, "
            f"got {real_features.shape[1]} and {syn_features.shape[1]}"
        )
    real_means, real_counts = class_means(real_features, real_labels, num_classes)
    syn_means, syn_counts = class_means(syn_features, syn_labels, num_classes)
    in_both = ((real_counts > 0) & (syn_counts > 0)).to(syn_means.dtype)
    # multiply (not index) by the mask so that a NaN anywhere still reaches the result
    return (in_both * (real_means - syn_means).pow(2).sum(1)).sum()


def class_centralization_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    form: str = "squared",
    alpha: float = DEFAULT_CC_ALPHA,
    beta: float = DEFAULT_CC_BETA,
) -> torch.Tensor:
    """IID class centralization constraint (Eq. 3-4) on (N, D) embeddings of the synthetic images.

    With d_j = ||g_j - mean_{c(j)} g||^2 (the class centre of Eq. 4 over the class's own samples):
    - ``form="squared"`` (the authors' code, the default): sum_c sum_j d_j (alpha and beta are ignored).
    - ``form="paper"`` (Eq. 3 as printed): sum_c sum_j max(0, exp(alpha * d_j) - beta).
    - ``form="margin"``: sum_c sum_j max(0, d_j - beta * dbar_c), dbar_c the class's mean d_j held constant (no
      gradient): beta 0 is the squared form; beta 1 pulls only the samples farther from the centre than average.
    For beta < 1 the paper form never clips, and as alpha -> 0 its gradient tends to alpha times the squared
    form's. A class with one sample has d_j = 0: zero gradient, value max(0, 1 - beta) ("paper") or 0 (the others).
    Large alpha * d_j overflows exp to inf; that is left visible to the caller.
    """
    if form not in CC_FORMS:
        raise LossInputError(f"unknown class-centralization form {form!r}; expected one of {CC_FORMS}")
    means, counts = class_means(features, labels, num_classes)
    sq_dist = (features - means[labels.long()]).pow(2).sum(1)  # (N,)
    if form == "squared":
        return sq_dist.sum()
    if form == "margin":
        class_total = torch.zeros(num_classes, dtype=sq_dist.dtype, device=sq_dist.device).index_add_(0, labels.long(), sq_dist.detach())
        mean_dist = class_total / counts.clamp(min=1).to(sq_dist.dtype)
        return torch.clamp(sq_dist - beta * mean_dist[labels.long()], min=0.0).sum()
    # clamp propagates NaN, so a NaN distance stays NaN
    return torch.clamp(torch.exp(alpha * sq_dist) - beta, min=0.0).sum()


def covariance_matching_loss(
    real_maps: torch.Tensor,
    real_labels: torch.Tensor,
    syn_maps: torch.Tensor,
    syn_labels: torch.Tensor,
    num_classes: int,
    *,
    unbiased: bool = False,
) -> torch.Tensor:
    """IID covariance matching constraint (Eq. 5): sum over classes present in both of ||Sigma_syn - Sigma_real||_F^2.

    Sigma are the local feature covariances of ``class_covariances`` (Eq. 6-7) on (N, d, h, w) feature maps of
    the matching network. With one synthetic sample in a class Sigma_syn = 0, so the term is the constant
    ||Sigma_real||_F^2 and gives the synthetic maps no gradient.
    """
    _check_features(real_maps, 4, "real_maps")
    _check_features(syn_maps, 4, "syn_maps")
    if real_maps.shape[1:] != syn_maps.shape[1:]:
        raise LossInputError(
            "real_maps and syn_maps must share (d, h, w), "
            f"got {tuple(real_maps.shape[1:])} and {tuple(syn_maps.shape[1:])}"
        )
    real_cov, real_counts = class_covariances(real_maps, real_labels, num_classes, unbiased=unbiased)
    syn_cov, syn_counts = class_covariances(syn_maps, syn_labels, num_classes, unbiased=unbiased)
    in_both = ((real_counts > 0) & (syn_counts > 0)).to(syn_cov.dtype)
    # multiply (not index) by the mask so that a NaN anywhere still reaches the result
    return (in_both * (syn_cov - real_cov).pow(2).sum((1, 2))).sum()


def class_aware_ce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    train_accuracy_percent: float | torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """IDM's class-aware regulariser, as published: weight * acc% * sum_c mean_{j in c} CE(logits_j, y_j).

    The published code adds ``ce_weight * acc * CE(model(syn_c), y_c)`` (CE with mean reduction) inside its loop
    over classes, so the result is a class-summed per-class mean cross-entropy; absent classes add nothing.
    ``train_accuracy_percent`` is the sampled model's running training accuracy in percent (0..100), a float or
    a 0-d tensor.
    """
    _check_features(logits, 2, "logits")
    labels = _check_labels(labels, logits.shape[0], "labels")
    if isinstance(train_accuracy_percent, torch.Tensor) and train_accuracy_percent.dim() != 0:
        raise LossInputError(
            f"train_accuracy_percent must be a float or a 0-d tensor, got shape {tuple(train_accuracy_percent.shape)}"
        )
    per_sample = F.cross_entropy(logits, labels, reduction="none")  # (N,)
    class_mean_ce, _ = class_means(per_sample.unsqueeze(1), labels, num_classes)  # (C, 1), zero if absent
    return weight * train_accuracy_percent * class_mean_ce.sum()


_degenerate_warned = False
DEGENERATE_MESSAGE = (
    "one synthetic image per class (ipc * expand_factor**2 == 1): the class centralization and covariance "
    "matching terms are identically zero (zero spread, zero covariance), so DM+IID equals DM; the paper "
    "reports no DM+IID result at IPC 1"
)


def warn_if_degenerate(ipc: int, expand_factor: int) -> bool:
    """Warn once per process when each class has one synthetic training image; return whether it does.

    ``expand_factor`` is IDM's partition factor (2 for the 2x2 split, 1 without partitioning), so a class has
    ipc * expand_factor**2 synthetic training images.
    """
    global _degenerate_warned
    for name, value in (("ipc", ipc), ("expand_factor", expand_factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LossInputError(f"{name} must be a positive int, got {value!r}")
    degenerate = ipc * expand_factor**2 == 1
    if degenerate and not _degenerate_warned:
        _degenerate_warned = True
        warnings.warn(DEGENERATE_MESSAGE, DegenerateIIDWarning, stacklevel=2)
    return degenerate
