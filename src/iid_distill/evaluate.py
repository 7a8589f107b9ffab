"""The DM evaluation protocol: train fresh networks from scratch on a synthetic set and test each once, at the end.

Defaults follow the paper's protocol (schedule "paper"): 1000 epochs, SGD lr 0.01 (x0.1 at epoch 500), momentum
0.9, weight decay 5e-4, batch 256, DSA with independent parameters per sample on every batch, cross-entropy; the reported accuracy
is the FINAL model's on the full test split, never the best one seen. Schedule "code" reproduces the published DM
``evaluate_synset`` instead: epochs + 1 epochs, lr x0.1 after epoch index epochs // 2 + 1 with a fresh optimiser
(momentum reset).

Several evaluation seeds can be trained together as one vmapped stack of models (``torch.func``), which gives the
same weights as training them one after another: each model keeps its own initialisation, shuffle order and DSA
draws from its own generator, and SGD acts elementwise on the stacked parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.config import check_fields_finite
from iid_distill.utils import (
    PRECISIONS,
    UserError,
    atomic_write_json,
    autocast_for,
    device_description,
    git_sha,
    keep_freed_memory,
    make_generator,
    params_hash,
    progress_bar,
    sha256_tensor,
)

LR_DECAY_FACTOR = 0.1
SEED_BATCHING_MODES = ("auto", "batched", "sequential")
SCHEDULES = ("paper", "code")
# On the CPU the test pass runs at most this many images at once: same result, and a bounded peak (a 2048-image
# batch holds 1 GB per activation; evaluation peaked at 4.0 GB with 2048, 1.2 GB with 256, reports/benchmarks.md).
CPU_TEST_BATCH = 256

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


class EvaluationError(UserError):
    """Bad evaluation settings or a synthetic set that does not fit the dataset it is evaluated on."""


@dataclass(frozen=True)
class EvalConfig:
    """Every setting of the evaluation protocol (the ``evaluation`` section of params.yaml).

    dsa_strategy None means the dataset's default; seed_batching is auto | batched | sequential (results are the
    same either way, only speed differs); arch_kwargs are passed to ``models.get_network`` (e.g. a smaller width).
    """

    arch: str = "ConvNet"
    epochs: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    lr_decay_fraction: float = 0.5
    dsa: bool = True
    dsa_strategy: str | None = None
    test_batch_size: int = 2048
    seed_batching: str = "auto"
    schedule: str = "paper"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_fields_finite(self, "evaluation", EvaluationError)
        if self.precision not in PRECISIONS:
            raise EvaluationError(f"evaluation.precision = {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.schedule not in SCHEDULES:
            raise EvaluationError(f"evaluation.schedule = {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if self.seed_batching not in SEED_BATCHING_MODES:
            raise EvaluationError(f"evaluation.seed_batching = {self.seed_batching!r}: expected one of {', '.join(SEED_BATCHING_MODES)}")
        for name in ("epochs", "batch_size", "test_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EvaluationError(f"evaluation.{name} = {value!r}: expected a positive integer")
        if not 0.0 <= float(self.lr_decay_fraction) <= 1.0:
            raise EvaluationError(f"evaluation.lr_decay_fraction = {self.lr_decay_fraction!r}: expected a number in [0, 1]")
        if float(self.lr) <= 0 or float(self.momentum) < 0 or float(self.weight_decay) < 0:
            raise EvaluationError("evaluation.lr must be > 0, and momentum and weight_decay >= 0")
        if not isinstance(self.arch_kwargs, dict):
            raise EvaluationError(f"evaluation.arch_kwargs: expected a mapping, got {type(self.arch_kwargs).__name__}")

    @property
    def total_epochs(self) -> int:
        """Epochs actually trained: ``epochs`` (paper), ``epochs + 1`` (the published loop ``range(Epoch + 1)``)."""
        return self.epochs + 1 if self.schedule == "code" else self.epochs

    @property
    def lr_decay_epoch(self) -> int:
        """First epoch trained at lr x 0.1: epochs * fraction (paper); epochs * fraction + 2 (code decays after
        epoch index ``Epoch // 2 + 1``)."""
        return int(self.epochs * self.lr_decay_fraction) + (2 if self.schedule == "code" else 0)

    @property
    def reset_momentum_at_decay(self) -> bool:
        """The published code builds a new SGD optimiser at the decay, dropping the momentum buffers."""
        return self.schedule == "code"


@dataclass
class TrainedNetwork:
    """One evaluation model after training, with its final-epoch training statistics."""

    seed: int
    net: nn.Module
    train_loss: float
    train_acc: float
    wall_s: float
    seed_batching: str


def learning_rate_at(epoch: int, lr: float, lr_decay_epoch: int) -> float:
    """Step schedule of the protocol: ``lr`` before ``lr_decay_epoch``, ``lr * 0.1`` from it on."""
    return lr * LR_DECAY_FACTOR if epoch >= lr_decay_epoch else lr


def _epoch_range(epochs: int, desc: str | None) -> Iterable[int]:
    """Epoch indices, with a progress bar when ``desc`` is given (see utils.progress_bar)."""
    return progress_bar(range(epochs), enabled=desc is not None, desc=desc, unit="epoch", leave=False, dynamic_ncols=True)


def _shuffled_indices(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_network(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    lr_decay_epoch: int,
    reset_momentum_at_decay: bool = False,
    augment: Augment | None = None,
    generator: torch.Generator,
    progress_desc: str | None = None,
    on_batch_end: BatchHook | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Train ``net`` in place with SGD and cross-entropy; returns the last epoch's train_loss and train_acc (percent).

    Each epoch reshuffles with ``generator`` (on the generator's device) and keeps the last partial batch;
    ``augment(x, generator)`` is applied to every batch; lr drops x0.1 from epoch ``lr_decay_epoch`` on
    (``lr_decay_epoch >= epochs`` keeps it constant), with the momentum buffers cleared there when
    ``reset_momentum_at_decay``. A tqdm bar over epochs is shown when ``progress_desc`` is
    given, unless IID_DISTILL_NO_PROGRESS is set. ``on_batch_end(indices, logits, labels)`` sees each batch's
    indices into ``images`` and its detached logits (e.g. for forgetting events). ``precision`` bf16 runs the
    forward passes under bf16 autocast (EvalConfig.precision, the fast mode).
    """
    if images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"train_network: need a non-empty set with one label per image, got {images.shape[0]} images, {labels.shape[0]} labels")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    net.train()
    count = images.shape[0]
    loss_sum = correct = torch.zeros((), device=images.device)
    for epoch in _epoch_range(epochs, progress_desc):
        _set_lr(optimizer, learning_rate_at(epoch, lr, lr_decay_epoch))
        if reset_momentum_at_decay and epoch == lr_decay_epoch:
            optimizer.state.clear()
        order = _shuffled_indices(count, generator, images.device)
        loss_sum = torch.zeros((), device=images.device)
        correct = torch.zeros((), device=images.device)
        for start in range(0, count, batch_size):
            indices = order[start : start + batch_size]
            inputs, targets = images[indices], labels[indices]
            if augment is not None:
                inputs = augment(inputs, generator)
            with autocast_for(images.device, precision):
                logits = net(inputs).float()
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: .item() per batch would force a GPU sync every step.
            loss_sum = loss_sum + loss.detach() * targets.numel()
            correct = correct + (logits.detach().argmax(dim=1) == targets).sum()
            if on_batch_end is not None:
                on_batch_end(indices, logits.detach(), targets)
    if epochs < 1:
        return {"train_loss": float("nan"), "train_acc": float("nan")}
    return {"train_loss": float(loss_sum) / count, "train_acc": 100.0 * float(correct) / count}


def supports_seed_batching(net: nn.Module) -> bool:
    """True for networks that vmap cleanly: no BatchNorm and no buffers (running statistics change in place)."""
    has_batchnorm = any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in net.modules())
    return not has_batchnorm and next(net.buffers(), None) is None


def train_networks_batched(
    nets: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    lr_decay_epoch: int,
    reset_momentum_at_decay: bool = False,
    augment: Augment | None = None,
    generators: Sequence[torch.Generator],
    progress_desc: str | None = None,
    precision: str = "fp32",
) -> list[dict[str, float]]:
    """Train several same-architecture networks at once, each exactly as ``train_network`` would on its own.

    The parameters are stacked (``torch.func.stack_module_state``) and the forward pass is vmapped over models on
    per-model batches (S, B, C, H, W); model s shuffles and augments with ``generators[s]`` in the same order as the
    sequential loop. ``images`` (N, C, H, W) and ``labels`` (N,) are every model's, or (S, N, C, H, W) and (S, N)
    give model s its own set (several sets of one size trained together). ``torch.optim.SGD`` on the stacked tensors is elementwise, hence per model identical to SGD on
    each network. The trained weights are copied back into ``nets``; returns one stats dict per network.
    """
    from torch.func import functional_call, stack_module_state

    if len(nets) != len(generators) or not nets:
        raise ValueError(f"train_networks_batched: need one generator per network, got {len(nets)} networks and {len(generators)} generators")
    if not all(supports_seed_batching(net) for net in nets):
        raise ValueError("train_networks_batched: networks with BatchNorm or buffers cannot be trained as a vmapped stack")
    per_model = images.dim() == 5
    if per_model and (images.shape[0] != len(nets) or labels.shape[:1] != images.shape[:1]):
        raise ValueError(f"train_networks_batched: per-model sets need one set per network, got {images.shape[0]} sets for {len(nets)} networks")
    if images.shape[int(per_model)] == 0 or images.shape[: 1 + per_model] != labels.shape:
        raise ValueError(f"train_networks_batched: need a non-empty set with one label per image, got images {tuple(images.shape)}, "
                         f"labels {tuple(labels.shape)}")
    for net in nets:
        net.train()
    stacked_params, stacked_buffers = stack_module_state(list(nets))
    template = copy.deepcopy(nets[0]).to("meta")

    def logits_of_one_model(params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (params, buffers), (inputs,))

    stacked_logits = torch.vmap(logits_of_one_model)
    optimizer = torch.optim.SGD(list(stacked_params.values()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    num_models, count = len(nets), images.shape[int(per_model)]
    rows = torch.arange(num_models, device=images.device).unsqueeze(1) if per_model else None
    loss_sum = correct = torch.zeros(num_models, device=images.device)
    for epoch in _epoch_range(epochs, progress_desc):
        _set_lr(optimizer, learning_rate_at(epoch, lr, lr_decay_epoch))
        if reset_momentum_at_decay and epoch == lr_decay_epoch:
            optimizer.state.clear()
        orders = torch.stack([_shuffled_indices(count, generator, images.device) for generator in generators])
        loss_sum = torch.zeros(num_models, device=images.device)
        correct = torch.zeros(num_models, device=images.device)
        for start in range(0, count, batch_size):
            indices = orders[:, start : start + batch_size]
            inputs, targets = (images[rows, indices], labels[rows, indices]) if per_model else (images[indices], labels[indices])
            if augment is not None:
                inputs = torch.stack([augment(inputs[s], generators[s]) for s in range(num_models)])
            with autocast_for(images.device, precision):
                logits = stacked_logits(stacked_params, stacked_buffers, inputs).float()
            per_sample = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(num_models, -1)
            losses = per_sample.mean(dim=1)
            optimizer.zero_grad(set_to_none=True)
            # Models share no parameters, so the gradient of the sum is each model's own mean-loss gradient.
            losses.sum().backward()
            optimizer.step()
            loss_sum = loss_sum + losses.detach() * targets.shape[1]
            correct = correct + (logits.detach().argmax(dim=2) == targets).sum(dim=1)
    with torch.no_grad():
        for s, net in enumerate(nets):
            for name, parameter in net.named_parameters():
                parameter.copy_(stacked_params[name][s])
    if epochs < 1:
        return [{"train_loss": float("nan"), "train_acc": float("nan")} for _ in nets]
    return [{"train_loss": float(loss_sum[s]) / count, "train_acc": 100.0 * float(correct[s]) / count} for s in range(num_models)]


@torch.no_grad()
def test_accuracy(net: nn.Module, images_normalised: torch.Tensor, labels: torch.Tensor, batch_size: int, precision: str = "fp32") -> float:
    """Top-1 accuracy in percent of ``net`` (in eval mode) on already-normalised images."""
    was_training = net.training
    net.eval()
    if images_normalised.device.type == "cpu":
        batch_size = min(batch_size, CPU_TEST_BATCH)
    correct = torch.zeros((), dtype=torch.int64, device=images_normalised.device)
    for start in range(0, images_normalised.shape[0], batch_size):
        with autocast_for(images_normalised.device, precision):
            logits = net(images_normalised[start : start + batch_size])
        correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum()
    net.train(was_training)
    return 100.0 * int(correct) / max(int(labels.shape[0]), 1)


test_accuracy.__test__ = False  # not a pytest test, although test files import it by this name


def derived_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one random stream ("init", "train") of an evaluation seed; streams never collide."""
    return int(hashlib.sha256(f"iid-distill/eval/{int(seed)}/{stream}".encode()).hexdigest()[:15], 16)


def evaluation_arch_kwargs(evaluation: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """Constructor options of ``arch`` under a params ``evaluation`` block: ``arch_kwargs`` are ``evaluation.arch``'s
    only; any other architecture gets ``other_arch_kwargs[arch]``, or none (a ConvNet width never reaches an AlexNet)."""
    if arch == evaluation.get("arch", EvalConfig.arch):
        return evaluation.get("arch_kwargs") or {}  # EvalConfig checks it is a mapping
    other = evaluation.get("other_arch_kwargs") or {}
    if not isinstance(other, Mapping):
        raise EvaluationError(f"evaluation.other_arch_kwargs: expected a mapping of architecture -> options, got {type(other).__name__}")
    return other.get(arch) or {}


def resolve_seed_batching(mode: str, batchable: bool, device: torch.device, num_seeds: int) -> str:
    """``batched`` or ``sequential``. auto batches only on CUDA: on CPU the vmapped stack was not faster (see README)."""
    if mode == "sequential":
        return "sequential"
    if mode == "batched":
        if not batchable:
            raise EvaluationError("evaluation.seed_batching = 'batched' needs a network without BatchNorm/buffers; use 'auto' or 'sequential'")
        return "batched"
    return "batched" if batchable and device.type == "cuda" and num_seeds > 1 else "sequential"


def _dsa_augment(config: EvalConfig, spec) -> Augment | None:
    if not config.dsa:
        return None
    from iid_distill.augment import DSAConfig, dsa_independent

    dsa_config = DSAConfig(strategy=config.dsa_strategy or spec.dsa_strategy)
    return lambda inputs, generator: dsa_independent(inputs, generator, dsa_config)


def train_evaluation_networks(
    images: torch.Tensor,
    labels: torch.Tensor,
    spec,
    config: EvalConfig,
    seeds: Sequence[int],
    device: torch.device | str,
) -> list[TrainedNetwork]:
    """Train one fresh ``config.arch`` per seed on (already expanded, on-device) ``images``/``labels``.

    Seed s initialises its network from ``derived_seed(s, "init")`` and shuffles/augments with its own generator
    seeded by ``derived_seed(s, "train")``, so its result does not depend on the other seeds or on batching.
    """
    return train_evaluation_networks_for_sets([(images, labels)], spec, config, seeds, device)[0]


def train_evaluation_networks_for_sets(
    sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
    spec,
    config: EvalConfig,
    seeds: Sequence[int],
    device: torch.device | str,
) -> list[list[TrainedNetwork]]:
    """:func:`train_evaluation_networks` for each (images, labels) of ``sets``: one list of networks per set. On the
    batched path, sets of one size train together, every (set, seed) pair in one vmapped stack; each network is
    the one its set and seed give alone."""
    from iid_distill.models import get_network

    device = torch.device(device)
    keep_freed_memory(device)
    pairs = [(index, int(seed)) for index in range(len(sets)) for seed in seeds]
    nets = [get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=derived_seed(seed, "init"), **config.arch_kwargs).to(device)
            for _, seed in pairs]
    generators = [make_generator(derived_seed(seed, "train"), device) for _, seed in pairs]
    mode = resolve_seed_batching(config.seed_batching, all(supports_seed_batching(net) for net in nets), device, len(pairs))
    schedule = dict(
        epochs=config.total_epochs,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        lr_decay_epoch=config.lr_decay_epoch,
        reset_momentum_at_decay=config.reset_momentum_at_decay,
        augment=_dsa_augment(config, spec),
        precision=config.precision,
    )
    trained: list[list[TrainedNetwork]] = [[] for _ in sets]
    if mode == "batched":
        for group in _stack_groups(sets, pairs):
            started = time.perf_counter()
            if len({pairs[k][0] for k in group}) == 1:
                images, labels = sets[pairs[group[0]][0]]
            else:
                images = torch.stack([sets[pairs[k][0]][0] for k in group])
                labels = torch.stack([sets[pairs[k][0]][1] for k in group])
            stats = train_networks_batched([nets[k] for k in group], images, labels, generators=[generators[k] for k in group],
                                           progress_desc=f"eval {config.arch} x {len(group)}", **schedule)
            share = (time.perf_counter() - started) / len(group)
            for k, s in zip(group, stats):
                trained[pairs[k][0]].append(TrainedNetwork(pairs[k][1], nets[k], s["train_loss"], s["train_acc"], share, mode))
        return trained
    for (index, seed), net, generator in zip(pairs, nets, generators):
        started = time.perf_counter()
        images, labels = sets[index]
        stats = train_network(net, images, labels, generator=generator, progress_desc=f"eval {config.arch} seed {seed}", **schedule)
        trained[index].append(TrainedNetwork(seed, net, stats["train_loss"], stats["train_acc"], time.perf_counter() - started, mode))
    return trained


def _stack_groups(sets: Sequence[tuple[torch.Tensor, torch.Tensor]], pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Indices into ``pairs`` trained as one stack: every pair of the sets that share one size."""
    groups: dict[tuple, list[int]] = {}
    for k, (index, _) in enumerate(pairs):
        images, labels = sets[index]
        groups.setdefault((tuple(images.shape), tuple(labels.shape)), []).append(k)
    return list(groups.values())


def evaluation_params(config: EvalConfig, spec) -> dict[str, Any]:
    """The settings that determine results (batching and test batch size do not), with the DSA strategy resolved."""
    params = dataclasses.asdict(config)
    params["dsa_strategy"] = (config.dsa_strategy or spec.dsa_strategy) if config.dsa else None
    params["lr_decay_epoch"] = config.lr_decay_epoch
    params["total_epochs"] = config.total_epochs
    for speed_only in ("seed_batching", "test_batch_size"):
        params.pop(speed_only)
    if config.precision == "fp32":
        params.pop("precision")  # the exact mode, as before the field existed: its records keep their params_hash
    return params


def evaluate_synthetic_set(sset, dataset, config: EvalConfig, seeds: Sequence[int], device: torch.device | str) -> list[dict[str, Any]]:
    """Train a fresh network per seed on ``sset`` and test each once on ``dataset``'s full test split.

    Returns one JSON-able record per seed (acc = FINAL test accuracy in percent). IDM sets (meta expand_factor)
    are partitioned and expanded once before training. params_hash covers the evaluation settings and the
    synthetic set's provenance (dataset, ipc, method, seed, params), not the evaluation seed. ``synthetic_params``
    copies the set's parameters (e.g. lambda_cc, cc_beta), so sweeps can be tabulated from the records alone.
    """
    return evaluate_synthetic_sets([sset], dataset, config, seeds, device)[0]


def evaluate_synthetic_sets(ssets, dataset, config: EvalConfig, seeds: Sequence[int], device: torch.device | str) -> list[list[dict[str, Any]]]:
    """:func:`evaluate_synthetic_set` for each of ``ssets`` (one record list per set, the same records as one by
    one); with ``seed_batching`` batched (auto: on CUDA) sets of one size train together in one stack."""
    device = torch.device(device)
    prepared = [_prepared_set(sset, dataset, device) for sset in ssets]
    return _train_and_test([(images, labels) for images, labels, _, _ in prepared], dataset, config, seeds, device,
                           [(identity, provenance) for _, _, identity, provenance in prepared])


def _prepared_set(sset, dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], dict[str, Any]]:
    """(images, labels) to train on (IDM sets expanded), the records' identity fields and the set's provenance."""
    from iid_distill.synthetic import validate_synthetic_set

    validate_synthetic_set(sset, "synthetic set under evaluation", dataset=dataset.spec.name)
    images = sset.images.to(device, torch.float32)
    labels = sset.labels.to(device)
    expand_factor = int(sset.meta.get("expand_factor", 1) or 1)
    if expand_factor > 1:
        from iid_distill.augment import partition_and_expand

        images, labels = partition_and_expand(images, labels, expand_factor)
    synthetic_provenance = {key: sset.meta.get(key) for key in ("dataset", "ipc", "method", "seed", "params", "expand_factor")}
    provenance = (sset.meta.get("params") or {}).get("provenance") or {}
    identity = {
        "ipc": sset.meta.get("ipc"),
        "method": sset.meta.get("method"),
        "method_id": sset.meta.get("method_id") or provenance.get("method_id"),  # None for sets older than method_id
        "method_label": sset.meta.get("method_label") or (sset.meta.get("params") or {}).get("method_label") or sset.meta.get("method"),
        "synthetic_seed": sset.meta.get("seed"),
        "synthetic_sha256": sha256_tensor(sset.images),
        "synthetic_params": sset.meta.get("params") or {},
    }
    return images, labels, identity, {"synthetic": synthetic_provenance}


def evaluate_whole_dataset(dataset, config: EvalConfig, seeds: Sequence[int], device: torch.device | str) -> list[dict[str, Any]]:
    """The "whole dataset" reference of Tables 1/2 and Figure 6: the protocol of ``config`` on the full training split.

    Records carry method "whole" and ipc 0 (not images per class), the report's convention.
    """
    from iid_distill.data import normalize

    device = torch.device(device)
    images = normalize(dataset.train.images.to(device), dataset.spec)
    labels = dataset.train.labels.to(device)
    identity = {"ipc": 0, "method": "whole", "method_id": "whole", "synthetic_seed": None, "synthetic_sha256": None, "synthetic_params": {}}
    return _train_and_test([(images, labels)], dataset, config, seeds, device, [(identity, {"train_sha256": dataset.sha256.get("train_images")})])[0]


def _train_and_test(sets, dataset, config: EvalConfig, seeds: Sequence[int], device: torch.device,
                    identities: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """One record list per (images, labels) of ``sets`` (with its (identity, provenance)): a fresh ``config.arch``
    per seed trained on the set, tested once on the test split."""
    from iid_distill.data import normalize

    if not seeds:
        raise EvaluationError("evaluation seeds: need at least one seed")
    spec = dataset.spec
    test_images = normalize(dataset.test.images.to(device), spec)
    test_labels = dataset.test.labels.to(device)
    eval_params = evaluation_params(config, spec)
    common = {"dataset": spec.name, "arch": config.arch, "epochs": config.epochs, "test_size": int(test_labels.shape[0]),
              "device": device_description(device), "git_sha": git_sha(), "eval_params": eval_params,
              "dataset_sha256": dict(dataset.sha256)}  # the data trained and tested on: a set evaluated on another copy shows
    all_records = []
    for (images, _), (identity, provenance), networks in zip(sets, identities, train_evaluation_networks_for_sets(sets, spec, config, seeds, device)):
        shared = {**common, **identity, "train_size": int(images.shape[0]),
                  "params_hash": params_hash({"evaluation": eval_params, **provenance})}
        records = []
        for trained in networks:
            started = time.perf_counter()
            acc = test_accuracy(trained.net, test_images, test_labels, config.test_batch_size, config.precision)
            records.append({**shared, "seed": trained.seed, "acc": acc, "train_acc": trained.train_acc, "train_loss": trained.train_loss,
                            "wall_s": trained.wall_s + time.perf_counter() - started, "seed_batching": trained.seed_batching})
        all_records.append(records)
    return all_records


def write_records(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write evaluation records as one JSON list, atomically."""
    atomic_write_json(list(records), path)
