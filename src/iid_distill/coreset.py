"""Classic coreset baselines: select ``ipc`` real training images per class (Random, Herding, K-Center, Forgetting).

The IID paper quotes these baselines from DC / DC-BENCH. Here:

- ``random``: a seeded uniform draw without replacement inside each class.
- ``herding`` (Welling 2009, as used by iCaRL and DC-BENCH): per class, greedily add the sample that brings the
  running mean of the selected embeddings closest to the class mean embedding.
- ``kcenter`` (Sener & Savarese 2018, greedy 2-approximation): per class, repeatedly add the sample farthest from
  its nearest already-chosen centre.
- ``forgetting`` (Toneva et al. 2019): train a network on the real training set, count per example how often it
  goes from correctly to wrongly classified between consecutive presentations, and keep the most-forgotten
  examples of each class.

Herding and K-Center work in the embedding space (``net.embed``, the flattened last feature map) of ONE network of
``embed_arch`` (default the DC/DM ConvNet) trained on the full real training set, as DC and DC-BENCH do; the same
trained network serves every class. That network, and the one whose training Forgetting observes, is trained with
SGD lr 0.01 (constant, no decay), momentum 0.9, weight decay 5e-4, batch 256, cross-entropy and NO augmentation
(the settings of the IID code's feature-network pre-training); the epochs are parameters.

Training that network is most of a selection's cost (CIFAR-10, 20 epochs: about 35 minutes on 2 CPU cores), and it
does not depend on the method or the IPC. With ``net_cache`` (params.yaml ``coreset.net_cache``) the trained
embedding network and the forgetting counts are kept on disk under a key of everything they depend on, so Herding
and K-Center at IPC 1, 10 and 50 train one network between them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from iid_distill.names import method_label
from iid_distill.utils import UserError, atomic_torch_save, git_sha, keep_freed_memory, load_torch_file, make_generator, params_hash

log = logging.getLogger(__name__)

KCENTER_STARTS = ("mean", "random")
DEFAULT_EMBED_EPOCHS = 20  # params.yaml coreset.embed_epochs; DC-BENCH does not publish its value
DEFAULT_FORGETTING_EPOCHS = 20  # params.yaml coreset.forgetting_epochs (Toneva et al. train far longer: 200)


class CoresetError(UserError):
    """A coreset request that cannot be served: unknown method, bad ipc or option."""


# ------------------------------------------------------------------------------------ pure selection


def random_selection(class_indices: Sequence[torch.Tensor], ipc: int, generator: torch.Generator) -> torch.Tensor:
    """Per class, ``ipc`` indices drawn uniformly without replacement; concatenated class by class.

    ``class_indices[c]`` holds the dataset indices of class c; the draw uses ``generator`` in class order, so the
    same generator state gives the same selection.
    """
    picks = []
    for indices in class_indices:  # one randperm per class: classes differ in size
        if ipc > indices.numel():
            raise ValueError(f"random_selection: ipc {ipc} exceeds a class of {indices.numel()} samples")
        order = torch.randperm(indices.numel(), generator=generator, device=generator.device)
        picks.append(indices[order[:ipc].to(indices.device)])
    return torch.cat(picks) if picks else torch.empty(0, dtype=torch.int64)


def herding_selection(features: torch.Tensor, k: int) -> torch.Tensor:
    """Welling's herding as in iCaRL / DC-BENCH: ``k`` distinct row indices of ``features`` (n, d), in pick order.

    Step t (1-based) picks the unselected x minimising ``|| mu - (s + x) / t ||`` with mu the mean of all rows and s
    the sum of the rows picked so far; so the first pick is the row nearest the mean. Ties go to the lowest index.
    Computed in float64 via ``||s + x - t mu||^2 = ||x||^2 + 2 x.(s - t mu) + const`` (one mat-vec per step).
    """
    _check_k("herding_selection", features, k)
    feats = features.detach().to(torch.float64)
    target = feats.mean(dim=0)
    squared_norms = (feats * feats).sum(dim=1)
    selected_sum = torch.zeros_like(target)
    available = torch.ones(feats.shape[0], dtype=torch.bool, device=feats.device)
    picks = torch.empty(k, dtype=torch.int64, device=feats.device)
    for step in range(k):  # greedy: each pick depends on the previous ones
        score = squared_norms + 2.0 * (feats @ (selected_sum - (step + 1) * target))
        score = score.masked_fill(~available, float("inf"))
        pick = torch.argmin(score)
        picks[step] = pick
        available[pick] = False
        selected_sum += feats[pick]
    return picks


def k_center_greedy(features: torch.Tensor, k: int, start: str = "mean", generator: torch.Generator | None = None) -> torch.Tensor:
    """Sener & Savarese's greedy K-Center: ``k`` distinct row indices of ``features`` (n, d), in pick order.

    First centre: ``start="mean"`` takes the row nearest the mean of all rows (deterministic; our choice: we could
    not confirm DC-BENCH's rule, DeepCore by the same group starts at a random row); ``start="random"`` draws it
    with ``generator``. Every further pick is the row with the largest Euclidean distance to its nearest chosen
    centre (ties: lowest index); chosen rows are never picked again, even when duplicates leave all distances 0.
    """
    _check_k("k_center_greedy", features, k)
    if start not in KCENTER_STARTS:
        raise ValueError(f"k_center_greedy: start {start!r} is not one of {', '.join(KCENTER_STARTS)}")
    feats = features.detach().to(torch.float64)
    if start == "mean":
        first = torch.argmin(((feats - feats.mean(dim=0)) ** 2).sum(dim=1))
    else:
        if generator is None:
            raise ValueError("k_center_greedy: start='random' needs a generator")
        first = torch.randint(feats.shape[0], (), generator=generator, device=generator.device).to(feats.device)
    picks = torch.empty(k, dtype=torch.int64, device=feats.device)
    picks[0] = first
    nearest_centre_sq = ((feats - feats[first]) ** 2).sum(dim=1)
    chosen = torch.zeros(feats.shape[0], dtype=torch.bool, device=feats.device)
    chosen[first] = True
    for step in range(1, k):  # greedy: each centre changes every row's nearest-centre distance
        pick = torch.argmax(nearest_centre_sq.masked_fill(chosen, -1.0))
        picks[step] = pick
        chosen[pick] = True
        nearest_centre_sq = torch.minimum(nearest_centre_sq, ((feats - feats[pick]) ** 2).sum(dim=1))
    return picks


def _check_k(name: str, features: torch.Tensor, k: int) -> None:
    if features.dim() != 2:
        raise ValueError(f"{name}: features must be (n, d), got shape {tuple(features.shape)}")
    if not 1 <= k <= features.shape[0]:
        raise ValueError(f"{name}: k must be in 1..{features.shape[0]} (the number of rows), got {k}")


def count_forgetting_events(correct_history: torch.Tensor) -> torch.Tensor:
    """Forgetting events per sample from a (presentations, samples) bool history of "classified correctly".

    An event is a presentation where the sample is wrong right after one where it was correct (Toneva et al.).
    """
    history = correct_history.to(torch.bool)
    return (history[:-1] & ~history[1:]).sum(dim=0)


class ForgettingTracker:
    """Incremental forgetting-event counter fed one mini-batch at a time (all tensor ops, no loop over samples).

    Before its first presentation a sample counts as not correct, so its first presentation is never an event.
    Usable directly as ``train_network(..., on_batch_end=tracker.update)``.
    """

    def __init__(self, num_samples: int, device: torch.device | str = "cpu") -> None:
        self.last_correct = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self.events = torch.zeros(num_samples, dtype=torch.int64, device=device)
        self.presentations = torch.zeros(num_samples, dtype=torch.int64, device=device)

    def update_correct(self, indices: torch.Tensor, correct: torch.Tensor) -> None:
        """Record one presentation of the (distinct) samples ``indices`` with their correctness flags."""
        indices = indices.to(self.events.device)
        correct = correct.to(device=self.events.device, dtype=torch.bool)
        self.events[indices] += (self.last_correct[indices] & ~correct).to(torch.int64)
        self.last_correct[indices] = correct
        self.presentations[indices] += 1

    def update(self, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``on_batch_end`` hook: correctness is the argmax of the logits the optimiser step was computed from."""
        self.update_correct(indices, logits.argmax(dim=1) == labels)


def top_per_class(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Per class, the indices of the ``k`` highest ``scores``; ties broken by a random permutation from ``generator``.

    Batched over all samples: shuffle once, stable-sort by descending score, then stable-sort by class, and keep
    the first ``k`` of each class. Returned class by class (ascending class), highest score first within a class.
    """
    scores, labels = scores.detach().cpu(), labels.detach().cpu()
    counts = torch.bincount(labels, minlength=num_classes)
    if int(counts.min()) < k:
        raise ValueError(f"top_per_class: k {k} exceeds the smallest class ({int(counts.min())} samples)")
    shuffle = torch.randperm(labels.numel(), generator=generator, device=generator.device).cpu()
    by_score = torch.sort(-scores[shuffle].to(torch.float64), stable=True).indices
    by_class = by_score[torch.sort(labels[shuffle][by_score], stable=True).indices]
    class_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(labels.numel()) - class_start[labels[shuffle][by_class]]
    return shuffle[by_class[rank_in_class < k]]


# ------------------------------------------------------------------------------ networks on real data


def train_on_real(
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: Any,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    on_batch_end: Any = None,
    progress_desc: str | None = None,
) -> nn.Module:
    """A fresh ``arch`` (init seed ``seed``) trained on normalised on-device ``images`` with constant lr, no augmentation."""
    from iid_distill.evaluate import train_network
    from iid_distill.models import get_network

    net = get_network(arch, spec.channels, spec.num_classes, spec.image_size, seed=seed, **arch_kwargs).to(images.device)
    train_network(
        net,
        images,
        labels,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        lr_decay_epoch=epochs,  # >= epochs: constant learning rate
        augment=None,
        generator=make_generator(seed, images.device),
        progress_desc=progress_desc,
        on_batch_end=on_batch_end,
    )
    return net


@torch.no_grad()
def embed_images(net: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``net.embed`` of every image, in eval mode, in batches on the images' device; (N, embed_dim)."""
    was_training = net.training
    net.eval()
    embeddings = torch.cat([net.embed(images[start : start + batch_size]) for start in range(0, images.shape[0], batch_size)])
    net.train(was_training)
    return embeddings


def forgetting_counts(
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: Any,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> torch.Tensor:
    """Forgetting events per training image while a fresh ``arch`` trains ``epochs`` epochs on all of them.

    Correctness is read from each mini-batch's own forward pass (before its optimiser step), as Toneva et al. do.
    The count is the plain number of events: never-learned examples get 0 (Toneva et al.'s ranking treats them
    as the most forgotten; DeepCore, like this function, does not).
    """
    tracker = ForgettingTracker(images.shape[0], images.device)
    schedule = dict(epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
    train_on_real(
        images, labels, spec, arch=arch, arch_kwargs=arch_kwargs, on_batch_end=tracker.update, progress_desc="coreset forgetting", **schedule
    )
    return tracker.events


# ------------------------------------------------------------------------------------------ net cache


def training_key(kind: str, dataset: Any, device: torch.device, epochs: int, training: dict[str, Any]) -> dict[str, Any]:
    """Everything a trained network (or its forgetting counts) depends on: the data by content, the training schedule,
    the coreset step's implementation version (``versions.IMPLEMENTATION``: bumped when what it computes changes), the
    device type and the torch version (the same request on a CPU and a GPU gives two valid, different networks)."""
    from iid_distill.versions import implementation_version

    return {
        "kind": kind,
        "implementation": implementation_version("coreset"),
        "dataset": dataset.spec.name,
        "train_images_sha256": dataset.sha256["train_images"],
        "train_labels_sha256": dataset.sha256["train_labels"],
        "epochs": int(epochs),
        **training,
        "device_type": device.type,
        "torch": str(torch.__version__),
    }


def cached_tensors(folder: str | None, key: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``compute()``, or what an earlier call with the same ``key`` stored under ``folder`` (None: no cache).

    A file is found by a hash of ``key`` and used only if the key it stores is ``key``; it is written whole (temp file,
    then rename), so concurrent jobs at worst train the same network twice.
    """
    if folder is None:
        return compute()
    path = Path(folder) / f"{key['kind']}-{key['dataset']}-{params_hash(key)}.pt"
    if path.is_file():
        stored = load_torch_file(path, CoresetError, "unreadable coreset cache file", hint="delete it to train again")
        if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("tensors"), dict):
            raise CoresetError(f"{path}: coreset cache file does not hold the network it is named for; delete it to train again")
        log.info("coreset: %s read from the cache %s (written at commit %s)", key["kind"], path, stored.get("git_sha"))
        return stored["tensors"]
    tensors = compute()
    atomic_torch_save({"key": key, "tensors": tensors, "git_sha": git_sha()}, path)
    log.info("coreset: %s written to the cache %s", key["kind"], path)
    return tensors


# ----------------------------------------------------------------------------------------- front door


def select_coreset(
    method: str,
    dataset: Any,
    ipc: int,
    seed: int,
    device: torch.device | str,
    *,
    embed_arch: str = "ConvNet",
    embed_epochs: int = DEFAULT_EMBED_EPOCHS,
    forgetting_epochs: int = DEFAULT_FORGETTING_EPOCHS,
    batch_size: int = 256,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    kcenter_start: str = "mean",
    arch_kwargs: dict[str, Any] | None = None,
    net_cache: str | None = None,
) -> Any:
    """Select ``ipc`` real training images per class of ``dataset`` (a ``PreparedDataset``) as a ``SyntheticSet``.

    Images are the normalised real images, class by class (ascending class, pick order within a class);
    ``meta["indices"]`` lists their train-split indices and ``meta["params"]`` every parameter the method used.
    Herding/K-Center: embeddings of one ``embed_arch`` network trained ``embed_epochs`` epochs on the whole train
    split. Forgetting: ``forgetting_epochs`` epochs of ``embed_arch``; the most-forgotten images of each class are
    kept (DC describes Forgetting as selecting the examples that are easy to forget; DeepCore, by the same group,
    also keeps the highest counts), ties broken by a permutation seeded with ``seed``.
    ``net_cache``: a folder where the embedding network and the forgetting counts are kept for later calls
    (:func:`cached_tensors`); the selection is the same with or without it.
    """
    from iid_distill.data import normalize
    from iid_distill.synthetic import SyntheticSet

    spec = dataset.spec
    _check_request(method, ipc, dataset, embed_epochs, forgetting_epochs, batch_size, kcenter_start)
    request = SelectionRequest(
        dataset=dataset, ipc=ipc, device=torch.device(device),
        generator=make_generator(seed, "cpu"),  # selection randomness (random draw, ties, random first centre)
        training=dict(arch=embed_arch, arch_kwargs=dict(arch_kwargs or {}), seed=seed, batch_size=batch_size, lr=lr,
                      momentum=momentum, weight_decay=weight_decay),
        embed_epochs=embed_epochs, forgetting_epochs=forgetting_epochs, kcenter_start=kcenter_start, net_cache=net_cache)
    indices, params = SELECTORS[method](request)
    indices = indices.cpu()
    meta = {
        "dataset": spec.name,
        "ipc": int(ipc),
        "method": method,
        "method_id": method,
        "method_label": method_label(method),
        "params": params,
        "seed": int(seed),
        "git_sha": git_sha(),
        "indices": indices.tolist(),
        "dataset_sha256": dict(dataset.sha256),
    }
    return SyntheticSet(images=normalize(dataset.train.images[indices], spec), labels=dataset.train.labels[indices].clone(), meta=meta)


# ------------------------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class SelectionRequest:
    """What a coreset method gets: the data, the IPC, where to compute, the selection generator, and the settings of
    the network some methods train on the real data (``training``: arch, arch_kwargs, seed, batch_size, lr, ...)."""

    dataset: Any
    ipc: int
    device: torch.device
    generator: torch.Generator
    training: dict[str, Any]
    embed_epochs: int
    forgetting_epochs: int
    kcenter_start: str
    net_cache: str | None


Selector = Callable[[SelectionRequest], "tuple[torch.Tensor, dict[str, Any]]"]
SELECTORS: dict[str, Selector] = {}


def register_coreset(name: str) -> Callable[[Selector], Selector]:
    """Add a coreset method: ``selector(request) -> (train-split indices, params recorded in the set)``. The CLI's
    choices, the job checks and the workflow's method ids all read this registry."""
    def add(selector: Selector) -> Selector:
        if name in SELECTORS:
            raise ValueError(f"coreset method {name!r} is already registered")
        SELECTORS[name] = selector
        return selector

    return add


def coreset_methods() -> tuple[str, ...]:
    return tuple(SELECTORS)


def check_coreset_method(method: str) -> None:
    if method not in SELECTORS:
        raise CoresetError(f"coreset method {method!r} is unknown; valid methods: {', '.join(SELECTORS)}")


@register_coreset("random")
def _random(request: SelectionRequest) -> tuple[torch.Tensor, dict[str, Any]]:
    return random_selection(request.dataset.train_class_indices, request.ipc, request.generator), {}


@register_coreset("herding")
def _herding(request: SelectionRequest) -> tuple[torch.Tensor, dict[str, Any]]:
    return _per_class_in_embedding(request, lambda features: herding_selection(features, request.ipc)), _embedding_params(request)


@register_coreset("kcenter")
def _kcenter(request: SelectionRequest) -> tuple[torch.Tensor, dict[str, Any]]:
    pick = lambda features: k_center_greedy(features, request.ipc, start=request.kcenter_start, generator=request.generator)  # noqa: E731
    params = {**_embedding_params(request), "kcenter_start": request.kcenter_start, "distance": "euclidean"}
    return _per_class_in_embedding(request, pick), params


@register_coreset("forgetting")
def _forgetting(request: SelectionRequest) -> tuple[torch.Tensor, dict[str, Any]]:
    from iid_distill.data import normalize

    dataset, device, training = request.dataset, request.device, request.training
    keep_freed_memory(device)
    train_labels = dataset.train.labels.to(device)

    def count() -> dict[str, torch.Tensor]:  # normalised images only when the counts are not cached
        images = normalize(dataset.train.images.to(device), dataset.spec)
        return {"counts": forgetting_counts(images, train_labels, dataset.spec, epochs=request.forgetting_epochs, **training).cpu()}

    key = training_key("forgetting-counts", dataset, device, request.forgetting_epochs, training)
    counts = cached_tensors(request.net_cache, key, count)["counts"].to(device)
    indices = top_per_class(counts, dataset.train.labels, dataset.spec.num_classes, request.ipc, request.generator)
    params = {**_trained_on_real(request), "forgetting_epochs": request.forgetting_epochs, "keep": "most_forgotten",
              "ties": "seeded_permutation"}
    return indices, params


def _trained_on_real(request: SelectionRequest) -> dict[str, Any]:
    return {**request.training, "augment": None, "lr_schedule": "constant"}


def _embedding_params(request: SelectionRequest) -> dict[str, Any]:
    return {**_trained_on_real(request), "embed_epochs": request.embed_epochs, "embedding": "net.embed (eval mode)"}


def _per_class_in_embedding(request: SelectionRequest, pick: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Herding / K-Center: greedy within each class, in the embedding of one network trained on the real data."""
    from iid_distill.data import normalize

    dataset, device = request.dataset, request.device
    keep_freed_memory(device)
    train_images = normalize(dataset.train.images.to(device), dataset.spec)
    net = _embedding_net(train_images, dataset.train.labels.to(device), dataset, device, request.embed_epochs, request.training,
                         request.net_cache)
    features = embed_images(net, train_images, request.training["batch_size"])
    del train_images
    return torch.cat([members[pick(features[members.to(device)]).cpu()] for members in dataset.train_class_indices])


def _embedding_net(images: torch.Tensor, labels: torch.Tensor, dataset: Any, device: torch.device, epochs: int,
                   training: dict[str, Any], net_cache: str | None) -> nn.Module:
    """The Herding / K-Center embedding network: trained here, or its weights from ``net_cache``."""
    from iid_distill.models import get_network

    def train() -> dict[str, torch.Tensor]:
        net = train_on_real(images, labels, dataset.spec, epochs=epochs, progress_desc="coreset embedding net", **training)
        return {name: value.detach().cpu() for name, value in net.state_dict().items()}

    state = cached_tensors(net_cache, training_key("embedding-net", dataset, device, epochs, training), train)
    spec = dataset.spec
    net = get_network(training["arch"], spec.channels, spec.num_classes, spec.image_size, seed=training["seed"], **training["arch_kwargs"])
    net.load_state_dict(state)
    return net.to(device)


def _check_request(
    method: str, ipc: Any, dataset: Any, embed_epochs: Any, forgetting_epochs: Any, batch_size: Any, kcenter_start: str
) -> None:
    check_coreset_method(method)
    for name, value in (("ipc", ipc), ("embed_epochs", embed_epochs), ("forgetting_epochs", forgetting_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CoresetError(f"coreset {name} = {value!r}: expected a positive integer")
    smallest = min(int(members.numel()) for members in dataset.train_class_indices)
    if ipc > smallest:
        raise CoresetError(
            f"coreset ipc {ipc} exceeds the smallest class of {dataset.spec.name} ({smallest} train images); use ipc <= {smallest}"
        )
    if kcenter_start not in KCENTER_STARTS:
        raise CoresetError(f"coreset kcenter_start = {kcenter_start!r}: expected one of {', '.join(KCENTER_STARTS)}")


__all__ = [
    "SELECTORS",
    "CoresetError",
    "SelectionRequest",
    "check_coreset_method",
    "coreset_methods",
    "register_coreset",
    "ForgettingTracker",
    "cached_tensors",
    "count_forgetting_events",
    "embed_images",
    "forgetting_counts",
    "herding_selection",
    "k_center_greedy",
    "random_selection",
    "select_coreset",
    "top_per_class",
    "train_on_real",
    "training_key",
]
