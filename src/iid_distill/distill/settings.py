"""Distillation settings: DistillConfig, the published per-setting values of DM, IDM and IID, method ids and their
resolution from params.yaml.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from iid_distill.compiled import valid_compile_mode
from iid_distill.config import check_fields_finite
from iid_distill.utils import PRECISIONS, UserError, params_hash


METHODS = ("dm", "idm")  # the built-in hosts (iid_distill.distill.hosts); params.yaml's method ids are built on them
# The distribution-matching hosts by name (DomainBed's registry): iid_distill.distill.hosts registers DM and IDM when
# the package is imported; register_host adds another. Looked up at run time, so this module imports no host.
HOSTS: dict[str, Any] = {}


def register_host(host) -> None:
    """Make ``host`` (an :class:`iid_distill.distill.hosts.Host`) available as ``DistillConfig(method=host.name)``."""
    if not isinstance(getattr(host, "name", None), str) or not host.name.isidentifier():
        raise DistillError(f"host {host!r}: needs a name that is an identifier, e.g. 'dm'")
    HOSTS[host.name] = host


def host_of(method: str):
    """The registered host called ``method``; an unknown one is a one-line error listing the hosts."""
    if method not in HOSTS:
        raise DistillError(f"unknown method {method!r}; expected one of {', '.join(HOSTS)}")
    return HOSTS[method]
CONSTRAINTS = ("none", "cc", "cm", "cc+cm")
IMAGE_STEPS = ("per_class", "joint")
INITS = ("real", "noise")
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
    real_chunk: most real images per forward: the matching network's no-grad pass (IDM at IPC 1 uses 5000 per
      class) and each IDM queue training step, whose batch runs in chunks with summed gradients (bounds memory).
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
        check_fields_finite(self, "distill", DistillError)
        host_of(self.method)
        choices = {
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
        host_of(self.method).validate(self)

    @property
    def uses_cc(self) -> bool:
        return "cc" in self.constraints.split("+")

    @property
    def uses_cm(self) -> bool:
        return "cm" in self.constraints.split("+")

    @property
    def uses_ce(self) -> bool:
        """IDM's class-aware regulariser needs a trained network's accuracy: only hosts that match trained networks."""
        return host_of(self.method).trains_matching_nets and self.ce_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_hash(self) -> str:
        """Hash of every setting that can change the synthetic images (the checkpoint's identity)."""
        return params_hash({key: value for key, value in self.to_dict().items() if key not in RESULT_NEUTRAL_FIELDS})


def structural_label(config: DistillConfig) -> str:
    """The label of a config's host and constraints: ``DM``, ``IDM``, ``DM+IID`` (cc+cm), ``DM+CC``, ``IDM+CM``, ...
    The display label of a method id is ``names.method_label`` (``dm_cc_eq3``: "DM+CC (Eq. 3)"); this one names what
    the config computes whatever id asked for it (the set's and record's ``method`` field)."""
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
    host = host_of(method)
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
    settings.update(host.published_settings(spec, ipc))
    if source == "paper":
        lambda_cc, lambda_cm, cc_form = (0.003 if ipc >= 50 else 0.05), 0.01, "paper"
    else:
        (lambda_cc, lambda_cm), cc_form = host.code_iid_weights, "squared"
    uses = set(constraints.split("+"))
    settings.update(lambda_cc=lambda_cc if "cc" in uses else 0.0, lambda_cm=lambda_cm if "cm" in uses else 0.0, cc_form=cc_form)
    return settings


# Method ids of the workflow (params.yaml distill.methods): base method and IID constraints.
CONSTRAINT_SUFFIXES = {"none": "", "cc": "_cc", "cm": "_cm", "cc+cm": "_iid"}  # a method id = host + suffix
METHOD_IDS: dict[str, tuple[str, str]] = {
    f"{method}{suffix}": (method, constraints) for method in METHODS for constraints, suffix in CONSTRAINT_SUFFIXES.items()
}


def method_id_of(method: str, constraints: str) -> str:
    """``("dm", "cc+cm")`` -> ``"dm_iid"`` (inverse of :data:`METHOD_IDS`; the same naming for a registered host)."""
    if constraints not in CONSTRAINT_SUFFIXES:
        raise DistillError(f"no method id for method {method!r} with constraints {constraints!r}")
    return f"{method}{CONSTRAINT_SUFFIXES[constraints]}"


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
    (``code`` if absent: the objective that produced the paper's numbers). Unknown keys are errors naming their params path.
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
