"""DM, IDM and their IID variants (Deng et al., CVPR 2024): batched over classes, deterministic, resumable.

One iteration, for every method:

1. :func:`draw_iteration` draws ALL of the iteration's randomness first: the matching network (DM: the seed of a
   fresh random ConvNet; IDM: which queue networks, and the seed of the network appended this iteration), the real
   images of every class (batched sampling without replacement: random keys over a padded (C, max_count) index
   matrix + top-k), one DSA :class:`~iid_distill.augment.GroupPlan` per matching pass (one op and parameter set per
   class, shared by the class's real and synthetic images: siamese), the CC network from the pre-trained pool and
   (IDM) the queue networks to train with their real batches.
2. :func:`batched_loss_and_gradient` computes every class's loss and its gradient batched: the real images of all
   classes go through the matching network in chunks of ``real_chunk`` under ``no_grad`` (their DSA from the plan),
   the synthetic training images (IDM: partitioned and expanded first) with grad, all classes in one pass on GPU
   (in class groups of ``syn_chunk`` images, whose gradients add up exactly, where memory or CPU caches call for
   it). One forward gives the feature map (covariance matching, Eq. 5-7) and the embedding derived from it (mean
   matching, Eq. 2); the CC network g embeds the same augmented synthetic batch (Eq. 3), as the authors' per-class
   loop computes the constraint on the same ``img_syn`` it matches; IDM adds its class-aware cross-entropy on
   ``classifier(embedding)`` (the authors run ``net(img_syn)`` a second time: the same values).
   Total: ``L_mean + lambda_cc * L_CC + lambda_cm * L_CM (+ IDM's weighted CE)`` (paper Eq. 8 / 9).
3. :func:`image_step` updates the images with SGD + momentum. ``joint`` is one step on the summed loss (DM).
   ``per_class`` reproduces EXACTLY the published IDM loop, which takes one optimiser step per class inside the class
   loop: the class losses are independent given the frozen network, so each class's gradient is taken at the point
   its image slice has drifted to through the momentum of the earlier classes' sub-steps, all classes at once, and
   closed forms of the momentum sub-steps finish the iteration (derivation in :func:`per_class_coefficients`).
4. IDM: the chosen queue networks train on real batches and update their accuracy meters.

:func:`reference_per_class_step` is the literal per-class loop of the authors' code (per class: DSA, forward, loss,
and for ``per_class`` a ``torch.optim.SGD`` step), kept as a documented slow path: the tests check the batched
path against it and ``benchmarks/distill_speed.py`` times both.

Randomness comes only from two explicit generators saved in every checkpoint: a CPU "host" generator for choices
made on the host (network seeds, queue and pool choices: no device synchronisation) and a generator on the device
for tensors (real-image keys, DSA plans, IDM training batches, the initialisation).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.augment import DSAConfig, GroupPlan, apply_group_plan, draw_group_plan, partition_and_expand, tile_downscaled
from iid_distill.compiled import Compiled, compile_wanted, valid_compile_mode
from iid_distill.losses import (
    class_aware_ce_loss,
    class_centralization_loss,
    covariance_matching_loss,
    mean_matching_loss,
    warn_if_degenerate,
)
from iid_distill.utils import (
    UserError,
    atomic_path,
    atomic_torch_save,
    atomic_write_json,
    device_description,
    git_sha,
    json_round_trip,
    keep_freed_memory,
    load_torch_file,
    make_generator,
    params_hash,
    progress_bar,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "DistillConfig",
    "DistillContext",
    "DistillError",
    "DistillState",
    "InMemoryPool",
    "IterationDraw",
    "MatchDraw",
    "RealSampler",
    "batched_loss_and_gradient",
    "batched_loss_terms",
    "class_groups",
    "default_chunks",
    "checkpoint_path",
    "distill_iteration",
    "draw_iteration",
    "image_step",
    "initial_state",
    "method_label",
    "per_class_coefficients",
    "published_settings",
    "resolve_distill_settings",
    "reference_class_loss",
    "reference_per_class_step",
    "run_distillation",
]

METHODS = ("dm", "idm")
CONSTRAINTS = ("none", "cc", "cm", "cc+cm")
IMAGE_STEPS = ("per_class", "joint")
INITS = ("real", "noise")
PRECISIONS = ("fp32", "bf16")
CC_FORMS = ("squared", "paper", "margin")  # see losses.class_centralization_loss
SETTINGS_SOURCES = ("code", "paper")  # code: the objective that produced the paper's numbers (default)
INIT_DOWNSCALE_MODES = ("bilinear", "nearest")
CHECKPOINT_FORMAT = "iid-distill/distill-checkpoint"
CHECKPOINT_VERSION = 1
# Settings that change no result (when to save, evaluate, log): left out of the checkpoint's config hash.
RESULT_NEUTRAL_FIELDS = ("checkpoint_every", "eval_every", "log_every")
LOSS_TERMS = ("mean", "cc", "cm", "ce", "total")
# compile 'auto' compiles a CPU run whose real-image forwards (iterations x images per iteration) reach this many: a
# CIFAR-10 DM run of 400 iterations at 256 images per class; the digits demo (100 x 640) stays eager.
COMPILE_AUTO_REAL_IMAGES = 1_000_000


class DistillError(UserError):
    """Bad distillation settings, a run that cannot start, or a run that diverged."""


class CheckpointError(DistillError):
    """A checkpoint that is unreadable or belongs to another run."""


# ------------------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class DistillConfig:
    """Every setting of a DM / IDM (+ IID) distillation run (the ``distill`` section of params.yaml).

    Defaults are DM's published CIFAR-10 IPC 10 settings; :func:`published_settings` gives every published setting.
    Fields prefixed ``queue_`` / ``net_`` and ``match_nets``, ``train_nets``, ``train_steps``, ``acc_reset_interval``,
    ``ce_weight`` are IDM's model queue and class-aware regulariser and are ignored by DM.

    method: ``dm`` (a fresh random ConvNet per iteration) or ``idm`` (a queue of ConvNets trained on real data).
    constraints: IID's class centralisation (``cc``, Eq. 3, with a network from the pre-trained pool) and covariance
      matching (``cm``, Eq. 5-7, on the matching network's last feature map): none, cc, cm or cc+cm.
    expand_factor: IDM's partition-and-expansion factor (each stored image is split into factor^2 patches, each
      upsampled to full size, before DSA; 1 = off). Evaluation expands the same way (set meta ``expand_factor``).
    image_step: ``joint`` (one SGD step per iteration on the summed loss: DM) or ``per_class`` (the published IDM
      loop: one SGD step per class inside the class loop, reproduced exactly in one batched pass).
    init: ``real`` (random real images; with expand_factor > 1 each stored image tiles factor^2 real images
      downscaled by ``init_downscale``, as IDM) or ``noise`` (standard normal in normalised space).
    dsa_strategy: None = the dataset's default (no flip for digit datasets).
    cc_form: ``squared`` (the authors' code: sum d, the default), ``paper`` (Eq. 3 as printed: sum max(0, exp(alpha d)
      - beta)) or ``margin`` (sum max(0, d - beta * the class's mean d): the form in which beta acts; beta 0 = squared).
    cc_arch: architecture the CC pool must hold (the paper: ResNet18; the tests use a small ConvNet pool).
    precision: ``fp32`` or ``bf16`` (autocast of the network forwards; losses in fp32). bf16 pays on GPUs and on CPUs
      with native bf16 (avx512_bf16, AMX); on an AVX2-only CPU its convolutions were 8x slower than fp32.
    compile: ``auto`` (params.yaml's default: torch.compile the matching and CC network passes and IDM's queue
      training on the CPU when the run is long enough to repay compiling, :data:`COMPILE_AUTO_REAL_IMAGES`), ``true``
      or ``false`` (the default here: a library call compiles only when asked). Equal to eager to float32 rounding
      (see :mod:`iid_distill.compiled`).
    real_chunk: most real images per no-grad forward (bounds memory; IDM at IPC 1 uses 5000 per class).
    syn_chunk: most synthetic training images per forward + backward; classes are grouped (at least one per group)
      and the group gradients add up exactly. 0 (default) = by device, see :func:`default_chunks`.
    match_nets: IDM's ``train_net_num``: queue networks matched per iteration, one full class loop each.
    train_nets / train_steps / net_batch: IDM's ``fetch_net_num`` / ``model_train_steps`` / ``trained_bs``.
    acc_reset_interval: the queue networks' accuracy meters are reset every this many iterations (IDM's
      ``eval_interval``); the CE weight is the matching network's running train accuracy in percent.
    checkpoint_every / eval_every / log_every: iterations between checkpoints, evaluations (0 = off) and logged
      loss values (the loss is checked for NaN/inf there on GPU, every iteration on CPU).
    """

    method: str = "dm"
    constraints: str = "none"
    ipc: int = 10
    iterations: int = 20000
    lr_img: float = 1.0
    momentum_img: float = 0.5
    batch_real: int = 256
    arch: str = "ConvNet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "real"
    init_downscale: str = "bilinear"
    dsa: bool = True
    dsa_strategy: str | None = None
    lambda_cc: float = 0.05
    lambda_cm: float = 0.01
    cc_form: str = "squared"
    cc_arch: str = "ResNet18"
    cc_alpha: float = 0.02
    cc_beta: float = 0.0
    cm_unbiased: bool = False
    expand_factor: int = 1
    image_step: str = "joint"
    queue_initial: int = 3
    queue_size: int = 100
    queue_interval: int = 30
    match_nets: int = 1
    train_nets: int = 2
    train_steps: int = 10
    net_lr: float = 0.01
    net_momentum: float = 0.9
    net_weight_decay: float = 5e-4
    net_batch: int = 256
    acc_reset_interval: int = 100
    ce_weight: float = 0.5
    precision: str = "fp32"
    channels_last: bool = False
    compile: str | bool = False
    real_chunk: int = 0
    syn_chunk: int = 0
    checkpoint_every: int = 500
    eval_every: int = 0
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {
            "method": METHODS,
            "constraints": CONSTRAINTS,
            "image_step": IMAGE_STEPS,
            "init": INITS,
            "init_downscale": INIT_DOWNSCALE_MODES,
            "precision": PRECISIONS,
            "cc_form": CC_FORMS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DistillError(f"distill.{name} = {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        positive = ("ipc", "batch_real", "expand_factor", "queue_size", "queue_interval", "match_nets", "net_batch",
                    "acc_reset_interval", "checkpoint_every", "log_every")
        non_negative = ("iterations", "queue_initial", "train_nets", "train_steps", "eval_every", "seed", "real_chunk", "syn_chunk")
        for name in positive + non_negative:
            value = getattr(self, name)
            low = 1 if name in positive else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DistillError(f"distill.{name} = {value!r}: expected an integer >= {low}")
        for name in ("lr_img", "momentum_img", "lambda_cc", "lambda_cm", "cc_alpha", "cc_beta", "net_lr", "net_momentum",
                     "net_weight_decay", "ce_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DistillError(f"distill.{name} = {value!r}: expected a finite number >= 0")
        for name in ("dsa", "cm_unbiased", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise DistillError(f"distill.{name} = {getattr(self, name)!r}: expected true or false")
        if not valid_compile_mode(self.compile):
            raise DistillError(f"distill.compile = {self.compile!r}: expected auto, true or false")
        if not isinstance(self.arch_kwargs, dict):
            raise DistillError(f"distill.arch_kwargs: expected a mapping, got {type(self.arch_kwargs).__name__}")
        if self.method == "idm" and self.queue_initial + 1 < self.match_nets:
            raise DistillError(f"distill.match_nets = {self.match_nets}: the IDM queue starts with queue_initial + 1 = "
                               f"{self.queue_initial + 1} networks; lower match_nets or raise queue_initial")
        if self.method == "idm" and self.queue_initial > self.queue_size:
            raise DistillError(f"distill.queue_initial = {self.queue_initial} exceeds queue_size = {self.queue_size}")

    @property
    def uses_cc(self) -> bool:
        return "cc" in self.constraints.split("+")

    @property
    def uses_cm(self) -> bool:
        return "cm" in self.constraints.split("+")

    @property
    def uses_ce(self) -> bool:
        """IDM's class-aware regulariser needs a trained network's accuracy, so it exists only for IDM."""
        return self.method == "idm" and self.ce_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_hash(self) -> str:
        """Hash of every setting that can change the synthetic images (the checkpoint's identity)."""
        return params_hash({key: value for key, value in self.to_dict().items() if key not in RESULT_NEUTRAL_FIELDS})


def method_label(config: DistillConfig) -> str:
    """``DM``, ``IDM``, ``DM+IID`` (cc+cm), ``DM+CC``, ``IDM+CM``, ..."""
    base = config.method.upper()
    return {"none": base, "cc+cm": f"{base}+IID", "cc": f"{base}+CC", "cm": f"{base}+CM"}[config.constraints]


# IDM's published per-setting flags (uitrbn/IDM command.txt): ce_weight (--ce_weight), batch_real (--batch_real),
# queue_interval (--net_generate_interval), train_steps (--model_train_steps), acc_reset_interval (--eval_interval).
_IDM_COMMANDS: dict[tuple[str, int], dict[str, Any]] = {
    ("cifar10", 1): dict(ce_weight=0.5, batch_real=5000, queue_interval=5, train_steps=10, acc_reset_interval=100),
    ("cifar10", 10): dict(ce_weight=0.5, batch_real=256, queue_interval=30, train_steps=10, acc_reset_interval=100),
    ("cifar10", 50): dict(ce_weight=0.1, batch_real=256, queue_interval=30, train_steps=10, acc_reset_interval=500),
    ("cifar100", 1): dict(ce_weight=0.5, batch_real=5000, queue_interval=5, train_steps=10, acc_reset_interval=100),
    ("cifar100", 10): dict(ce_weight=0.1, batch_real=256, queue_interval=30, train_steps=50, acc_reset_interval=100),
    ("cifar100", 50): dict(ce_weight=0.1, batch_real=256, queue_interval=30, train_steps=10, acc_reset_interval=500),
    ("tinyimagenet", 1): dict(ce_weight=0.5, batch_real=256, queue_interval=30, train_steps=10, acc_reset_interval=100),
    ("tinyimagenet", 10): dict(ce_weight=0.5, batch_real=256, queue_interval=30, train_steps=10, acc_reset_interval=500),
    ("tinyimagenet", 50): dict(ce_weight=0.8, batch_real=256, queue_interval=30, train_steps=50, acc_reset_interval=1000),
}
_PUBLISHED_IPCS = (1, 10, 50)


def _idm_flags(dataset: str, ipc: int) -> dict[str, Any]:
    """IDM's flags for (dataset, ipc): the published row, else CIFAR-10's rows (other datasets) at the nearest
    published IPC (ties to the smaller one); IDM published no command for SVHN / MNIST or other IPCs."""
    table_dataset = dataset if any(key[0] == dataset for key in _IDM_COMMANDS) else "cifar10"
    nearest = min(_PUBLISHED_IPCS, key=lambda published: (abs(published - ipc), published))
    return dict(_IDM_COMMANDS[(table_dataset, nearest)])


def published_settings(dataset: str, ipc: int, method: str, constraints: str = "none", source: str = "code") -> dict[str, Any]:
    """Per-setting defaults of the published methods, as keyword arguments of :class:`DistillConfig`.

    DM (Zhao & Bilen): lr_img 1 (10 for IPC >= 100 on CIFAR-10), 20,000 iterations, 256 real images per class, one
    joint SGD step (momentum 0.5) per iteration. IDM (uitrbn/IDM command.txt): lr_img 0.2, partition factor 2,
    per-class image steps, ce_weight 0.5/0.1/0.8 by setting, 5000 real images per class and a new queue network every
    5 iterations at IPC 1 on CIFAR-10/100, 50 training steps for CIFAR-100 IPC 10 and TinyImageNet IPC 50, meters
    reset every 100 iterations (500 at CIFAR IPC 50 and Tiny IPC 10, 1000 at Tiny IPC 50). Datasets / IPCs without a
    published IDM command use CIFAR-10's row at the nearest published IPC.

    IID weights, ``source="code"`` (VincenDen/IID, the default: the objective that produced the paper's tables):
    lambda_cc 0.05 (DM) / 0.01 (IDM), lambda_cm 0.01 (DM) / 0.03 (IDM), CC in the plain squared form.
    ``source="paper"`` (the text, Sec. 4.1): lambda_cc 0.05 at IPC < 50 (the paper: IPC 1 and 10), 0.003 at
    IPC >= 50; lambda_cm 0.01; CC in Eq. 3's form (alpha 0.02, beta 0), about 1/45 of the code's pull on CIFAR-10.
    A constraint that is off gets weight 0. Iterations stay 20,000 for the IID variants too, although the paper
    reports convergence after about 2,000 (IPC 10) and 3,000 (IPC 50) iterations (Fig. 5).
    """
    from iid_distill.data import get_spec

    spec = get_spec(dataset)  # unknown dataset: a DataError (UserError) listing the valid names
    if method not in METHODS:
        raise DistillError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if constraints not in CONSTRAINTS:
        raise DistillError(f"unknown constraints {constraints!r}; expected one of {', '.join(CONSTRAINTS)}")
    if source not in SETTINGS_SOURCES:
        raise DistillError(f"unknown settings source {source!r}; expected one of {', '.join(SETTINGS_SOURCES)}")
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise DistillError(f"ipc = {ipc!r}: expected a positive integer")
    settings: dict[str, Any] = dict(
        method=method, constraints=constraints, ipc=ipc, iterations=20000, momentum_img=0.5, batch_real=256,
        arch="ConvNet", init="real", dsa=True, dsa_strategy=None,
    )
    if method == "dm":
        settings.update(lr_img=10.0 if spec.name == "cifar10" and ipc >= 100 else 1.0, expand_factor=1, image_step="joint", ce_weight=0.0)
    else:
        settings.update(lr_img=0.2, expand_factor=2, image_step="per_class", **_idm_flags(spec.name, ipc))
    if source == "paper":
        lambda_cc, lambda_cm, cc_form = (0.003 if ipc >= 50 else 0.05), 0.01, "paper"
    else:
        lambda_cc, lambda_cm, cc_form = (0.05, 0.01, "squared") if method == "dm" else (0.01, 0.03, "squared")
    uses = set(constraints.split("+"))
    settings.update(lambda_cc=lambda_cc if "cc" in uses else 0.0, lambda_cm=lambda_cm if "cm" in uses else 0.0, cc_form=cc_form)
    return settings


# Method ids of the workflow (params.yaml distill.methods): base method and IID constraints.
METHOD_IDS: dict[str, tuple[str, str]] = {
    f"{method}{suffix}": (method, constraints)
    for method in METHODS
    for suffix, constraints in (("", "none"), ("_cc", "cc"), ("_cm", "cm"), ("_iid", "cc+cm"))
}


def method_id_of(method: str, constraints: str) -> str:
    """``("dm", "cc+cm")`` -> ``"dm_iid"`` (inverse of :data:`METHOD_IDS`)."""
    for method_id, pair in METHOD_IDS.items():
        if pair == (method, constraints):
            return method_id
    raise DistillError(f"no method id for method {method!r} with constraints {constraints!r}")


def _check_setting_keys(values: dict[str, Any], where: str) -> None:
    names = {field.name for field in dataclasses.fields(DistillConfig)}
    for key in values:
        if key in ("method", "constraints", "ipc"):
            raise DistillError(f"params key '{where}.{key}' is not allowed: the method id and --ipc choose it")
        if key not in names:
            raise DistillError(f"params key '{where}.{key}' is unknown; valid keys: {', '.join(sorted(names - {'method', 'constraints', 'ipc'}))}")


def resolve_distill_settings(params: dict[str, Any], dataset: str, ipc: int, method_id: str, *, source: str | None = None) -> dict[str, Any]:
    """The full :class:`DistillConfig` keyword dict of one job, from params.yaml's ``distill`` block:

    ``published_settings(dataset, ipc, method, constraints, source)`` updated by ``distill.common`` and then by
    ``distill.methods[method_id]`` (whose ``method`` / ``constraints`` choose the base method; ids missing there fall
    back to :data:`METHOD_IDS`: dm, dm_cc, dm_cm, dm_iid, idm, ...). ``source`` defaults to ``distill.settings``
    (``paper`` if absent). Unknown keys are errors naming their params path.
    """
    block = params.get("distill") or {}
    if not isinstance(block, dict):
        raise DistillError(f"params key 'distill': expected a mapping, got {type(block).__name__}")
    methods = block.get("methods") or {}
    common = block.get("common") or {}
    for where, value in (("distill.methods", methods), ("distill.common", common)):
        if not isinstance(value, dict):
            raise DistillError(f"params key '{where}': expected a mapping, got {type(value).__name__}")
    if method_id not in methods and method_id not in METHOD_IDS:
        known = sorted(set(methods) | set(METHOD_IDS))
        raise DistillError(f"unknown method id {method_id!r}; known ids: {', '.join(known)} (params distill.methods)")
    entry = methods.get(method_id) or {}
    if not isinstance(entry, dict):
        raise DistillError(f"params key 'distill.methods.{method_id}': expected a mapping, got {type(entry).__name__}")
    entry = dict(entry)
    default_method, default_constraints = METHOD_IDS.get(method_id, (None, None))
    method, constraints = entry.pop("method", default_method), entry.pop("constraints", default_constraints)
    if method is None or constraints is None:
        raise DistillError(f"params key 'distill.methods.{method_id}' needs 'method' (dm|idm) and 'constraints' (none|cc|cm|cc+cm)")
    _check_setting_keys(common, "distill.common")
    _check_setting_keys(entry, f"distill.methods.{method_id}")
    settings = published_settings(dataset, ipc, method, constraints, source or block.get("settings", "code"))
    settings.update(common)
    settings.update(entry)
    return settings


# ------------------------------------------------------------------------------------------------ data on device


class RealSampler:
    """Draws up to ``batch`` distinct real images of every class at once, class-major.

    The training indices sit in a padded (C, max_count) matrix (-1 = padding); a draw puts uniform random keys on it
    (-1 on padding), takes the top ``min(batch, max_count)`` keys per row and keeps the first ``min(batch, count_c)``
    of row c: a uniformly random subset of each class, without replacement, in one batched op. The kept positions are
    fixed, so the draw's size and its labels (``labels``) are known without a device synchronisation.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, batch: int) -> None:
        device = labels.device
        counts = torch.bincount(labels, minlength=num_classes)
        if counts.numel() != num_classes:
            raise DistillError(f"training labels go up to {counts.numel() - 1}, beyond the dataset's {num_classes} classes")
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(labels.numel(), device=device) - starts[sorted_labels]
        self.counts = counts.tolist()
        self.max_count = max(self.counts)
        self.index_matrix = torch.full((num_classes, self.max_count), -1, dtype=torch.int64, device=device)
        self.index_matrix[sorted_labels, slot] = order
        self.padding = self.index_matrix < 0
        self.num_classes = num_classes
        self.top = min(batch, self.max_count)
        self.take = [min(batch, count) for count in self.counts]
        kept = torch.arange(self.top, device=device) < torch.tensor(self.take, device=device).unsqueeze(1)
        self.kept_positions = torch.nonzero(kept.flatten()).squeeze(1)
        self.labels = torch.repeat_interleave(torch.arange(num_classes, device=device), torch.tensor(self.take, device=device))
        self.class_offsets = [0]
        for take in self.take:
            self.class_offsets.append(self.class_offsets[-1] + take)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """Training-set indices (sum_c take_c,), class c's at ``class_offsets[c]:class_offsets[c + 1]``."""
        keys = torch.rand(self.index_matrix.shape, generator=generator, device=self.index_matrix.device)
        keys = keys.masked_fill(self.padding, -1.0)
        chosen = self.index_matrix.gather(1, keys.topk(self.top, dim=1).indices)
        return chosen.flatten()[self.kept_positions]


def default_chunks(device: torch.device, image_size: int) -> tuple[int, int]:
    """(real_chunk, syn_chunk) when the config leaves them 0, for 32 px images scaled by 32^2 / image_size^2.

    CUDA: 8192 real images per no-grad forward and 2048 synthetic images per forward + backward (about 16 GB of
    ResNet18 + ConvNet activations at 32 px), so CIFAR at IPC <= 50 runs the synthetic side in one pass. CPU: 64 and
    64, measured on 2-core AMD EPYC machines (reports/benchmarks.md): 64-128 real images per forward were fastest
    (512 was 1.1-1.3x slower even without page faults), and the synthetic group size made no measurable difference.
    """
    real, syn = (8192, 2048) if device.type == "cuda" else (64, 64)
    scale = 32 * 32 / (image_size * image_size)
    return max(1, int(real * scale)), max(1, int(syn * scale))


@dataclass
class DistillContext:
    """What an iteration reads but never changes: settings, the uint8 training set on the device, samplers, DSA.

    ``dtype`` is the working precision of images and networks (float32; the tests use float64).
    """

    config: DistillConfig
    spec: Any
    train_images: torch.Tensor  # uint8 (N, C, H, W) on device
    train_labels: torch.Tensor  # int64 (N,) on device
    sampler: RealSampler
    dsa_config: DSAConfig | None
    device: torch.device
    dtype: torch.dtype = torch.float32
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)
    _syn_labels: torch.Tensor = field(init=False, repr=False)
    _step_coefficients: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)
    match_forward: Compiled = field(init=False, repr=False)  # (net, images) -> (feature map, embedding): real and synthetic
    embed_forward: Compiled = field(init=False, repr=False)  # (net, images) -> embedding: the CC pool network
    train_forward: Compiled = field(init=False, repr=False)  # (net, images) -> logits: IDM's queue training

    @classmethod
    def create(cls, config: DistillConfig, dataset, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "DistillContext":
        device = torch.device(device)
        if device.type == "cpu":
            keep_freed_memory()
        spec = dataset.spec
        train_images = dataset.train.images.to(device)
        train_labels = dataset.train.labels.to(device)
        dsa_config = DSAConfig(strategy=config.dsa_strategy or spec.dsa_strategy) if config.dsa else None
        sampler = RealSampler(train_labels, spec.num_classes, config.batch_real)
        return cls(config, spec, train_images, train_labels, sampler, dsa_config, device, dtype)

    def __post_init__(self) -> None:
        # cached on the device: data.normalize would copy mean/std from the host on every call
        self._mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self._std = torch.tensor(self.spec.std, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self._syn_labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(self.config.ipc)
        passes = self.config.match_nets if self.config.method == "idm" else 1
        real_images = self.config.iterations * passes * self.sampler.labels.numel()
        enabled = compile_wanted(self.config.compile, self.device, real_images, COMPILE_AUTO_REAL_IMAGES)
        self.match_forward = Compiled(_match_forward, enabled, "the matching network's forward")
        self.embed_forward = Compiled(_embed_forward, enabled, "the CC network's forward")
        self.train_forward = Compiled(_train_forward, enabled, "the IDM queue training forward")

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def chunks(self) -> tuple[int, int]:
        """(real_chunk, syn_chunk) in effect: the config's, or :func:`default_chunks` where it gives 0."""
        real, syn = default_chunks(self.device, self.spec.image_size)
        return self.config.real_chunk or real, self.config.syn_chunk or syn

    @property
    def syn_labels(self) -> torch.Tensor:
        """Labels of the stored synthetic images, class-major (ipc of class 0, then class 1, ...)."""
        return self._syn_labels

    def step_coefficients(self) -> dict[str, torch.Tensor]:
        """:func:`per_class_coefficients` for this run, computed once (no host-to-device copy per iteration)."""
        if self._step_coefficients is None:
            self._step_coefficients = per_class_coefficients(self.num_classes, self.config.momentum_img, self.device, self.dtype)
        return self._step_coefficients

    def real_images(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised training images at ``indices`` (same arithmetic as ``data.normalize``), in ``dtype``."""
        images = (self.train_images[indices].to(torch.float32) / 255.0 - self._mean) / self._std
        return self.memory_format(images.to(self.dtype))

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _match_forward(net: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feature_map = net.feature_map(images)
    return feature_map, net.embedding_from_map(feature_map)


def _embed_forward(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return net.embed(images)


def _train_forward(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return net(images)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Losses run in at least fp32 (bf16 autocast outputs are upcast; float64 stays float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def expand_training_view(images: torch.Tensor, labels: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the matching sees: IDM's partition-and-expansion (factor > 1) or the stored images."""
    if factor == 1:
        return images, labels
    return partition_and_expand(images, labels, factor)


# ------------------------------------------------------------------------------------------------ networks


class FeatureNetPool(Protocol):
    """What the distiller needs of a pool of CC networks (``pretrain.FeaturePool`` or :class:`InMemoryPool`)."""

    def sample(self, generator: torch.Generator) -> nn.Module: ...


class InMemoryPool:
    """A pool of networks held in memory (tests, benchmarks); ``sample`` picks one uniformly, like FeaturePool."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise DistillError("InMemoryPool: needs at least one network")
        self.models = [model.eval().requires_grad_(False) for model in models]

    def __len__(self) -> int:
        return len(self.models)

    def sample(self, generator: torch.Generator) -> nn.Module:
        index = torch.randint(len(self.models), (1,), generator=generator, device=generator.device)
        return self.models[int(index)]

    def describe(self) -> dict[str, Any]:
        return {"pool_dir": None, "num_models": len(self.models), "kind": "in-memory"}


def _has_batch_statistics(net: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in net.modules())


def _reset_parameters(net: nn.Module, seed: int) -> None:
    """Re-initialise ``net`` as ``models.get_network(seed=seed)`` initialises a new one (same RNG stream, same order)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        for module in net.modules():
            if module is not net and hasattr(module, "reset_parameters"):
                module.reset_parameters()


class FreshNetFactory:
    """DM's fresh random matching network per iteration, without rebuilding the module every time.

    Building a ConvNet costs tens of ms on CPU (a shape probe runs a forward); re-initialising a CPU template costs
    about 1 ms. At construction the re-initialised template is compared with ``get_network(seed=...)``; if the two
    ever differ for an architecture, every iteration builds a new network instead, so the weights are always exactly
    those of ``get_network(arch, ..., seed=seed)``.
    """

    def __init__(self, config: DistillConfig, spec, device: torch.device, dtype: torch.dtype) -> None:
        from iid_distill.models import get_network

        self._build = lambda seed: get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=seed, **config.arch_kwargs)
        self.template = self._build(0)
        probe_seed = 12345
        _reset_parameters(self.template, probe_seed)
        reference = self._build(probe_seed).state_dict()
        self.reuse = all(torch.equal(value, reference[name]) for name, value in self.template.state_dict().items())
        self.device, self.dtype, self.channels_last = device, dtype, config.channels_last
        self.device_net = self._placed(self._build(0)) if self.reuse else None

    def _placed(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device, self.dtype).eval().requires_grad_(False)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def __call__(self, seed: int) -> nn.Module:
        if not self.reuse:
            return self._placed(self._build(seed))
        _reset_parameters(self.template, seed)
        with torch.no_grad():
            for target, source in zip(self.device_net.parameters(), self.template.parameters()):
                target.copy_(source)
        return self.device_net


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode with no parameter gradients (the matching network), restored afterwards."""
    flags = [parameter.requires_grad for parameter in net.parameters()]
    was_training = net.training
    net.eval().requires_grad_(False)
    try:
        yield net
    finally:
        for parameter, flag in zip(net.parameters(), flags):
            parameter.requires_grad_(flag)
        net.train(was_training)


@dataclass
class QueueMember:
    """One IDM queue network with its optimiser and accuracy meter ([correct, seen] int64 on the device)."""

    seed: int
    net: nn.Module
    optimizer: torch.optim.Optimizer
    meter: torch.Tensor

    def accuracy_percent(self) -> torch.Tensor:
        """Running top-1 train accuracy in percent since the last reset; 0 with no samples (as IDM's code)."""
        correct, seen = self.meter[0].to(torch.float64), self.meter[1].to(torch.float64)
        return torch.where(seen > 0, 100.0 * correct / seen.clamp(min=1.0), torch.zeros_like(seen))


def new_queue_member(seed: int, config: DistillConfig, spec, device: torch.device, dtype: torch.dtype = torch.float32) -> QueueMember:
    from iid_distill.models import get_network

    net = get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=seed, **config.arch_kwargs).to(device, dtype)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=config.net_lr, momentum=config.net_momentum, weight_decay=config.net_weight_decay)
    return QueueMember(seed, net, optimizer, torch.zeros(2, dtype=torch.int64, device=device))


# ------------------------------------------------------------------------------------------------ randomness


@dataclass
class MatchDraw:
    """The randomness of one matching pass: every class's real images and the per-class DSA plan."""

    real_indices: torch.Tensor  # training-set indices, class-major (RealSampler.class_offsets)
    plan: GroupPlan | None


@dataclass
class IterationDraw:
    """All randomness of one iteration, drawn before any computation.

    net_seed: DM: the fresh matching network's seed; IDM: the seed of the network appended to the queue this
      iteration (None if none is). match_slots / train_slots: IDM queue positions (after the append) matched / trained.
    train_batches: IDM: (len(train_slots), train_steps, net_batch) training-set indices, without replacement per batch.
    """

    net_seed: int | None
    match_slots: list[int]
    passes: list[MatchDraw]
    pool_net: nn.Module | None
    train_slots: list[int]
    train_batches: torch.Tensor | None


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _random_subsets(rows: int, population: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``rows`` independent uniformly random subsets of ``min(size, population)`` of range(population)."""
    keys = torch.rand(rows, population, generator=generator, device=device)
    return keys.topk(min(size, population), dim=1).indices


def draw_iteration(
    iteration: int,
    ctx: DistillContext,
    host_generator: torch.Generator,
    device_generator: torch.Generator,
    queue_length: int = 0,
    pool: FeatureNetPool | None = None,
) -> IterationDraw:
    """Draw iteration ``iteration``'s randomness, in a fixed order (see :class:`IterationDraw`)."""
    config = ctx.config
    net_seed, match_slots, train_slots, train_batches = None, [], [], None
    if config.method == "dm":
        net_seed = _draw_seed(host_generator)
        passes_count = 1
    else:
        if iteration % config.queue_interval == 0:
            net_seed = _draw_seed(host_generator)
            queue_length = min(queue_length + 1, config.queue_size)
        match_slots = torch.randperm(queue_length, generator=host_generator)[: config.match_nets].tolist()
        passes_count = len(match_slots)
    height, width = ctx.train_images.shape[2], ctx.train_images.shape[3]
    passes = []
    for _ in range(passes_count):
        real_indices = ctx.sampler.sample(device_generator)
        plan = None
        if ctx.dsa_config is not None:
            plan = draw_group_plan(ctx.num_classes, height, width, device_generator, ctx.dsa_config, ctx.device)
        passes.append(MatchDraw(real_indices, plan))
    pool_net = None
    if config.uses_cc:
        if pool is None:
            raise DistillError("constraint 'cc' needs a pool of pre-trained feature networks; pass a pool directory (--pool)")
        pool_net = pool.sample(host_generator)
    if config.method == "idm" and config.train_nets > 0 and config.train_steps > 0:
        train_slots = torch.randperm(queue_length, generator=host_generator)[: config.train_nets].tolist()
        batches = _random_subsets(len(train_slots) * config.train_steps, ctx.train_labels.numel(), config.net_batch, device_generator, ctx.device)
        train_batches = batches.view(len(train_slots), config.train_steps, -1)
    return IterationDraw(net_seed, match_slots, passes, pool_net, train_slots, train_batches)


# ------------------------------------------------------------------------------------------------ losses


@torch.no_grad()
def real_features(net: nn.Module, ctx: DistillContext, draw: MatchDraw, need_maps: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Feature maps (if ``need_maps``) and embeddings of the pass's real images, in chunks of ``real_chunk``."""
    labels = ctx.sampler.labels
    maps, embeddings = [], []
    chunk = ctx.chunks[0]
    for start in range(0, labels.numel(), chunk):
        images = ctx.real_images(draw.real_indices[start : start + chunk])
        if draw.plan is not None:
            with torch.profiler.record_function("distill/dsa"):
                images = ctx.memory_format(apply_group_plan(images, labels[start : start + chunk], draw.plan))
        with torch.profiler.record_function("distill/forward_real"), ctx.autocast():
            feature_map, embedding = ctx.match_forward(net, images)
        embeddings.append(_full_precision(embedding))
        if need_maps:
            maps.append(_full_precision(feature_map))
    return (torch.cat(maps) if need_maps else None), torch.cat(embeddings)


def batched_loss_terms(
    images: torch.Tensor,
    net: nn.Module,
    ctx: DistillContext,
    draw: MatchDraw,
    pool_net: nn.Module | None = None,
    ce_scale: float | torch.Tensor = 0.0,
    *,
    classes: tuple[int, int] | None = None,
    real: tuple[torch.Tensor | None, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Every class's loss at once for the stored images ``images`` (class-major, ipc per class).

    Returns 0-d tensors: ``mean`` (Eq. 2, summed over classes), ``cc`` (Eq. 3, on g of the augmented synthetic
    batch), ``cm`` (Eq. 5), ``ce`` (IDM's class-aware CE, already weighted by ce_weight and ``ce_scale`` = the
    matching network's train accuracy in percent) and ``total`` = mean + lambda_cc cc + lambda_cm cm + ce.
    Terms that are off are zero. ``net`` and ``pool_net`` must be frozen (no parameter gradients).

    ``classes=(c0, c1)``: ``images`` hold only classes c0..c1-1 (a class group; the losses are sums of independent
    per-class terms, so groups add up exactly); ``real``: this pass's :func:`real_features`, if already computed.
    """
    config = ctx.config
    first, last = classes if classes is not None else (0, ctx.num_classes)
    num_classes = last - first
    stored_labels = ctx.syn_labels[first * config.ipc : last * config.ipc]
    syn, syn_labels = expand_training_view(images, stored_labels, config.expand_factor)
    if draw.plan is not None:
        with torch.profiler.record_function("distill/dsa"):
            syn = apply_group_plan(syn, syn_labels, draw.plan)
    syn = ctx.memory_format(syn)
    global_labels, syn_labels = syn_labels, syn_labels - first  # group-local ids: the losses pad only this group's classes
    real_maps, real_embeddings = real if real is not None else real_features(net, ctx, draw, config.uses_cm)
    real_rows = slice(ctx.sampler.class_offsets[first], ctx.sampler.class_offsets[last])
    real_labels = ctx.sampler.labels[real_rows] - first
    with torch.profiler.record_function("distill/forward_syn"), ctx.autocast():
        syn_maps, syn_embeddings = ctx.match_forward(net, syn)
        logits = net.classifier(syn_embeddings) if config.uses_ce else None
    zero = images.new_zeros(())
    terms = {"mean": mean_matching_loss(real_embeddings[real_rows], real_labels, _full_precision(syn_embeddings), syn_labels, num_classes)}
    terms["cc"] = zero
    if config.uses_cc:
        with torch.profiler.record_function("distill/cc_network"), ctx.autocast():
            g = ctx.embed_forward(pool_net, syn)
        terms["cc"] = class_centralization_loss(_full_precision(g), syn_labels, num_classes, form=config.cc_form, alpha=config.cc_alpha, beta=config.cc_beta)
    terms["cm"] = zero
    if config.uses_cm:
        terms["cm"] = covariance_matching_loss(real_maps[real_rows], real_labels, _full_precision(syn_maps), syn_labels, num_classes,
                                               unbiased=config.cm_unbiased)
    terms["ce"] = zero
    if config.uses_ce:
        # the CE targets are the real class ids (logits span all classes); absent classes add nothing
        terms["ce"] = class_aware_ce_loss(_full_precision(logits), global_labels, ctx.num_classes, ce_scale, config.ce_weight)
    terms["total"] = terms["mean"] + config.lambda_cc * terms["cc"] + config.lambda_cm * terms["cm"] + terms["ce"]
    return terms


def class_groups(num_classes: int, images_per_class: int, syn_chunk: int) -> list[tuple[int, int]]:
    """Consecutive class ranges holding at most ``syn_chunk`` synthetic training images each (at least one class)."""
    per_group = max(1, syn_chunk // images_per_class)
    return [(first, min(first + per_group, num_classes)) for first in range(0, num_classes, per_group)]


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


def per_class_coefficients(num_classes: int, momentum: float, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Closed forms of IDM's class loop: one SGD-with-momentum step per class, class c's gradient non-zero only on
    its own slice.

    With momentum mu, learning rate lr and the buffer v of a slice of class c at the start of the iteration, the
    loop first takes c momentum-only sub-steps (buffer mu v, mu^2 v, ...; the slice moves by -lr v (mu + ... + mu^c)),
    then the gradient step at that drifted point (buffer b = mu^(c+1) v + g; slice -= lr b), then C-1-c momentum-only
    sub-steps (slice -= lr b (mu + ... + mu^(C-1-c)); buffer mu^(C-1-c) b). Returned per class (shape (C,)):
    ``drift`` = sum_{k=1..c} mu^k, ``decay`` = mu^(c+1), ``tail`` = sum_{k=0..C-1-c} mu^k (the gradient step plus the
    later sub-steps) and ``tail_decay`` = mu^(C-1-c).
    """
    mu = float(momentum)
    rows = []
    for c in range(num_classes):
        after = num_classes - 1 - c
        rows.append((sum(mu**k for k in range(1, c + 1)), mu ** (c + 1), sum(mu**k for k in range(after + 1)), mu**after))
    table = torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)
    return {"drift": table[:, 0], "decay": table[:, 1], "tail": table[:, 2], "tail_decay": table[:, 3]}


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


# ------------------------------------------------------------------------------------------------ reference loop


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


# ------------------------------------------------------------------------------------------------ state and iteration


@dataclass
class DistillState:
    """Everything that changes during a run; a checkpoint is exactly this (plus identity checks)."""

    iteration: int  # iterations completed
    images: torch.Tensor  # stored synthetic images, class-major, normalised space
    velocity: torch.Tensor  # SGD momentum buffer of the images
    host_generator: torch.Generator
    device_generator: torch.Generator
    queue: list[QueueMember] = field(default_factory=list)
    loss_log: list[dict[str, float]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time of the earlier sessions of this run


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one random stream of a run ("host", "device"); streams never collide."""
    return int(hashlib.sha256(f"iid-distill/distill/{int(seed)}/{stream}".encode()).hexdigest()[:15], 16)


def initial_images(ctx: DistillContext, generator: torch.Generator) -> torch.Tensor:
    """The starting synthetic images, class-major (ipc per class), in normalised space and ``ctx.dtype``.

    ``real``: random real images of the class (distinct within a draw); with expand_factor f > 1 each stored image
    tiles f^2 real images downscaled by f, one from each of f^2 independent draws, as IDM's initialisation.
    ``noise``: standard normal values.
    """
    config, spec = ctx.config, ctx.spec
    shape = (ctx.num_classes * config.ipc, spec.channels, spec.image_size, spec.image_size)
    if config.init == "noise":
        return torch.randn(shape, generator=generator, device=ctx.device).to(ctx.dtype)
    short = [c for c, count in enumerate(ctx.sampler.counts) if count < config.ipc]
    if short:
        raise DistillError(f"init 'real': class {short[0]} has only {ctx.sampler.counts[short[0]]} training images, fewer than "
                           f"ipc = {config.ipc}; use init 'noise' or a smaller ipc")
    sampler = RealSampler(ctx.train_labels, ctx.num_classes, config.ipc)
    tiles = config.expand_factor**2
    draws = torch.stack([sampler.sample(generator) for _ in range(tiles)], dim=1)  # (C*ipc, tiles)
    sources = ctx.real_images(draws.flatten()).contiguous()
    if tiles == 1:
        return sources
    return tile_downscaled(sources, config.expand_factor, mode=config.init_downscale).contiguous()


def initial_state(ctx: DistillContext) -> DistillState:
    """Iteration 0: initial images, zero momentum, the generators, and IDM's initial queue."""
    config = ctx.config
    host_generator = make_generator(stream_seed(config.seed, "host"), "cpu")
    device_generator = make_generator(stream_seed(config.seed, "device"), ctx.device)
    images = initial_images(ctx, device_generator)
    queue = []
    if config.method == "idm":
        queue = [new_queue_member(_draw_seed(host_generator), config, ctx.spec, ctx.device, ctx.dtype) for _ in range(config.queue_initial)]
    return DistillState(0, images, torch.zeros_like(images), host_generator, device_generator, queue)


def train_queue_nets(queue: list[QueueMember], slots: Sequence[int], batches: torch.Tensor, ctx: DistillContext) -> None:
    """IDM: each chosen queue network takes ``train_steps`` SGD steps on its real batches (no augmentation, train mode)
    and adds the batches' top-1 hits to its accuracy meter."""
    for row, slot in enumerate(slots):
        member = queue[slot]
        member.net.train()
        for step in range(batches.shape[1]):
            indices = batches[row, step]
            inputs = ctx.real_images(indices)
            targets = ctx.train_labels[indices]
            with ctx.autocast():
                logits = ctx.train_forward(member.net, inputs)
            loss = F.cross_entropy(_full_precision(logits), targets)
            member.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            member.optimizer.step()
            hits = (logits.detach().argmax(dim=1) == targets).sum()
            member.meter += torch.stack([hits, torch.full_like(hits, targets.numel())])


def distill_iteration(
    state: DistillState,
    ctx: DistillContext,
    fresh_net: FreshNetFactory | None,
    pool: FeatureNetPool | None,
    reference: bool = False,
) -> dict[str, torch.Tensor]:
    """Run iteration ``state.iteration`` and advance ``state``; returns the loss terms (0-d device tensors, summed
    over matching passes). ``reference=True`` takes the image step with the slow :func:`reference_per_class_step`
    (same draws, same everything else), for the speed benchmark."""
    config = ctx.config
    iteration = state.iteration
    if config.method == "idm" and iteration > 0 and iteration % config.acc_reset_interval == 0:
        for member in state.queue:
            member.meter.zero_()
    draw = draw_iteration(iteration, ctx, state.host_generator, state.device_generator, len(state.queue), pool)
    if config.method == "dm":
        matchers = [(fresh_net(draw.net_seed), 0.0)]
    else:
        if draw.net_seed is not None:
            if len(state.queue) == config.queue_size:
                state.queue.pop(0)
            state.queue.append(new_queue_member(draw.net_seed, config, ctx.spec, ctx.device, ctx.dtype))
        matchers = [(state.queue[slot].net, state.queue[slot].accuracy_percent().to(ctx.dtype)) for slot in draw.match_slots]
    totals: dict[str, torch.Tensor] = {}
    labels = ctx.syn_labels
    for match_draw, (net, ce_scale) in zip(draw.passes, matchers):
        with frozen(net):
            if reference:
                state.images, state.velocity, terms = reference_per_class_step(state.images, state.velocity, net, ctx, match_draw, draw.pool_net, ce_scale)
            else:
                gradient_fn = lambda point: batched_loss_and_gradient(point, net, ctx, match_draw, draw.pool_net, ce_scale)  # noqa: E731
                state.images, state.velocity, terms = image_step(state.images, state.velocity, labels, gradient_fn, config, ctx.num_classes,
                                                                  ctx.step_coefficients())
        for name in LOSS_TERMS:
            totals[name] = totals[name] + terms[name].detach() if name in totals else terms[name].detach()
    if draw.train_batches is not None:
        with torch.profiler.record_function("distill/train_queue"):
            train_queue_nets(state.queue, draw.train_slots, draw.train_batches, ctx)
    state.iteration += 1
    return totals


# ------------------------------------------------------------------------------------------------ checkpoints


def checkpoint_path(out_path: str | os.PathLike) -> Path:
    """``<out>.ckpt``, beside the synthetic-set file."""
    return Path(f"{out_path}.ckpt")


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def save_checkpoint(path: Path, state: DistillState, ctx: DistillContext, dataset) -> None:
    """Write the whole run state atomically (a crash mid-write leaves the previous checkpoint intact)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config_hash": ctx.config.result_hash(),
        "config": json_round_trip(ctx.config.to_dict()),
        "dataset": ctx.spec.name,
        "dataset_sha256": dict(dataset.sha256),
        "device_type": ctx.device.type,
        "iteration": state.iteration,
        "images": state.images.detach().cpu(),
        "velocity": state.velocity.detach().cpu(),
        "host_generator": state.host_generator.get_state(),
        "device_generator": state.device_generator.get_state(),
        "queue": [
            {"seed": member.seed, "net": _to_cpu(member.net.state_dict()), "optimizer": _to_cpu(member.optimizer.state_dict()), "meter": member.meter.cpu()}
            for member in state.queue
        ],
        "loss_log": state.loss_log,
        "eval_rows": state.eval_rows,
        "elapsed_s": state.elapsed_s,
    }
    atomic_torch_save(payload, path)


_CHECKPOINT_KEYS = ("config_hash", "config", "dataset", "dataset_sha256", "device_type", "iteration", "images", "velocity",
                    "host_generator", "device_generator", "queue", "loss_log", "eval_rows", "elapsed_s")
_FRESH_HINT = "delete it or pass --restart to start over"


def read_checkpoint(path: Path, ctx: DistillContext, dataset) -> dict[str, Any]:
    """Load ``path`` and check that it belongs to this run; a one-line CheckpointError says what differs otherwise."""
    payload = load_torch_file(path, CheckpointError, "unreadable checkpoint", _FRESH_HINT)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a distillation checkpoint (format {found!r}); {_FRESH_HINT}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')!r}, this code reads {CHECKPOINT_VERSION}; {_FRESH_HINT}")
    missing = [key for key in _CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {', '.join(missing)}); {_FRESH_HINT}")
    if payload["dataset"] != ctx.spec.name:
        raise CheckpointError(f"{path}: checkpoint is for dataset {payload['dataset']!r}, this run distils {ctx.spec.name!r}; {_FRESH_HINT}")
    if payload["dataset_sha256"] != dict(dataset.sha256):
        differing = sorted(key for key in set(payload["dataset_sha256"]) | set(dataset.sha256)
                           if payload["dataset_sha256"].get(key) != dataset.sha256.get(key))
        raise CheckpointError(f"{path}: checkpoint was made from other {ctx.spec.name} data ({', '.join(differing)} sha256 differ); {_FRESH_HINT}")
    if payload["config_hash"] != ctx.config.result_hash():
        now = json_round_trip(ctx.config.to_dict())
        saved = payload["config"] if isinstance(payload["config"], dict) else {}
        differing = [f"{key}: {saved.get(key)!r} in checkpoint, {now.get(key)!r} now" for key in sorted(set(now) | set(saved))
                     if key not in RESULT_NEUTRAL_FIELDS and saved.get(key) != now.get(key)]
        detail = "; ".join(differing[:4]) + ("; ..." if len(differing) > 4 else "") if differing else "settings hash differs"
        raise CheckpointError(f"{path}: checkpoint was written with other settings ({detail}); {_FRESH_HINT}")
    if payload["device_type"] != ctx.device.type:
        raise CheckpointError(f"{path}: checkpoint was written on {payload['device_type']}, this run uses {ctx.device.type}; "
                              f"resume with --device {payload['device_type']} or {_FRESH_HINT}")
    expected_shape = (ctx.num_classes * ctx.config.ipc, ctx.spec.channels, ctx.spec.image_size, ctx.spec.image_size)
    if tuple(payload["images"].shape) != expected_shape or not 0 <= int(payload["iteration"]) <= ctx.config.iterations:
        raise CheckpointError(f"{path}: checkpoint content does not fit this run (images {tuple(payload['images'].shape)}, "
                              f"iteration {payload['iteration']}); {_FRESH_HINT}")
    return payload


def restore_state(payload: dict[str, Any], ctx: DistillContext) -> DistillState:
    """Rebuild the run state saved by :func:`save_checkpoint` (generators, queue networks, optimisers, meters)."""
    config = ctx.config
    host_generator = torch.Generator(device="cpu")
    host_generator.set_state(payload["host_generator"])
    device_generator = torch.Generator(device=ctx.device)
    device_generator.set_state(payload["device_generator"])
    queue = []
    for entry in payload["queue"]:
        member = new_queue_member(int(entry["seed"]), config, ctx.spec, ctx.device, ctx.dtype)
        member.net.load_state_dict(entry["net"])
        member.optimizer.load_state_dict(entry["optimizer"])
        member.meter = entry["meter"].to(ctx.device)
        queue.append(member)
    return DistillState(
        iteration=int(payload["iteration"]),
        images=payload["images"].to(ctx.device, ctx.dtype),
        velocity=payload["velocity"].to(ctx.device, ctx.dtype),
        host_generator=host_generator,
        device_generator=device_generator,
        queue=queue,
        loss_log=list(payload["loss_log"]),
        eval_rows=list(payload["eval_rows"]),
        elapsed_s=float(payload["elapsed_s"]),
    )


# ------------------------------------------------------------------------------------------------ running


def output_paths(out_path: str | os.PathLike) -> dict[str, Path]:
    """Files of a run: the synthetic set, its JSON record, image grid, accuracy-vs-iteration CSV and checkpoint."""
    out = Path(out_path)
    return {"set": out, "record": out.with_suffix(".json"), "grid": out.with_suffix(".png"), "eval_csv": out.with_suffix(".eval.csv"),
            "checkpoint": checkpoint_path(out)}


def synthetic_params(config: DistillConfig, ctx: DistillContext, pool_info: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter of the run, with the DSA strategy resolved, for the synthetic set's meta and the record."""
    params = json_round_trip(config.to_dict())
    params["dsa_strategy"] = ctx.dsa_config.strategy if ctx.dsa_config is not None else None
    params["method_label"] = method_label(config)
    params["cc_pool"] = pool_info
    params["chunks_in_effect"] = dict(zip(("real", "syn"), ctx.chunks))
    return params


def run_method_id(config: DistillConfig, params: dict[str, Any]) -> str:
    """The method id a run was asked for (the command line's --method-id, in its provenance), else the id of its
    method and constraints."""
    return ((params.get("provenance") or {}).get("method_id")) or method_id_of(config.method, config.constraints)


def current_synthetic_set(state: DistillState, ctx: DistillContext, params: dict[str, Any]):
    from iid_distill.synthetic import SyntheticSet

    config = ctx.config
    meta = {
        "dataset": ctx.spec.name,
        "ipc": config.ipc,
        "method": method_label(config),
        "method_id": run_method_id(config, params),
        "params": params,
        "seed": config.seed,
        "git_sha": git_sha(),
        "expand_factor": config.expand_factor,
        "iteration": state.iteration,
    }
    from iid_distill.data import get_spec

    if ctx.num_classes != get_spec(ctx.spec.name).num_classes:
        meta["classes"] = list(range(ctx.num_classes))  # a class subset (continual learning), labelled 0..k-1
    return SyntheticSet(state.images.detach().to("cpu", torch.float32), ctx.syn_labels.cpu(), meta)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)), "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "peak_memory_kind": "ru_maxrss (process)"}


def _write_eval_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["iteration", "seed", "acc"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row[key] for key in ("iteration", "seed", "acc")})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _check_finite(first_bad: torch.Tensor) -> None:
    bad_iteration = int(first_bad)
    if bad_iteration >= 0:
        raise DistillError(
            f"the loss became NaN or infinite at iteration {bad_iteration}; lower lr_img or the lambdas (cc_form 'paper' "
            f"can overflow exp(): try cc_form 'squared'); the last checkpoint holds the state before it"
        )


def _load_pool(config: DistillConfig, dataset, device: torch.device, pool_dir: str | os.PathLike | None, pool: FeatureNetPool | None):
    if not config.uses_cc:
        return None, None
    if pool is None:
        if pool_dir is None:
            raise DistillError(f"constraints {config.constraints!r} include 'cc', which needs pre-trained ResNet18s: pass --pool DIR "
                               f"(build one with `iid-distill pretrain --dataset {dataset.spec.name} --out DIR`)")
        from iid_distill.pretrain import FeaturePool

        pool = FeaturePool.load(pool_dir, dataset.spec, device, arch=config.cc_arch, dataset_sha256=dict(dataset.sha256))
    if config.channels_last:
        for model in getattr(pool, "models", []):
            model.to(memory_format=torch.channels_last)
    describe = getattr(pool, "describe", None)
    return pool, (describe() if callable(describe) else {"kind": type(pool).__name__})


def run_distillation(
    config: DistillConfig,
    dataset,
    out_path: str | os.PathLike,
    device: torch.device | str,
    pool_dir: str | os.PathLike | None = None,
    eval_config=None,
    progress: bool = True,
    *,
    restart: bool = False,
    pool: FeatureNetPool | None = None,
    eval_seeds: Sequence[int] = (0,),
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Distil ``dataset`` with ``config`` into ``out_path`` (a synthetic-set ``.pt``); return the run record.

    Writes, atomically: the synthetic set (meta: dataset, ipc, method label, every parameter, seed, git sha,
    expand_factor), ``<stem>.json`` (the record: losses per term at log points, iterations, wall time, it/s, peak
    memory, device, parameters), ``<stem>.png`` (image grid) and, with ``eval_every > 0``, ``<stem>.eval.csv``
    (iteration, seed, acc: the evaluation protocol of ``eval_config`` at iterations 0, eval_every, ... and the end).
    Every ``checkpoint_every`` iterations the whole state goes to ``<out>.ckpt``; running the same call again resumes
    from it (bit-identical on CPU to an uninterrupted run). A checkpoint that is unreadable or was written for other
    settings / data is refused (CheckpointError) unless ``restart`` deletes it. The checkpoint is removed once the
    outputs are written. The CC networks come from ``pool`` or are loaded once from ``pool_dir``. ``provenance``
    (plain values, e.g. the workflow's method id and settings source) is stored in the meta params and the record.
    """

    from iid_distill.synthetic import save_image_grid, save_synthetic_set

    device = torch.device(device)
    spec = dataset.spec
    paths = output_paths(out_path)
    fresh_net = FreshNetFactory(config, spec, device, torch.float32) if config.method == "dm" else None
    template = fresh_net.template if fresh_net is not None else None
    if template is None:
        from iid_distill.models import get_network

        template = get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=0, **config.arch_kwargs)
    if _has_batch_statistics(template):
        raise DistillError(f"distill.arch = {config.arch!r} has BatchNorm, whose batch statistics couple the classes; "
                           "the DM/IDM/IID settings use instance norm (ConvNet)")
    if config.constraints != "none":
        warn_if_degenerate(config.ipc, config.expand_factor)
    pool, pool_info = _load_pool(config, dataset, device, pool_dir, pool)
    ctx = DistillContext.create(config, dataset, device)
    if restart and paths["checkpoint"].exists():
        paths["checkpoint"].unlink()
    resumed_from = None
    if paths["checkpoint"].exists():
        state = restore_state(read_checkpoint(paths["checkpoint"], ctx, dataset), ctx)
        resumed_from = state.iteration
    else:
        state = initial_state(ctx)
    params = synthetic_params(config, ctx, pool_info)
    params["provenance"] = json_round_trip(provenance or {})
    if config.eval_every > 0 and eval_config is None:
        from iid_distill.evaluate import EvalConfig

        eval_config = EvalConfig()

    eval_wall = 0.0

    def evaluate_now() -> None:
        from iid_distill.evaluate import evaluate_synthetic_set

        nonlocal eval_wall
        if any(row["iteration"] == state.iteration for row in state.eval_rows):
            return  # evaluated before an interruption
        started = time.perf_counter()
        sset = current_synthetic_set(state, ctx, params)
        for record in evaluate_synthetic_set(sset, dataset, eval_config, list(eval_seeds), device):
            state.eval_rows.append({"iteration": state.iteration, "seed": record["seed"], "acc": record["acc"]})
        eval_wall += time.perf_counter() - started

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    check_every_iteration = device.type == "cpu"  # free on CPU; on GPU only at log points (no per-iteration sync)
    session_start, session_start_iteration = time.perf_counter(), state.iteration
    bar = progress_bar(total=config.iterations, initial=state.iteration, desc=f"{method_label(config)} {spec.name} ipc {config.ipc}",
                       unit="it", dynamic_ncols=True, enabled=progress)
    try:
        while state.iteration < config.iterations:
            if config.eval_every > 0 and state.iteration % config.eval_every == 0:
                evaluate_now()
            iteration = state.iteration
            terms = distill_iteration(state, ctx, fresh_net, pool)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(terms["total"]), torch.full_like(first_bad, iteration), first_bad)
            last = state.iteration == config.iterations
            log_now = iteration % config.log_every == 0 or last
            if check_every_iteration or log_now or state.iteration % config.checkpoint_every == 0:
                _check_finite(first_bad)
            if log_now:
                entry = {"iteration": iteration, **{name: float(value) for name, value in terms.items()}}
                state.loss_log.append(entry)
                bar.set_postfix({name: f"{entry[name]:.4g}" for name in LOSS_TERMS if name == "total" or entry[name] != 0.0}, refresh=False)
            bar.update(1)
            if state.iteration % config.checkpoint_every == 0 and not last:
                state_elapsed = state.elapsed_s
                state.elapsed_s = state_elapsed + time.perf_counter() - session_start
                save_checkpoint(paths["checkpoint"], state, ctx, dataset)
                state.elapsed_s = state_elapsed
        if config.eval_every > 0:
            evaluate_now()
    finally:
        bar.close()
    session_wall = time.perf_counter() - session_start
    session_iterations = state.iteration - session_start_iteration
    distill_wall = session_wall - eval_wall

    sset = current_synthetic_set(state, ctx, params)
    save_synthetic_set(sset, paths["set"])
    save_image_grid(sset, paths["grid"])
    if state.eval_rows:
        _write_eval_csv(state.eval_rows, paths["eval_csv"])
    record = {
        "dataset": spec.name,
        "dataset_sha256": dict(dataset.sha256),
        "ipc": config.ipc,
        "method": method_label(config),
        "method_id": run_method_id(config, params),
        "seed": config.seed,
        "iterations": config.iterations,
        "params": params,
        "params_hash": config.result_hash(),
        "resumed_from": resumed_from,
        "wall_s": state.elapsed_s + session_wall,
        "session_wall_s": session_wall,
        "session_eval_wall_s": eval_wall,
        "session_iterations": session_iterations,
        "it_per_s": session_iterations / distill_wall if session_iterations and distill_wall > 0 else None,  # evaluation excluded
        "compiled": ctx.match_forward.active,  # this session's network passes ran through torch.compile
        **_peak_memory(device),
        "device": device_description(device),
        "git_sha": git_sha(),
        "loss_log": state.loss_log,
        "final_losses": state.loss_log[-1] if state.loss_log else None,
        "eval": state.eval_rows,
        "outputs": {name: str(path) for name, path in paths.items() if name != "checkpoint" and (name != "eval_csv" or state.eval_rows)},
    }
    atomic_write_json(record, paths["record"])
    if paths["checkpoint"].exists():
        paths["checkpoint"].unlink()  # the outputs hold the final state; a re-run starts afresh
    return record
