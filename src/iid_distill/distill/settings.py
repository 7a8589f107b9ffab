"""Distillation settings: DistillConfig, the published per-setting values of DM, IDM and IID, method ids and their
resolution from params.yaml.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from iid_distill.compiled import COMPILE_MODES
from iid_distill.config import check_fields_finite
from iid_distill.utils import PRECISIONS, UserError, params_hash


# The distribution-matching hosts by name (DomainBed's registry): iid_distill.distill.hosts registers the built-in ones
# when the package is imported; register_host adds another. Looked up at run time, so this module imports no host.
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




def setting(default: Any = dataclasses.MISSING, help: str = "", *, low: float | None = None, choices: tuple | None = None,
            host: str | None = None, schema: str | None = None, factory: Any = None) -> Any:
    """One setting's single declaration: default, help, bounds (``low``: the least value), ``choices``, the ``host`` it
    belongs to (None: every host) and, for the params schema, a shared ``$defs`` entry it refers to (``schema``).
    Its type is the field's annotation. Validation (:func:`check_settings`), ``--set`` help and the params schema's
    ``distill_fields`` block (:func:`distill_fields_schema`) all follow from it."""
    metadata = {"help": help, "low": low, "choices": choices, "host": host, "schema": schema}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DistillConfig:
    """Every setting of a distillation run (the ``distill`` section of params.yaml), one declaration each.

    Defaults are DM's published CIFAR-10 IPC 10 settings; :func:`published_settings` gives every published setting.
    A setting with a ``host`` belongs to that host: the others ignore it and leave it out of their checkpoint identity.
    """

    method: str = setting("dm", "the host (a registered name: dm, idm, datadam, m3d, ...); the method id chooses it")
    constraints: str = setting("none", "IID's constraints: cc (class centralisation, Eq. 3, with a pool network), cm (covariance "
                               "matching, Eq. 5-7, on the matching network's last feature map), cc+cm (IID) or none",
                               choices=CONSTRAINTS)
    ipc: int = setting(10, "synthetic images per class", low=1)
    iterations: int = setting(20000, "distillation iterations", low=0)
    lr_img: float = setting(1.0, "learning rate of the synthetic images (SGD)", low=0)
    momentum_img: float = setting(0.5, "momentum of the synthetic images' SGD", low=0)
    batch_real: int = setting(256, "real images per class per matching pass", low=1)
    arch: str = setting("ConvNet", "the matching networks' architecture", schema="arch")
    arch_kwargs: dict[str, Any] = setting(help="the matching networks' constructor options (e.g. {norm: batchnorm})", factory=dict,
                                          schema="kwargs")
    init: str = setting("real", "initial images: real (random real images; with expand_factor f > 1 each tiles f^2 downscaled "
                        "real images, as IDM) or noise (standard normal, normalised space)", choices=INITS)
    init_downscale: str = setting("bilinear", "how expand_factor > 1 downscales the initial tiles", choices=INIT_DOWNSCALE_MODES)
    dsa: bool = setting(True, "siamese differentiable augmentation (one op and parameters per class, real and synthetic alike)")
    dsa_strategy: str | None = setting(None, "DSA ops; null = the dataset's default (no flip for digits)")
    lambda_cc: float = setting(0.05, "weight of class centralisation", low=0)
    lambda_cm: float = setting(0.01, "weight of covariance matching", low=0)
    cc_form: str = setting("squared", "CC's form: squared (the authors' code: sum d), paper (Eq. 3 as printed: sum max(0, exp(alpha d) "
                           "- beta)) or margin (sum max(0, d - beta * the class's mean d))", choices=CC_FORMS)
    cc_arch: str = setting("ResNet18", "architecture the CC pool must hold (the paper: ResNet18)", schema="arch")
    cc_alpha: float = setting(0.02, "Eq. 3's alpha (cc_form paper)", low=0)
    cc_beta: float = setting(0.0, "Eq. 3's beta (cc_form paper / margin)", low=0)
    cm_unbiased: bool = setting(False, "covariance with 1/(n-1) instead of the authors' 1/n")
    expand_factor: int = setting(1, "IDM's partition-and-expansion factor (each stored image split into factor^2 upsampled "
                                 "patches; 1 = off); evaluation expands the same way", low=1)
    image_step: str = setting("joint", "joint (one SGD step per iteration on the summed loss: DM) or per_class (the published IDM "
                              "loop, one step per class, reproduced exactly in one batched pass)", choices=IMAGE_STEPS)
    queue_initial: int = setting(3, "IDM: networks in the queue at the start", low=0, host="idm")
    queue_size: int = setting(100, "IDM: most networks in the queue", low=1, host="idm")
    queue_interval: int = setting(30, "IDM: a new queue network every this many iterations", low=1, host="idm")
    match_nets: int = setting(1, "IDM's train_net_num: queue networks matched per iteration, one full class loop each", low=1, host="idm")
    train_nets: int = setting(2, "IDM's fetch_net_num: queue networks trained per iteration", low=0, host="idm")
    train_steps: int = setting(10, "IDM's model_train_steps: SGD steps per trained queue network", low=0, host="idm")
    net_lr: float = setting(0.01, "IDM: the queue networks' learning rate", low=0, host="idm")
    net_momentum: float = setting(0.9, "IDM: the queue networks' momentum", low=0, host="idm")
    net_weight_decay: float = setting(5e-4, "IDM: the queue networks' weight decay", low=0, host="idm")
    net_batch: int = setting(256, "IDM's trained_bs: real images per queue training step", low=1, host="idm")
    acc_reset_interval: int = setting(100, "IDM's eval_interval: the queue's accuracy meters reset every this many iterations",
                                      low=1, host="idm")
    ce_weight: float = setting(0.5, "IDM: weight of the class-aware CE (times the matching network's train accuracy in percent)",
                               low=0, host="idm")
    datadam_power: float = setting(1.0, "DataDAM: attention map = normalize_L2(sum over channels |A|^p); p = 1 in the code, 4 in "
                                   "the paper's table", low=1, host="datadam")
    datadam_task_balance: float = setting(0.01, "DataDAM's task_balance: weight of the embedding term beside the attention terms",
                                          low=0, host="datadam")
    datadam_scale: float = setting(100.0, "DataDAM: the code multiplies its whole loss by 100 (the paper's loss has no factor)",
                                   low=0, host="datadam")
    m3d_kernels: int = setting(5, "M3D: Gaussian kernels in the sum, bandwidths h * 2^k for k = -K//2..K//2 (h: the class's mean "
                               "pairwise squared distance)", low=1, host="m3d")
    m3d_net_reuse: int = setting(1, "M3D's ipm: iterations per random network", low=1, host="m3d")
    precision: str = setting("fp32", "fp32 or bf16 (autocast of the network forwards; losses in fp32): bf16 pays on GPUs and on "
                             "CPUs with native bf16 (avx512_bf16, AMX)", choices=PRECISIONS)
    channels_last: bool = setting(False, "channels-last memory format for the network passes")
    compile: str | bool = setting(False, "torch.compile the network passes: auto (long CPU runs), true or false (equal to eager "
                                  "to float32 rounding)", choices=COMPILE_MODES)
    real_chunk: int = setting(0, "most real images per forward (and per IDM training chunk); 0 = by device", low=0)
    syn_chunk: int = setting(0, "most synthetic training images per forward + backward (classes grouped); 0 = by device", low=0)
    checkpoint_every: int = setting(500, "iterations between checkpoints", low=1)
    eval_every: int = setting(0, "iterations between evaluations (0 = off)", low=0)
    log_every: int = setting(10, "iterations between logged loss values (checked for NaN there on GPU, every iteration on CPU)",
                             low=1)
    seed: int = setting(0, "the run's seed: initial images and every draw", low=0)

    def __post_init__(self) -> None:
        check_fields_finite(self, "distill", DistillError)
        check_settings(self)
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
        """Hash of every setting that can change the synthetic images (the checkpoint's identity): not the result-neutral
        ones, nor another host's."""
        return params_hash({key: value for key, value in self.to_dict().items() if result_relevant(key, self.method)})


# IDM's settings were in every run's identity before hosts owned their settings: kept there, so that the checkpoints
# and records of earlier DM runs keep their identity
ALWAYS_HASHED_HOSTS = (None, "idm")


def result_relevant(name: str, method: str) -> bool:
    """Whether setting ``name`` enters the identity of a run of host ``method`` (another host's settings never change it)."""
    owner = DISTILL_SETTINGS[name].metadata["host"]
    return name not in RESULT_NEUTRAL_FIELDS and (owner in ALWAYS_HASHED_HOSTS or owner == method)


DISTILL_SETTINGS = {item.name: item for item in dataclasses.fields(DistillConfig)}


def check_settings(config: DistillConfig) -> None:
    """Every setting against its declaration: type, choices, least value; a DistillError naming ``distill.<key>``."""
    from iid_distill.config import _has_type, _type_name

    hints = _setting_types()
    host_of(config.method)
    for name, item in DISTILL_SETTINGS.items():
        value, meta = getattr(config, name), item.metadata
        if meta["choices"] is not None:
            if not any(value is choice or (type(value) is type(choice) and value == choice) for choice in meta["choices"]):
                allowed = ", ".join(str(choice).lower() if isinstance(choice, bool) else str(choice) for choice in meta["choices"])
                raise DistillError(f"distill.{name} = {value!r}: expected one of {allowed}")
        elif not _has_type(value, hints[name]):
            raise DistillError(f"distill.{name} = {value!r}: expected {_type_name(hints[name])}")
        if meta["low"] is not None and value < meta["low"]:
            kind = "an integer" if hints[name] is int else "a finite number"
            raise DistillError(f"distill.{name} = {value!r}: expected {kind} >= {meta['low']}")


@functools.lru_cache(maxsize=1)
def _setting_types() -> dict[str, Any]:
    return typing.get_type_hints(DistillConfig)


def setting_help() -> str:
    """``--set`` help: every settable key, with the host it belongs to."""
    return "; ".join(f"{name}" + (f" ({item.metadata['host']})" if item.metadata["host"] else "")
                     for name, item in DISTILL_SETTINGS.items() if name not in ("method", "constraints", "ipc"))


def distill_fields_schema() -> dict[str, Any]:
    """The params schema's ``distill_fields`` properties, generated from the declarations (``make schema`` writes them
    into workflow/schemas/params.schema.yaml; a test keeps the file equal to this)."""
    from iid_distill.config import field_schema

    hints = _setting_types()
    return {name: field_schema(hints[name], item.metadata) for name, item in DISTILL_SETTINGS.items()
            if name not in ("method", "constraints", "ipc")}


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
    settings.update(host.published_settings(spec, ipc, source))
    if source == "paper":
        lambda_cc, lambda_cm, cc_form = (0.003 if ipc >= 50 else 0.05), 0.01, "paper"
    else:
        (lambda_cc, lambda_cm), cc_form = host.code_iid_weights, "squared"
    uses = set(constraints.split("+"))
    settings.update(lambda_cc=lambda_cc if "cc" in uses else 0.0, lambda_cm=lambda_cm if "cm" in uses else 0.0, cc_form=cc_form)
    return settings


# Method ids of the workflow (params.yaml distill.methods): base method and IID constraints.
CONSTRAINT_SUFFIXES = {"none": "", "cc": "_cc", "cm": "_cm", "cc+cm": "_iid"}  # a method id = host + suffix


def method_ids() -> dict[str, tuple[str, str]]:
    """Every registered host's method ids: ``dm``, ``dm_cc``, ``dm_cm``, ``dm_iid``, ``idm``, ... -> (host, constraints)."""
    return {f"{host}{suffix}": (host, constraints) for host in HOSTS for constraints, suffix in CONSTRAINT_SUFFIXES.items()}


def import_plugins(modules: Any, where: str = "plugins") -> None:
    """Import the user's modules that register hosts (params ``plugins``): a module importable from the environment or
    from the current folder. A module that cannot be imported is a one-line error naming it."""
    if modules is None:
        return
    if not isinstance(modules, list) or not all(isinstance(name, str) and name for name in modules):
        raise DistillError(f"params key '{where}' = {modules!r}: expected a list of module names, e.g. [my_hosts]")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise DistillError(f"params key '{where}': cannot import {name!r} ({error}); put it on PYTHONPATH or in the current folder") from None


def method_id_of(method: str, constraints: str) -> str:
    """``("dm", "cc+cm")`` -> ``"dm_iid"`` (inverse of :func:`method_ids`)."""
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
    back to :func:`method_ids`: dm, dm_cc, dm_cm, dm_iid, idm, ... of every registered host). ``source`` defaults to ``distill.settings``
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
    known_ids = method_ids()
    if method_id not in methods and method_id not in known_ids:
        known = sorted(set(methods) | set(known_ids))
        raise DistillError(f"unknown method id {method_id!r}; known ids: {', '.join(known)} (params distill.methods)")
    entry = methods.get(method_id) or {}
    if not isinstance(entry, dict):
        raise DistillError(f"params key 'distill.methods.{method_id}': expected a mapping, got {type(entry).__name__}")
    entry = dict(entry)
    default_method, default_constraints = known_ids.get(method_id, (None, None))
    method, constraints = entry.pop("method", default_method), entry.pop("constraints", default_constraints)
    entry.pop("pool", None)  # which CC pool its jobs read (method_pool), not a setting of the distiller
    if method is None or constraints is None:
        raise DistillError(f"params key 'distill.methods.{method_id}' needs 'method' (a host: "
                           f"{'|'.join(HOSTS)}) and 'constraints' (none|cc|cm|cc+cm)")
    _check_setting_keys(common, "distill.common")
    _check_setting_keys(entry, f"distill.methods.{method_id}")
    settings = published_settings(dataset, ipc, method, constraints, source or block.get("settings", "code"))
    for overrides in (common, entry):
        merge_settings(settings, overrides)
    return settings


def method_pool(params: dict[str, Any], method_id: str) -> str | None:
    """The named CC pool (params ``pools``) a method id's jobs read, from ``distill.methods[id].pool``; None for the
    dataset's default pool (params ``pretrain``)."""
    entry = ((params.get("distill") or {}).get("methods") or {}).get(method_id) or {}
    pool = entry.get("pool") if isinstance(entry, dict) else None
    if pool is None:
        return None
    pools = params.get("pools") or {}
    if not isinstance(pool, str) or pool not in pools:
        raise DistillError(f"params key 'distill.methods.{method_id}.pool': {pool!r} is not a pool of params 'pools' "
                           f"({', '.join(sorted(pools)) or 'none defined'})")
    return pool


def merge_settings(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``settings`` updated by ``overrides`` in place, ``arch_kwargs`` key by key: ``{width: 32}`` keeps a host's
    published ``{norm: batchnorm}``."""
    merged = dict(overrides)
    if isinstance(overrides.get("arch_kwargs"), dict) and isinstance(settings.get("arch_kwargs"), dict):
        merged["arch_kwargs"] = {**settings["arch_kwargs"], **overrides["arch_kwargs"]}
    settings.update(merged)
    return settings
