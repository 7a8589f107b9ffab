"""The pool of pre-trained feature networks g for IID's class-centralisation loss (paper Eq. 3).

The paper pre-trains a ResNet18 (instance norm) for 30 epochs per dataset and uses its 512-d pooled embedding as g.
The authors' code instead samples one model per distillation iteration from a pool of 1000 ResNet18s, each trained
40 epochs with SGD (lr 0.01 constant, momentum 0.9, weight decay 5e-4, batch 256, no augmentation); that pool was
never released. Pool size and epochs are parameters here; the default is a practical pool of 10 models x 30 epochs
(the paper's epoch count) with the code's optimiser settings.

Layout of a pool directory::

    model_0000.pt, model_0001.pt, ...   plain state_dicts (CPU tensors), written atomically
    pool.json                           manifest: dataset, config, git sha, and per model file/seed/sha256/accuracies

:func:`pretrain_pool` trains the models one by one and rewrites the manifest after each, so an interrupted run resumes
where it stopped; :class:`FeaturePool` loads every model once, verified against the manifest's hashes, and hands the
distiller a uniformly sampled frozen network per iteration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from iid_distill.config import check_fields_finite
from iid_distill.evaluate import SEED_BATCHING_MODES
from iid_distill.utils import (
    PRECISIONS,
    UserError,
    atomic_torch_save,
    atomic_write_json,
    device_description,
    git_sha,
    keep_freed_memory,
    load_torch_file,
    make_generator,
    portable_path,
    sha256_file,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "pool.json"
MANIFEST_FORMAT = 1
LR_SCHEDULES = ("constant", "step")
DEFAULT_POOL_ROOT = Path("results/pools")  # the workflow's too (results_dir: results)


class PoolError(UserError):
    """A feature-network pool that is missing, corrupt, or was built for another dataset or architecture."""


@dataclass(frozen=True)
class PretrainConfig:
    """How the feature networks of one pool are trained (the ``pretrain`` section of params.yaml).

    Defaults: 10 models x 30 epochs (paper: "pre-trained 30 epochs"; a small pool is the practical choice), SGD
    lr 0.01 constant, momentum 0.9, weight decay 5e-4, batch 256, no augmentation (the authors' code).
    The authors' code setting is ``num_models=1000, epochs=40``.

    lr_schedule: ``constant`` (authors' code) or ``step`` (lr x0.1 from epoch epochs // 2, as in evaluation).
    seed: model k is seeded with ``seed + k``. arch_kwargs go to ``models.get_network`` (e.g. ``width`` for ConvNet).
    subset_per_class: train on the first N training images of each class only (None = all), for CPU-sized pools.
    precision: fp32 (exact) or bf16 (autocast of the network passes, the fast mode). model_batching: auto | batched |
    sequential, as the evaluation's seed_batching: ``batched`` trains all models of a pass as one vmapped stack
    (the same SGD per model, to float rounding), ``auto`` batches on CUDA only (a speed choice, never a setting a pool
    must share).
    """

    arch: str = "ResNet18"
    num_models: int = 10
    epochs: int = 30
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    lr_schedule: str = "constant"
    seed: int = 0
    test_batch_size: int = 1024
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    subset_per_class: int | None = None
    precision: str = "fp32"
    model_batching: str = "auto"

    def __post_init__(self) -> None:
        check_fields_finite(self, "pretrain", PoolError)
        if self.subset_per_class is not None and (isinstance(self.subset_per_class, bool) or not isinstance(self.subset_per_class, int) or self.subset_per_class < 1):
            raise PoolError(f"pretrain.subset_per_class = {self.subset_per_class!r}: expected a positive integer or null")
        for name in ("num_models", "epochs", "batch_size", "test_batch_size"):
            value, low = getattr(self, name), 0 if name == "epochs" else 1  # 0 epochs: an untrained pool (the pool study's control)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise PoolError(f"pretrain.{name} = {value!r}: expected an integer >= {low}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise PoolError(f"pretrain.seed = {self.seed!r}: expected a non-negative integer")
        if self.precision not in PRECISIONS:
            raise PoolError(f"pretrain.precision = {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.model_batching not in SEED_BATCHING_MODES:
            raise PoolError(f"pretrain.model_batching = {self.model_batching!r}: expected one of {', '.join(SEED_BATCHING_MODES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise PoolError(f"pretrain.lr_schedule = {self.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
        if float(self.lr) <= 0 or float(self.momentum) < 0 or float(self.weight_decay) < 0:
            raise PoolError("pretrain.lr must be > 0, and pretrain.momentum and pretrain.weight_decay >= 0")
        if not isinstance(self.arch_kwargs, dict):
            raise PoolError(f"pretrain.arch_kwargs: expected a mapping, got {type(self.arch_kwargs).__name__}")

    @property
    def lr_decay_epoch(self) -> int:
        """First epoch at lr x0.1; ``epochs`` (never reached) for the constant schedule."""
        return self.epochs // 2 if self.lr_schedule == "step" else self.epochs

    def training_settings(self) -> dict[str, Any]:
        """Settings every model of a pool must share (all but the pool size and the test batch size), JSON-normalised."""
        settings = dataclasses.asdict(self)
        for free_key in ("num_models", "test_batch_size", "model_batching"):
            settings.pop(free_key)
        return json.loads(json.dumps(settings, sort_keys=True))


def training_subset(split, num_classes: int, per_class: int | None) -> torch.Tensor:
    """Indices of the first ``per_class`` training images of every class (in dataset order), or all indices."""
    if per_class is None:
        return torch.arange(len(split.labels))
    return torch.cat([indices[:per_class] for indices in split.class_indices(num_classes)]).sort().values


def default_pool_dir(dataset_name: str, arch: str = "ResNet18", root: str | Path = DEFAULT_POOL_ROOT) -> Path:
    """Where ``iid-distill pretrain --dataset NAME`` puts a pool by default: ``results/pools/<dataset>-<arch>``, where the workflow puts it."""
    return Path(root) / f"{dataset_name}-{arch}"


def model_file_name(index: int) -> str:
    return f"model_{index:04d}.pt"


def model_seeds(seed: int) -> tuple[int, int]:
    """(init seed, shuffle seed) of the model with ``seed``: separate streams, distinct from evaluation's seeds."""
    digest = hashlib.sha256(f"iid-distill/pretrain/{int(seed)}".encode()).hexdigest()
    return int(digest[:15], 16), int(digest[15:30], 16)


# ------------------------------------------------------------------------------------------ training


def _read_manifest(pool_dir: Path) -> dict[str, Any] | None:
    path = pool_dir / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PoolError(f"{path}: unreadable pool manifest ({str(error).splitlines()[0]}); delete the pool directory and re-run iid-distill pretrain") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("models"), list):
        raise PoolError(f"{path}: not a format-{MANIFEST_FORMAT} pool manifest; delete the pool directory and re-run iid-distill pretrain")
    for index, entry in enumerate(manifest["models"]):
        problem = _entry_problem(entry)
        if problem:
            raise PoolError(f"{path}: model entry {index} {problem}; delete the pool directory and re-run iid-distill pretrain")
    return manifest


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with a manifest's model entry, if anything: its file must be a plain name inside the pool."""
    if not isinstance(entry, dict):
        return "is not a JSON object"
    name = entry.get("file")
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        return f"names file {name!r}, not a file inside the pool folder"
    if not isinstance(entry.get("sha256"), str):
        return "has no sha256"
    accuracy = entry.get("test_acc")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        return f"has test_acc {accuracy!r}, not a number"
    return None


def _entry_is_intact(pool_dir: Path, entry: dict[str, Any]) -> bool:
    """The entry's file exists and still has the hash recorded when it was written."""
    path = pool_dir / str(entry.get("file", ""))
    return path.is_file() and sha256_file(path) == entry.get("sha256")


def _reusable_entries(pool_dir: Path, manifest: dict[str, Any] | None, dataset, config: PretrainConfig, seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Entries of an earlier run that can be kept: same dataset and settings, same seed, file hash intact."""
    if manifest is None:
        return {}
    where = pool_dir / MANIFEST_NAME
    if manifest.get("dataset") != dataset.spec.name or manifest.get("dataset_sha256") != dataset.sha256:
        raise PoolError(
            f"{where}: this pool was trained on dataset {manifest.get('dataset')!r} (sha256 {manifest.get('dataset_sha256')}), "
            f"not on this {dataset.spec.name!r}; choose another --out directory or delete this one"
        )
    if {"precision": "fp32", **(manifest.get("training") or {})} != config.training_settings():  # pools from before precision: fp32
        raise PoolError(
            f"{where}: this pool was trained with other settings ({manifest.get('training')}); "
            "choose another --out directory or delete this one to re-train"
        )
    kept = {}
    for entry in manifest["models"]:
        index = entry.get("index")
        if isinstance(index, int) and 0 <= index < len(seeds) and entry.get("seed") == seeds[index] and _entry_is_intact(pool_dir, entry):
            kept[index] = entry
    return kept


def _manifest(dataset, config: PretrainConfig, entries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    spec = dataset.spec
    return {
        "format": MANIFEST_FORMAT,
        "dataset": spec.name,
        "dataset_sha256": dataset.sha256,
        "dataset_source": portable_path(dataset.source) if dataset.source else None,
        "channels": spec.channels,
        "num_classes": spec.num_classes,
        "image_size": spec.image_size,
        "arch": config.arch,
        "config": dataclasses.asdict(config),
        "training": config.training_settings(),
        "num_models": config.num_models,
        "complete": len(entries) == config.num_models,
        "git_sha": git_sha(),
        "models": [entries[index] for index in sorted(entries)],
    }


def _train_models(indices: Sequence[int], seeds: Sequence[int], dataset, config: PretrainConfig, train_data, test_data, out_dir: Path,
                  device: torch.device, progress: bool) -> dict[int, dict[str, Any]]:
    """Train, save and test the models ``indices`` (seeds ``seeds[index]``), as one vmapped stack when
    ``config.model_batching`` resolves to batched, else one after another; return their manifest entries."""
    from iid_distill.evaluate import resolve_seed_batching, supports_seed_batching, test_accuracy, train_network, train_networks_batched
    from iid_distill.models import get_network

    spec = dataset.spec
    started = time.perf_counter()
    nets = [get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=model_seeds(seeds[index])[0],
                        **config.arch_kwargs).to(device) for index in indices]
    generators = [make_generator(model_seeds(seeds[index])[1], device) for index in indices]
    training = dict(epochs=config.epochs, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                    batch_size=config.batch_size, lr_decay_epoch=config.lr_decay_epoch, augment=None,  # the authors' pool: no augmentation
                    precision=config.precision)
    first = f"pretrain {config.arch} {indices[0] + 1}"
    if resolve_seed_batching(config.model_batching, supports_seed_batching(nets[0]), device, len(nets)) == "batched":
        desc = f"{first}-{indices[-1] + 1}/{config.num_models}" if progress else None
        stats = train_networks_batched(nets, *train_data, generators=generators, progress_desc=desc, **training)
    else:
        stats = [train_network(net, *train_data, generator=generator, **training,
                               progress_desc=f"pretrain {config.arch} {index + 1}/{config.num_models}" if progress else None)
                 for index, net, generator in zip(indices, nets, generators)]
    wall_s = (time.perf_counter() - started) / len(nets)
    return {index: _save_model(index, seeds[index], net, stat, wall_s, config, test_data, out_dir, device, test_accuracy)
            for index, net, stat in zip(indices, nets, stats)}


def _save_model(index: int, seed: int, net: nn.Module, stats: dict[str, float], wall_s: float, config: PretrainConfig, test_data,
                out_dir: Path, device: torch.device, test_accuracy) -> dict[str, Any]:
    """Test model ``index``, write its state_dict and return its manifest entry."""
    test_acc = test_accuracy(net, *test_data, config.test_batch_size)
    path = out_dir / model_file_name(index)
    atomic_torch_save({name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}, path)
    return {
        "index": index,
        "file": path.name,
        "seed": seed,
        "sha256": sha256_file(path),
        "test_acc": test_acc,
        "train_acc": stats["train_acc"] if config.epochs else None,  # an untrained model has no training epoch to report
        "train_loss": stats["train_loss"] if config.epochs else None,
        "epochs": config.epochs,
        "precision": config.precision,
        "wall_s": wall_s,  # per model: a batched pass's wall shared among its models
        "device": device_description(device),
        "git_sha": git_sha(),
    }


def pretrain_pool(dataset, config: PretrainConfig, out_dir: str | Path, device: torch.device | str, seeds: Sequence[int] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train ``config.num_models`` networks on ``dataset``'s train split into ``out_dir``; return the manifest entries.

    Model k is seeded with ``seeds[k]`` (default ``config.seed + k``), saved as a plain state_dict
    ``out_dir/model_{k:04d}.pt`` and tested on the test split; ``out_dir/pool.json`` is rewritten after every model.
    Re-running resumes: a model already in the manifest with the same seed and an intact file (sha256) is kept;
    a missing or corrupt file is re-trained. A directory holding a pool of another dataset or other training
    settings is an error (the pool size may change).
    """
    from iid_distill.data import normalize

    out_dir, device = Path(out_dir), torch.device(device)
    seeds = [config.seed + index for index in range(config.num_models)] if seeds is None else [int(seed) for seed in seeds]
    if len(seeds) != config.num_models or len(set(seeds)) != len(seeds):
        raise PoolError(f"pretrain seeds: expected {config.num_models} distinct seeds (one per model), got {seeds}")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = _reusable_entries(out_dir, _read_manifest(out_dir), dataset, config, seeds)
    todo = [index for index in range(config.num_models) if index not in entries]
    if progress and entries:
        log.info("pretrain: %d of %d models already in %s, training %d", len(entries), config.num_models, out_dir, len(todo))
    if todo:
        keep_freed_memory(device)
        spec = dataset.spec
        picks = training_subset(dataset.train, spec.num_classes, config.subset_per_class)
        train_data = (normalize(dataset.train.images[picks].to(device), spec), dataset.train.labels[picks].to(device))
        test_data = (normalize(dataset.test.images.to(device), spec), dataset.test.labels.to(device))
        for chunk in _passes(todo, config, device):
            trained = _train_models(chunk, seeds, dataset, config, train_data, test_data, out_dir, device, progress)
            entries.update(trained)
            atomic_write_json(_manifest(dataset, config, entries), out_dir / MANIFEST_NAME)
            for entry in trained.values() if progress else ():
                train = "untrained" if entry["train_acc"] is None else f"train {entry['train_acc']:.2f}%"
                log.info("pretrain: %s seed %d: test %.2f%%, %s, %.0f s", entry["file"], entry["seed"], entry["test_acc"], train, entry["wall_s"])
    else:
        atomic_write_json(_manifest(dataset, config, entries), out_dir / MANIFEST_NAME)  # the pool size may have changed
    return [entries[index] for index in range(config.num_models)]


def _passes(todo: Sequence[int], config: PretrainConfig, device: torch.device) -> list[list[int]]:
    """The models to train, one per pass, or all in one vmapped pass when batching is asked for (or auto on CUDA);
    the manifest is rewritten after each pass, so an interrupted run resumes there."""
    batched = config.model_batching == "batched" or (config.model_batching == "auto" and device.type == "cuda")
    return [list(todo)] if batched and todo else [[index] for index in todo]


# --------------------------------------------------------------------------------------------- loading


class FeaturePool:
    """Frozen pre-trained networks held in memory, one ``nn.Module`` each; ``sample`` picks one uniformly.

    One resident module per model (about 45 MB for ResNet18) makes ``sample`` a list lookup (~2 us on CPU); swapping
    state_dicts into a single module would cost a 45 MB copy per call (~3.6 ms on CPU) and saves memory only when the
    state_dicts live on a cheaper device than the module.
    """

    def __init__(self, models: Sequence[nn.Module], manifest: dict[str, Any], pool_dir: Path) -> None:
        if not models:
            raise PoolError(f"{pool_dir}: the pool holds no models")
        self.models = list(models)
        self.manifest = manifest
        self.pool_dir = pool_dir

    @classmethod
    def load(
        cls,
        pool_dir: str | Path,
        dataset_spec,
        device: torch.device | str,
        *,
        arch: str | None = "ResNet18",
        dataset_sha256: dict[str, str] | None = None,
        allow_partial: bool = False,
    ) -> "FeaturePool":
        """Read ``pool_dir``'s manifest and every listed state_dict once, verifying hashes, dataset and architecture.

        ``arch`` None accepts any architecture; ``dataset_sha256`` (a ``PreparedDataset.sha256``) additionally checks
        that the pool was trained on exactly this data. An unfinished pool is an error unless ``allow_partial``.
        """
        from iid_distill.models import get_network

        pool_dir, device = Path(pool_dir), torch.device(device)
        hint = f"run `iid-distill pretrain --dataset {dataset_spec.name} --out {pool_dir}`"
        if not pool_dir.is_dir():
            raise PoolError(f"feature-network pool {pool_dir} not found; {hint}")
        manifest = _read_manifest(pool_dir)
        if manifest is None:
            raise PoolError(f"{pool_dir}: no {MANIFEST_NAME} (pool not trained or interrupted before its first model); {hint}")
        where = pool_dir / MANIFEST_NAME
        if manifest.get("dataset") != dataset_spec.name:
            raise PoolError(f"{where}: pool trained on {manifest.get('dataset')!r}, not {dataset_spec.name!r}; {hint}")
        geometry = {"channels": dataset_spec.channels, "num_classes": dataset_spec.num_classes, "image_size": dataset_spec.image_size}
        if any(manifest.get(key) != value for key, value in geometry.items()):
            raise PoolError(f"{where}: pool built for {({key: manifest.get(key) for key in geometry})}, the dataset has {geometry}; {hint}")
        if arch is not None and manifest.get("arch") != arch:
            raise PoolError(f"{where}: pool architecture is {manifest.get('arch')!r}, expected {arch!r}; re-train with --arch {arch}")
        if dataset_sha256 is not None and manifest.get("dataset_sha256") != dataset_sha256:
            raise PoolError(f"{where}: pool trained on another copy of {dataset_spec.name} (sha256 differs from the loaded data); {hint}")
        entries = manifest["models"]
        if not entries or (not manifest.get("complete") and not allow_partial):
            raise PoolError(f"{where}: pool is unfinished ({len(entries)} of {manifest.get('num_models')} models); re-run to finish: {hint}")
        arch_kwargs = (manifest.get("config") or {}).get("arch_kwargs") or {}
        models = [cls._load_model(pool_dir, entry, manifest["arch"], arch_kwargs, dataset_spec, device, get_network) for entry in entries]
        return cls(models, manifest, pool_dir)

    @staticmethod
    def _load_model(pool_dir: Path, entry: dict[str, Any], arch: str, arch_kwargs: dict[str, Any], spec, device: torch.device, get_network) -> nn.Module:
        path = pool_dir / str(entry.get("file", ""))
        if not path.is_file():
            raise PoolError(f"{path}: listed in {MANIFEST_NAME} but missing; re-run iid-distill pretrain --dataset {spec.name} --out {pool_dir} to re-train it")
        if sha256_file(path) != entry.get("sha256"):
            raise PoolError(f"{path}: sha256 does not match {MANIFEST_NAME} (corrupt or replaced); re-run iid-distill pretrain --dataset {spec.name} --out {pool_dir} to re-train it")
        state_dict = load_torch_file(path, PoolError, f"unreadable {arch} state_dict")
        if isinstance(state_dict, dict) and not all(torch.isfinite(value).all() for value in state_dict.values() if torch.is_tensor(value)):
            raise PoolError(f"{path}: the network's weights hold NaN or infinite values (its training diverged); re-train the pool")
        net = get_network(arch, spec.channels, spec.num_classes, spec.image_size, **arch_kwargs)
        try:
            net.load_state_dict(state_dict, strict=True)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise PoolError(f"{path}: not a {arch} state_dict for this dataset ({str(error).splitlines()[0]})") from None
        return net.to(device).eval().requires_grad_(False)

    def __len__(self) -> int:
        return len(self.models)

    def sample(self, generator: torch.Generator) -> nn.Module:
        """One model, uniformly at random from ``generator`` (never touches the disk)."""
        index = torch.randint(len(self.models), (1,), generator=generator, device=generator.device)
        return self.models[int(index)]

    def fingerprint(self) -> str:
        """Short hash of the pool's model files, for the provenance of what was distilled with it."""
        digest = hashlib.sha256("|".join(entry["sha256"] for entry in self.manifest["models"]).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for result metadata."""
        accuracies = [entry["test_acc"] for entry in self.manifest["models"]]
        return {
            "pool": self.pool_dir.name,  # the folder's name, never a machine path; the fingerprint identifies the models
            "arch": self.manifest["arch"],
            "num_models": len(self),
            "epochs": self.manifest["config"]["epochs"],
            "fingerprint": self.fingerprint(),
            "mean_test_acc": sum(accuracies) / len(accuracies),
        }
