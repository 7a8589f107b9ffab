"""Datasets: specs, readers for the official on-disk formats and image folders/archives, and a hashed cache.

Every dataset is prepared once into ``<cache_dir>/<name>-<source id>.pt``: uint8 images (N, C, H, W) and int64
labels per split, with the sha256 of each tensor recorded in the file and in a sidecar ``.json`` manifest. Loading
re-hashes the tensors and refuses a cache whose contents do not match its recorded hashes.

Sources (``source=None`` means the official layout under ``<raw_dir>/<name>/``; ``digits`` is built in):

- the official torchvision layouts (CIFAR pickles, SVHN ``.mat``, MNIST idx files), checked against torchvision's
  published md5 checksums, parsed here without torchvision;
- Tiny ImageNet's official layout (``wnids.txt``, ``train/<wnid>/images``, ``val/val_annotations.txt``), as a
  folder or the official zip; its ``val`` split is the test split;
- an image folder ``train/<class>/*.png|jpg`` + ``test/<class>/*`` (or ``val/``), as a folder, ``.zip``,
  ``.tar.gz``/``.tgz`` or ``.tar``, possibly inside one top-level folder.

Archives are read in memory, never extracted; members with absolute paths, ``..`` components or links that point
outside the archive are rejected before any image is decoded.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import posixpath
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from iid_distill._torchvision import import_torchvision
from iid_distill.utils import (
    UserError,
    atomic_torch_save,
    atomic_write_json,
    make_generator,
    progress_bar,
    sha256_file,
    sha256_tensor,
)

CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = "resources/data"
DEFAULT_RAW_DIR = "resources/raw"
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DSA_STRATEGY_NO_FLIP = "color_crop_cutout_scale_rotate"  # digits must not be mirrored
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
DIGITS_TEST_PER_CLASS = 40
DIGITS_SPLIT_SEED = 0


class DataError(UserError):
    """A dataset file, archive, cache or name that cannot be used as given."""


# --------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its classes, image geometry, normalisation and DSA strategy."""

    name: str
    num_classes: int
    channels: int
    image_size: int  # square images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dsa_strategy: str
    train_count: int | None  # official split sizes (informational; local copies may differ)
    test_count: int | None
    title: str = ""  # human-readable name for messages


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), DSA_STRATEGY, 50000, 10000, "CIFAR-10"),
        DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), DSA_STRATEGY, 50000, 10000, "CIFAR-100"),
        DatasetSpec("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), DSA_STRATEGY_NO_FLIP, 73257, 26032, "SVHN"),
        DatasetSpec("tinyimagenet", 200, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), DSA_STRATEGY, 100000, 10000, "Tiny ImageNet"),
        DatasetSpec("mnist", 10, 1, 28, (0.1307,), (0.3081,), DSA_STRATEGY_NO_FLIP, 60000, 10000, "MNIST"),
        DatasetSpec("fashionmnist", 10, 1, 28, (0.2861,), (0.3530,), DSA_STRATEGY, 60000, 10000, "Fashion-MNIST"),
        # mean/std measured on the train split built below (x/255); tests recompute them from the data
        DatasetSpec("digits", 10, 1, 32, (0.3058,), (0.3237,), DSA_STRATEGY_NO_FLIP, 1397, 400, "digits (scikit-learn 8x8, upscaled)"),
    )
}

DIGIT_CLASS_NAMES = [str(digit) for digit in range(10)]
FASHION_CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# torchvision's published md5 checksums of the official files (Tiny ImageNet: the cs231n zip)
OFFICIAL_MD5: dict[str, dict[str, str]] = {
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
    # torchvision publishes checksums of the .gz files only; uncompressed idx files are checked by their headers
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashionmnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "tinyimagenet": {"tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de"},
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (case-insensitive)."""
    spec = DATASETS.get(str(name).strip().lower())
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return spec


# ------------------------------------------------------------------------------------ in-memory data


@dataclass
class Split:
    """One split: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_indices(self, num_classes: int) -> list[torch.Tensor]:
        """Per class, the indices of its samples in ascending order."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=num_classes)
        if counts.numel() > num_classes:
            raise ValueError(f"labels go up to {counts.numel() - 1}, more than num_classes={num_classes}")
        return list(torch.split(order, counts.tolist()))


@dataclass
class PreparedDataset:
    """A prepared dataset as loaded from its cache."""

    spec: DatasetSpec
    train: Split
    test: Split
    class_names: list[str]
    sha256: dict[str, str]  # sha256_tensor of each of TENSOR_KEYS
    source: str  # where the data came from (path or description)
    cache_path: Path | None = None

    @functools.cached_property
    def train_class_indices(self) -> list[torch.Tensor]:
        return self.train.class_indices(self.spec.num_classes)


def normalize(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 images (..., C, H, W) -> float32 ``(x/255 - mean) / std`` per channel."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    mean, std = _channel_stats(spec, images.device, torch.float32)
    return (images.to(torch.float32) / 255.0 - mean) / std


def denormalize(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Normalised images (..., C, H, W) -> values in [0, 1] (clamped)."""
    mean, std = _channel_stats(spec, images.device, images.dtype)
    return (images * std + mean).clamp(0.0, 1.0)


def _channel_stats(spec: DatasetSpec, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(spec.mean, device=device, dtype=dtype).view(-1, 1, 1)
    std = torch.tensor(spec.std, device=device, dtype=dtype).view(-1, 1, 1)
    return mean, std


def dataset_info(ds: PreparedDataset) -> dict[str, Any]:
    """JSON-serialisable summary: per split the image count, per-class counts, tensor shape and sha256."""
    spec = ds.spec

    def split_info(split: Split, key: str, expected: int | None) -> dict[str, Any]:
        counts = torch.bincount(split.labels, minlength=spec.num_classes).tolist()
        return {
            "images": len(split),
            "official_images": expected,
            "shape": list(split.images.shape),
            "per_class": dict(zip(ds.class_names, counts)),
            "sha256": {"images": ds.sha256[f"{key}_images"], "labels": ds.sha256[f"{key}_labels"]},
        }

    return {
        "name": spec.name,
        "title": spec.title,
        "source": ds.source,
        "cache_path": str(ds.cache_path) if ds.cache_path is not None else None,
        "num_classes": spec.num_classes,
        "channels": spec.channels,
        "image_size": spec.image_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "dsa_strategy": spec.dsa_strategy,
        "train": split_info(ds.train, "train", spec.train_count),
        "test": split_info(ds.test, "test", spec.test_count),
    }


# ------------------------------------------------------------------------------------------ public API


def load_dataset(
    name: str,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    download: bool = False,
    force: bool = False,
    *,
    raw_dir: str | os.PathLike = DEFAULT_RAW_DIR,
    checksums: bool | Mapping[str, str] = True,
) -> PreparedDataset:
    """Load dataset ``name`` from its cache, preparing the cache first if it does not exist (or ``force``)."""
    spec = get_spec(name)
    path = prepare_dataset(spec.name, source, cache_dir, download, force, raw_dir=raw_dir, checksums=checksums)
    return _read_cache(path, spec)


def prepare_dataset(
    name: str,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    download: bool = False,
    force: bool = False,
    *,
    raw_dir: str | os.PathLike = DEFAULT_RAW_DIR,
    checksums: bool | Mapping[str, str] = True,
) -> Path:
    """Read ``source`` once into ``<cache_dir>/<name>-<source id>.pt`` (+ ``.json`` manifest); return that path.

    ``checksums``: True checks official files against torchvision's md5s, False checks nothing, a mapping
    ``{file name: md5}`` replaces the official table. ``download`` fetches missing official files via torchvision.
    """
    spec = get_spec(name)
    if source is not None and spec.name == "digits":
        raise DataError("digits is built in (scikit-learn's load_digits); do not pass a source for it")
    if download and source is not None:
        raise DataError(f"download applies to the official files under {raw_dir}/{spec.name}; drop it when passing a source ({source})")
    raw_root = Path(raw_dir) / spec.name
    if download and spec.name != "digits":
        _download_official(spec, raw_root)
    source_path = Path(source).expanduser() if source is not None else None
    source_id, source_text = _source_identity(spec, source_path, raw_root, checksums)
    path = Path(cache_dir) / f"{spec.name}-{source_id}.pt"
    if path.exists() and not force:
        return path
    class_names, train, test = _read_source(spec, source_path, raw_root, checksums)
    _write_cache(path, spec, class_names, train, test, source_text, source_id)
    return path


# --------------------------------------------------------------------------------------------- cache


def _write_cache(path: Path, spec: DatasetSpec, class_names: list[str], train: Split, test: Split, source_text: str, source_id: str) -> None:
    tensors = {"train_images": train.images, "train_labels": train.labels, "test_images": test.images, "test_labels": test.labels}
    hashes = {key: sha256_tensor(tensor) for key, tensor in tensors.items()}
    payload = {
        "format": CACHE_FORMAT,
        "name": spec.name,
        "source": source_text,
        "source_id": source_id,
        "class_names": list(class_names),
        "tensors": tensors,
        "sha256": hashes,
    }
    atomic_torch_save(payload, path)
    prepared = PreparedDataset(spec, train, test, list(class_names), hashes, source_text, path)
    manifest = {"cache_format": CACHE_FORMAT, "cache_file": path.name, "source_id": source_id, **dataset_info(prepared)}
    del manifest["cache_path"]  # the manifest sits beside the cache; an absolute path would tie it to one machine
    atomic_write_json(manifest, path.with_suffix(".json"))


def _read_cache(path: Path, spec: DatasetSpec) -> PreparedDataset:
    """Load a cache file and check its structure and recorded sha256 values; any mismatch is an error."""
    fix = "delete it or re-prepare with --force (force=True)"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling/IO failure means the file cannot be trusted
        raise DataError(f"cache {path} is unreadable ({_one_line(error)}); {fix}") from error
    tensors = payload.get("tensors") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT or not isinstance(tensors, dict):
        raise DataError(f"cache {path} is not a format-{CACHE_FORMAT} iid-distill dataset cache; {fix}")
    if payload.get("name") != spec.name:
        raise DataError(f"cache {path} holds dataset {payload.get('name')!r}, not {spec.name!r}; {fix}")
    recorded = payload.get("sha256") or {}
    for key in TENSOR_KEYS:
        tensor = tensors.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise DataError(f"cache {path} lacks tensor {key!r}; {fix}")
        if sha256_tensor(tensor) != recorded.get(key):
            raise DataError(f"cache {path}: {key} does not match its recorded sha256 (corrupt or modified file); {fix}")
    class_names = [str(name) for name in payload.get("class_names", [])]
    train = Split(tensors["train_images"], tensors["train_labels"])
    test = Split(tensors["test_images"], tensors["test_labels"])
    try:
        _check_prepared(spec, class_names, train, test, str(path))
    except DataError as error:
        raise DataError(f"{error}; {fix}") from error
    return PreparedDataset(spec, train, test, class_names, {key: recorded[key] for key in TENSOR_KEYS}, str(payload.get("source", "")), path)


def _check_prepared(spec: DatasetSpec, class_names: Sequence[str], train: Split, test: Split, where: str) -> None:
    """Check what every reader produces against the spec: dtypes, image geometry, class count, labels."""
    expected = (spec.channels, spec.image_size, spec.image_size)
    if len(class_names) != spec.num_classes:
        raise DataError(f"{where} has {len(class_names)} classes but {spec.name} has {spec.num_classes}; pass the {spec.title} data or the matching dataset name")
    for split_name, split in (("train", train), ("test", test)):
        if split.images.dtype != torch.uint8 or split.labels.dtype != torch.int64:
            raise DataError(f"{where}: {split_name} images/labels are {split.images.dtype}/{split.labels.dtype}, expected uint8/int64")
        if split.images.dim() != 4 or tuple(split.images.shape[1:]) != expected:
            raise DataError(f"{where}: {split_name} images have shape {tuple(split.images.shape[1:])}, expected {expected} (channels, height, width) for {spec.name}")
        if split.labels.shape != (split.images.shape[0],):
            raise DataError(f"{where}: {split_name} has {split.images.shape[0]} images but {tuple(split.labels.shape)} labels")
        if len(split) == 0:
            raise DataError(f"{where}: the {split_name} split is empty")
        if int(split.labels.min()) < 0 or int(split.labels.max()) >= spec.num_classes:
            raise DataError(f"{where}: {split_name} labels span {int(split.labels.min())}..{int(split.labels.max())}, outside 0..{spec.num_classes - 1} for {spec.num_classes} classes")
    missing = (torch.bincount(train.labels, minlength=spec.num_classes) == 0).nonzero().flatten().tolist()
    if missing:
        names = ", ".join(class_names[index] for index in missing[:5])
        raise DataError(f"{where}: {len(missing)} of {spec.num_classes} classes have no train images ({names}{', ...' if len(missing) > 5 else ''})")


# -------------------------------------------------------------------------------------------- sources


def _source_identity(spec: DatasetSpec, source: Path | None, raw_root: Path, checksums: bool | Mapping[str, str]) -> tuple[str, str]:
    """(id used in the cache file name, description recorded in the cache) of a data source.

    Files are identified by their sha256 (the same on every machine), folders by their file names and sizes.
    """
    if spec.name == "digits":
        return "sklearn", "sklearn.datasets.load_digits (built in)"
    if source is None:
        if checksums is True:  # official files, verified against the published checksums when prepared
            return "official", f"{raw_root} (official layout)"
        if not raw_root.exists():
            raise _not_found_error(spec, raw_root)
        source = raw_root
    if not source.exists():
        raise DataError(f"source {source} does not exist; pass an existing folder or archive for {spec.name}")
    if source.is_dir():
        return f"dir-{_folder_fingerprint(source)}", str(source)
    try:
        return sha256_file(source)[:12], str(source)
    except OSError as error:
        raise DataError(f"cannot read source {source} ({error.strerror or error}); check the file and its permissions") from None


def _folder_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(root, onerror=_walk_error):
        subdirs.sort()
        for name in sorted(files):
            file = Path(directory, name)
            digest.update(f"{file.relative_to(root).as_posix()}\t{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def _checksum_table(spec: DatasetSpec, checksums: bool | Mapping[str, str]) -> dict[str, str]:
    if checksums is True:
        return OFFICIAL_MD5.get(spec.name, {})
    if checksums is False or checksums is None:
        return {}
    return dict(checksums)


def _read_source(spec: DatasetSpec, source: Path | None, raw_root: Path, checksums: bool | Mapping[str, str]) -> tuple[list[str], Split, Split]:
    if spec.name == "digits":
        class_names, train, test = _build_digits()
        _check_prepared(spec, class_names, train, test, "sklearn digits")
        return class_names, train, test
    md5_table = _checksum_table(spec, checksums)
    path = raw_root if source is None else source
    if source is None and not raw_root.is_dir():
        raise _not_found_error(spec, raw_root)
    with _open_tree(path, md5_table) as tree:
        class_names, train, test = _read_tree(spec, tree, md5_table, official_default=source is None)
    _check_prepared(spec, class_names, train, test, str(path))
    return class_names, train, test


def _read_tree(spec: DatasetSpec, tree: _Tree, md5_table: dict[str, str], official_default: bool) -> tuple[list[str], Split, Split]:
    """Read ``tree`` in the dataset's official layout, else as an image folder, else the official archive inside it."""
    layout = OFFICIAL_LAYOUTS.get(spec.name)
    if layout is not None:
        prefix = _find_root(tree.files, layout.markers, layout.subfolders)
        if prefix is not None:
            return layout.read(spec, tree, prefix, md5_table)
    prefix = None if official_default else _find_image_folder_root(tree.files)  # the raw dir holds official files only
    if prefix is not None:
        return _read_image_folder(spec, tree, prefix)
    if layout is not None and layout.archive and layout.archive in tree.files and isinstance(tree, _FolderTree):
        with _open_tree(tree.root / layout.archive, md5_table) as inner:
            return _read_tree(spec, inner, md5_table, official_default)
    if layout is not None:
        prefix, missing = _closest_root(tree.files, layout.markers, layout.subfolders)
        if missing is not None:
            raise DataError(
                f"{tree.describe(prefix.rstrip('/'))} is missing {', '.join(missing)}: put the official {spec.title} files there "
                f"(from {layout.url}){_download_hint(spec, official_default)}"
            )
    if official_default:
        raise _not_found_error(spec, Path(tree.location))
    expected = f"{layout.how} or " if layout is not None else ""
    raise DataError(f"no {spec.title} data found in {tree.location}: expected {expected}an image folder train/<class>/*.png|jpg and test/<class>/* (or val/)")


def _download_hint(spec: DatasetSpec, official_default: bool) -> str:
    return f", or run `iid-distill data prepare {spec.name} --download`" if official_default else ""


def _not_found_error(spec: DatasetSpec, raw_root: Path) -> DataError:
    layout = OFFICIAL_LAYOUTS[spec.name]
    return DataError(
        f"{spec.title} not found in {raw_root}: put {layout.how} there (from {layout.url}), "
        f"or run `iid-distill data prepare {spec.name} --download`, or pass --source PATH (image folder or archive)"
    )


def _download_official(spec: DatasetSpec, raw_root: Path) -> None:
    """Fetch the official files into ``raw_root`` with torchvision, unless they are already there."""
    layout = OFFICIAL_LAYOUTS[spec.name]
    if raw_root.is_dir():
        with _FolderTree(raw_root) as tree:
            if _find_root(tree.files, layout.markers, layout.subfolders) is not None or (layout.archive and layout.archive in tree.files):
                return
    root = str(raw_root)
    try:
        datasets = import_torchvision().datasets
        if spec.name == "cifar10":
            datasets.CIFAR10(root, train=True, download=True)
        elif spec.name == "cifar100":
            datasets.CIFAR100(root, train=True, download=True)
        elif spec.name == "svhn":
            datasets.SVHN(root, split="train", download=True)
            datasets.SVHN(root, split="test", download=True)
        elif spec.name == "mnist":
            datasets.MNIST(root, train=True, download=True)
        elif spec.name == "fashionmnist":
            datasets.FashionMNIST(root, train=True, download=True)
        elif spec.name == "tinyimagenet":
            datasets.utils.download_url(layout.url, root, layout.archive, OFFICIAL_MD5["tinyimagenet"][layout.archive])
    except Exception as error:  # network, HTTP, integrity: all mean "get the files another way"
        raise DataError(
            f"could not download {spec.title} into {raw_root} ({_one_line(error)}); download {layout.url} yourself and put {layout.how} in {raw_root}"
        ) from error


# ------------------------------------------------------------------------------- file trees (read-only)


class _Tree:
    """Read-only view of a folder or an archive: regular files keyed by relative POSIX path."""

    location: str
    files: frozenset[str]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        return f"{self.location}:{name}" if name else self.location

    def close(self) -> None:
        pass

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FolderTree(_Tree):
    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)
        names = []
        for directory, subdirs, files in os.walk(root, onerror=_walk_error):
            subdirs.sort()
            relative = Path(directory).relative_to(root)
            names.extend((relative / name).as_posix() for name in files)
        self.files = frozenset(names)

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read {self.root / name} ({_one_line(error)}); check the file and its permissions") from error

    def describe(self, name: str) -> str:
        return str(self.root / name) if name else self.location


class _ZipTree(_Tree):
    def __init__(self, path: Path):
        self.location = str(path)
        self._zip = zipfile.ZipFile(path)
        try:
            self._index()
        except BaseException:
            self._zip.close()
            raise

    def _index(self) -> None:
        self._members: dict[str, str] = {}  # file name -> member name holding its bytes (links resolved)
        links = {}
        path = Path(self.location)
        for info in self._zip.infolist():
            name = _safe_member_name(info.filename, path)
            if name is None or info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                links[name] = _safe_link_target(name, self._zip.read(info).decode("utf-8", "replace"), path, symbolic=True)
            else:
                self._members[name] = info.filename
        for name, target in links.items():
            if target in self._members:
                self._members[name] = self._members[target]
        self.files = frozenset(self._members)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._members[name])
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DataError(f"cannot read {self.describe(name)} ({_one_line(error)}): the archive is corrupt; re-download it") from error

    def close(self) -> None:
        self._zip.close()


class _TarTree(_Tree):
    """A tar archive read whole into memory (gzip cannot seek, so one pass is the fast way), checked for completeness."""

    def __init__(self, path: Path):
        self.location = str(path)
        self._data: dict[str, bytes] = {}
        archive_bytes = path.read_bytes()
        if archive_bytes[:2] == b"\x1f\x8b":
            archive_bytes = gzip.decompress(archive_bytes)  # checks the stream's CRC and length
        links = {}
        with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:") as archive:
            for member in archive:
                name = _safe_member_name(member.name, path)
                if name is None or member.isdir():
                    continue
                if member.issym() or member.islnk():
                    links[name] = _safe_link_target(name, member.linkname, path, symbolic=member.issym())
                elif member.isfile():
                    self._data[name] = archive.extractfile(member).read()
                else:
                    raise DataError(f"unsafe archive {path}: member {member.name!r} is a device or fifo; re-create the archive with regular files only")
            end = archive.offset  # where reading stopped: a whole archive has two zero blocks here
        if len(archive_bytes) < end + 2 * tarfile.BLOCKSIZE or any(archive_bytes[end:end + 2 * tarfile.BLOCKSIZE]):
            raise DataError(f"cannot read archive {path}: it stops without the end-of-archive marker after {len(self._data)} files "
                            "(truncated or damaged); re-create or re-download it")
        for name, target in links.items():
            if target in self._data:
                self._data[name] = self._data[target]
        self.files = frozenset(self._data)

    def read(self, name: str) -> bytes:
        return self._data[name]


def _walk_error(error: OSError) -> None:
    """``os.walk`` skips folders it cannot list; a skipped class folder would silently drop its images."""
    raise DataError(f"cannot list folder {error.filename} ({error.strerror}); fix its permissions: no image may be left out")


def _open_tree(path: Path, md5_table: dict[str, str]) -> _Tree:
    """A tree for a folder, .zip, .tar, .tar.gz or .tgz; archives listed in ``md5_table`` are checked first."""
    if path.is_dir():
        return _FolderTree(path)
    if not path.is_file():
        raise DataError(f"source {path} does not exist; pass an existing folder or archive")
    lower = path.name.lower()
    if not lower.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        raise DataError(f"unsupported source {path}: expected a folder, .zip, .tar, .tar.gz or .tgz")
    if path.name in md5_table:
        _check_md5(_md5_file(path), md5_table[path.name], str(path))
    try:
        return _ZipTree(path) if lower.endswith(".zip") else _TarTree(path)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:  # BadGzipFile is an OSError
        raise DataError(f"cannot read archive {path} ({_one_line(error)}): it is corrupt or truncated; re-create or re-download it") from error


def _safe_member_name(name: str, archive: Path) -> str | None:
    """The normalised relative name of an archive member; None for the root itself; unsafe names are errors."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise DataError(f"unsafe archive {archive}: member {name!r} has an absolute path; refusing to read it (re-create the archive with relative paths)")
    clean = posixpath.normpath(clean)
    if clean == ".." or clean.startswith("../"):
        raise DataError(f"unsafe archive {archive}: member {name!r} escapes the archive root; refusing to read it (re-create the archive without '..')")
    return None if clean == "." else clean


def _safe_link_target(name: str, target: str, archive: Path, symbolic: bool) -> str:
    """Archive-relative target of a link member; links pointing outside the archive are errors."""
    clean = target.replace("\\", "/")
    # symlinks resolve relative to their folder, tar hard links relative to the archive root
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), clean) if symbolic else clean)
    if clean.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise DataError(f"unsafe archive {archive}: link {name!r} points outside the archive ({target!r}); refusing to read it")
    return resolved


def _top_prefixes(files: frozenset[str]) -> list[str]:
    """Candidate roots: the tree root, plus its single top-level folder when everything lies inside one."""
    tops = {name.split("/", 1)[0] for name in files if "/" in name}
    if len(tops) == 1 and all("/" in name for name in files):
        return ["", f"{tops.pop()}/"]
    return [""]


def _find_root(files: frozenset[str], markers: Sequence[tuple[str, ...]], subfolders: Sequence[str]) -> str | None:
    """First prefix under which every marker file exists (a marker lists accepted alternative names)."""
    for top in _top_prefixes(files):
        for sub in subfolders:
            prefix = top + sub
            if all(any(prefix + name in files for name in alternatives) for alternatives in markers):
                return prefix
    return None


def _closest_root(files: frozenset[str], markers: Sequence[tuple[str, ...]], subfolders: Sequence[str]) -> tuple[str, list[str] | None]:
    """The candidate prefix holding some but not all markers (the most), with the missing ones; (\"\", None) if none."""
    best: tuple[str, list[str] | None] = ("", None)
    for top in _top_prefixes(files):
        for sub in subfolders:
            missing = [alternatives[0] for alternatives in markers if not any(top + sub + name in files for name in alternatives)]
            if len(missing) < len(markers) and (best[1] is None or len(missing) < len(best[1])):
                best = (top + sub, missing)
    return best


def _find_image_folder_root(files: frozenset[str]) -> str | None:
    for top in _top_prefixes(files):
        if _has_folder(files, top + "train/") and (_has_folder(files, top + "test/") or _has_folder(files, top + "val/")):
            return top
    return None


def _has_folder(files: frozenset[str], prefix: str) -> bool:
    return any(name.startswith(prefix) for name in files)


def _is_image_name(name: str) -> bool:
    """An image file by extension, not hidden (e.g. macOS ``._*`` resource files in archives)."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not any(part.startswith(".") for part in name.split("/"))


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(actual: str, expected: str, where: str) -> None:
    if actual != expected:
        raise DataError(
            f"{where}: md5 {actual} does not match the official {expected}; the file is corrupt or not the official release: "
            f"re-download it, pass the right file, or disable checksums if it is a deliberate local copy"
        )


def _read_checked(tree: _Tree, name: str, md5_table: dict[str, str]) -> bytes:
    data = tree.read(name)
    base = posixpath.basename(name)
    if base in md5_table:
        _check_md5(hashlib.md5(data).hexdigest(), md5_table[base], tree.describe(name))
    return data


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# ------------------------------------------------------------------------------------ official formats


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow only the numpy array classes they contain, never arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 2 renamed it; avoids a deprecation warning
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _unpickle_batch(data: bytes, where: str) -> dict[str, Any]:
    try:
        loaded = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # any failure to unpickle means a corrupt or foreign file
        raise DataError(f"cannot read {where} ({_one_line(error)}): not a CIFAR python batch; re-download it") from error
    if not isinstance(loaded, dict):
        raise DataError(f"cannot read {where}: expected a pickled dict (CIFAR python batch), got {type(loaded).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _batch_field(batch: dict[str, Any], key: str, where: str) -> Any:
    if key not in batch:
        raise DataError(f"{where} has no {key!r} entry; it is not an official CIFAR python batch")
    return batch[key]


def _read_cifar_batches(tree: _Tree, prefix: str, names: Sequence[str], label_key: str, md5_table: dict[str, str]) -> Split:
    images, labels = [], []
    for name in names:
        where = tree.describe(prefix + name)
        batch = _unpickle_batch(_read_checked(tree, prefix + name, md5_table), where)
        data = np.asarray(_batch_field(batch, "data", where))
        batch_labels = np.asarray(_batch_field(batch, label_key, where), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072) rows of 32x32 RGB images")
        if batch_labels.shape != (data.shape[0],):
            raise DataError(f"{where}: {data.shape[0]} images but {batch_labels.shape[0]} {label_key!r}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _read_cifar_names(tree: _Tree, name: str, key: str, md5_table: dict[str, str]) -> list[str]:
    where = tree.describe(name)
    meta = _unpickle_batch(_read_checked(tree, name, md5_table), where)
    return [value.decode() if isinstance(value, bytes) else str(value) for value in _batch_field(meta, key, where)]


def _read_cifar10(spec: DatasetSpec, tree: _Tree, prefix: str, md5_table: dict[str, str]) -> tuple[list[str], Split, Split]:
    class_names = _read_cifar_names(tree, prefix + "batches.meta", "label_names", md5_table)
    train = _read_cifar_batches(tree, prefix, [f"data_batch_{index}" for index in range(1, 6)], "labels", md5_table)
    test = _read_cifar_batches(tree, prefix, ["test_batch"], "labels", md5_table)
    return class_names, train, test


def _read_cifar100(spec: DatasetSpec, tree: _Tree, prefix: str, md5_table: dict[str, str]) -> tuple[list[str], Split, Split]:
    class_names = _read_cifar_names(tree, prefix + "meta", "fine_label_names", md5_table)
    train = _read_cifar_batches(tree, prefix, ["train"], "fine_labels", md5_table)
    test = _read_cifar_batches(tree, prefix, ["test"], "fine_labels", md5_table)
    return class_names, train, test


def _read_svhn_split(tree: _Tree, name: str, md5_table: dict[str, str]) -> Split:
    from scipy.io import loadmat  # scipy is only needed for SVHN

    where = tree.describe(name)
    try:
        mat = loadmat(io.BytesIO(_read_checked(tree, name, md5_table)))
    except DataError:
        raise
    except Exception as error:  # scipy raises several unrelated types for a broken .mat
        raise DataError(f"cannot read {where} ({_one_line(error)}): not a MATLAB file; re-download it") from error
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{where} lacks the 'X'/'y' arrays of the official SVHN format; re-download it")
    images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{where}: 'X' is {images.dtype} {images.shape}, expected uint8 (32, 32, 3, N)")
    if labels.shape != (images.shape[3],):
        raise DataError(f"{where}: {images.shape[3]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{where}: labels span {labels.min()}..{labels.max()}, expected 1..10 (10 = digit 0) for 10 classes")
    labels = np.where(labels == 10, 0, labels)  # the official files label digit 0 as 10
    return Split(torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))), torch.from_numpy(labels))


def _read_svhn(spec: DatasetSpec, tree: _Tree, prefix: str, md5_table: dict[str, str]) -> tuple[list[str], Split, Split]:
    return list(DIGIT_CLASS_NAMES), _read_svhn_split(tree, prefix + "train_32x32.mat", md5_table), _read_svhn_split(tree, prefix + "test_32x32.mat", md5_table)


def _parse_idx(data: bytes, where: str, ndim: int) -> np.ndarray:
    """An unsigned-byte idx array (MNIST format): magic 0x0000 08 <ndim>, big-endian int32 sizes, then the bytes."""
    if len(data) < 4 + 4 * ndim or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
        raise DataError(f"{where} is not an unsigned-byte idx file with {ndim} dimension(s); re-download it")
    shape = tuple(int.from_bytes(data[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{where}: header says {shape} but holds {body.size} bytes (truncated or corrupt); re-download it")
    return body.reshape(shape)


def _read_idx_file(tree: _Tree, prefix: str, base: str, md5_table: dict[str, str], ndim: int) -> np.ndarray:
    name = prefix + base + ".gz" if prefix + base + ".gz" in tree.files else prefix + base
    data = _read_checked(tree, name, md5_table)
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"cannot decompress {tree.describe(name)} ({_one_line(error)}); re-download it") from error
    return _parse_idx(data, tree.describe(name), ndim)


def _read_idx_split(spec: DatasetSpec, tree: _Tree, prefix: str, stem: str, md5_table: dict[str, str]) -> Split:
    images = _read_idx_file(tree, prefix, f"{stem}-images-idx3-ubyte", md5_table, 3)
    labels = _read_idx_file(tree, prefix, f"{stem}-labels-idx1-ubyte", md5_table, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{tree.describe(prefix + stem)}-*: {images.shape[0]} images but {labels.shape[0]} labels")
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _read_mnist(spec: DatasetSpec, tree: _Tree, prefix: str, md5_table: dict[str, str]) -> tuple[list[str], Split, Split]:
    class_names = FASHION_CLASS_NAMES if spec.name == "fashionmnist" else DIGIT_CLASS_NAMES
    return list(class_names), _read_idx_split(spec, tree, prefix, "train", md5_table), _read_idx_split(spec, tree, prefix, "t10k", md5_table)


def _read_tiny_imagenet(spec: DatasetSpec, tree: _Tree, prefix: str, md5_table: dict[str, str]) -> tuple[list[str], Split, Split]:
    """Official Tiny ImageNet: classes = sorted wnids (as ImageFolder on train/ orders them); val is the test split."""
    wnids = tree.read(prefix + "wnids.txt").decode("utf-8", "replace").split()
    class_names = sorted(set(wnids))
    if len(class_names) != spec.num_classes:
        raise DataError(f"{tree.describe(prefix + 'wnids.txt')} lists {len(class_names)} classes but {spec.name} has {spec.num_classes}; pass the official Tiny ImageNet files")
    class_index = {wnid: index for index, wnid in enumerate(class_names)}
    train_files = []
    for name in tree.files:
        if name.startswith(prefix + "train/") and _is_image_name(name):
            wnid = name[len(prefix + "train/") :].split("/", 1)[0]
            if wnid not in class_index:
                raise DataError(f"{tree.describe(name)}: class folder {wnid!r} is not listed in wnids.txt")
            train_files.append((class_index[wnid], name))
    train_files.sort()
    test_files = []
    annotations = tree.read(prefix + "val/val_annotations.txt").decode("utf-8", "replace")
    for line_number, line in enumerate(annotations.splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in class_index:
            raise DataError(f"{tree.describe(prefix + 'val/val_annotations.txt')} line {line_number}: expected '<file>\\t<wnid from wnids.txt>', got {line[:60]!r}")
        name = prefix + "val/images/" + fields[0]
        if name not in tree.files:
            raise DataError(f"{tree.describe(name)} is listed in val_annotations.txt but missing; re-extract or re-download the dataset")
        test_files.append((class_index[fields[1]], name))
    return class_names, _decode_split(spec, tree, train_files), _decode_split(spec, tree, test_files)


# ----------------------------------------------------------------------------------------- image folder


def _read_image_folder(spec: DatasetSpec, tree: _Tree, prefix: str) -> tuple[list[str], Split, Split]:
    """``train/<class>/**`` and ``test/<class>/**`` (or ``val``): classes in sorted folder-name order, files sorted."""
    test_name = "test" if _has_folder(tree.files, prefix + "test/") else "val"
    grouped = {split: _group_by_class(tree, prefix + split + "/") for split in ("train", test_name)}
    class_names = sorted(grouped["train"])
    if len(class_names) != spec.num_classes:
        raise DataError(f"{tree.describe(prefix + 'train')} has {len(class_names)} class folders but {spec.name} has {spec.num_classes} classes; pass a folder with one sub-folder per class")
    if set(grouped[test_name]) != set(class_names):
        extra = sorted(set(grouped[test_name]) ^ set(class_names))
        raise DataError(f"{tree.describe(prefix + test_name)} class folders differ from train/ ({', '.join(extra[:5])}); use the same class folders in both splits")
    class_index = {name: index for index, name in enumerate(class_names)}
    splits = []
    for split in ("train", test_name):
        # sort by (class index, path): sorting paths alone would misorder e.g. "cat-a/" before "cat/"
        files = sorted((class_index[name], path) for name, paths in grouped[split].items() for path in paths)
        splits.append(_decode_split(spec, tree, files))
    return class_names, splits[0], splits[1]


def _group_by_class(tree: _Tree, split_prefix: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name in tree.files:
        if name.startswith(split_prefix) and _is_image_name(name):
            relative = name[len(split_prefix) :]
            if "/" not in relative:
                raise DataError(f"{tree.describe(name)} is not inside a class folder; put each image in {split_prefix}<class>/")
            grouped.setdefault(relative.split("/", 1)[0], []).append(name)
    return grouped


def _decode_split(spec: DatasetSpec, tree: _Tree, files: Sequence[tuple[int, str]]) -> Split:
    """Decode (label, file name) pairs into a Split, checking each image's size and channels against the spec."""

    size = spec.image_size
    images = np.empty((len(files), size, size, spec.channels), dtype=np.uint8)
    progress = progress_bar(files, enabled=len(files) >= 1000, desc=f"decoding {spec.name} images", unit="img", leave=False)
    for position, (_, name) in enumerate(progress):
        pixels = _decode_image(tree.read(name), spec, tree.describe(name))
        images[position] = pixels.reshape(size, size, spec.channels)
    labels = torch.tensor([label for label, _ in files], dtype=torch.int64)
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)


def _decode_image(data: bytes, spec: DatasetSpec, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.size != (spec.image_size, spec.image_size):
                raise DataError(f"{where} is {image.size[0]}x{image.size[1]}, expected {spec.image_size}x{spec.image_size} for {spec.name}; resize the images first")
            if spec.channels == 1:
                if image.mode not in ("L", "1"):
                    raise DataError(f"{where} has mode {image.mode}, expected a grayscale (L) image for {spec.name}")
                return np.asarray(image.convert("L"))
            if image.mode in ("RGBA", "RGBa", "LA", "La", "PA", "I", "I;16", "F"):
                raise DataError(f"{where} has mode {image.mode}, expected an RGB (or grayscale) image without alpha for {spec.name}")
            # grayscale images (a few in Tiny ImageNet) become 3 equal channels, as torchvision's loaders do
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {where} ({_one_line(error)}): corrupt or not an image; replace or remove it") from error


# ---------------------------------------------------------------------------------------------- digits


def digits_split_indices(labels: torch.Tensor, num_classes: int = 10, test_per_class: int = DIGITS_TEST_PER_CLASS, seed: int = DIGITS_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified split: a seeded permutation, grouped by class; each class's first ``test_per_class`` go to test.

    Returns (train indices, test indices), each ascending.
    """
    permutation = torch.randperm(len(labels), generator=make_generator(seed))
    by_class = permutation[torch.argsort(labels[permutation], stable=True)]  # class-grouped, random order within a class
    counts = torch.bincount(labels, minlength=num_classes)
    class_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(len(labels)) - class_start[labels[by_class]]
    is_test = rank_in_class < test_per_class
    return torch.sort(by_class[~is_test]).values, torch.sort(by_class[is_test]).values


def _build_digits() -> tuple[list[str], Split, Split]:
    """scikit-learn's 8x8 digits (values 0..16) scaled to 0..255, bilinearly resized to 32x32, as uint8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images).to(torch.float32).unsqueeze(1) * (255.0 / 16.0)
    size = DATASETS["digits"].image_size
    resized = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    images = resized.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    train_index, test_index = digits_split_indices(labels)
    return list(DIGIT_CLASS_NAMES), Split(images[train_index], labels[train_index]), Split(images[test_index], labels[test_index])


# ----------------------------------------------------------------------------------- official layouts


@dataclass(frozen=True)
class _OfficialLayout:
    """Where a dataset's official files live and how to read them."""

    markers: tuple[tuple[str, ...], ...]  # files that must exist; each entry lists accepted alternative names
    subfolders: tuple[str, ...]  # prefixes below the raw dir (torchvision's folder names)
    read: Callable[[DatasetSpec, _Tree, str, dict[str, str]], tuple[list[str], Split, Split]]
    url: str
    how: str  # what to place in the raw dir, for messages
    archive: str | None = None  # official archive, read directly when it was not extracted


def _idx_markers() -> tuple[tuple[str, ...], ...]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple((f"{stem}.gz", stem) for stem in stems)


OFFICIAL_LAYOUTS: dict[str, _OfficialLayout] = {
    "cifar10": _OfficialLayout(
        tuple((name,) for name in [*(f"data_batch_{index}" for index in range(1, 6)), "test_batch", "batches.meta"]),
        ("", "cifar-10-batches-py/"),
        _read_cifar10,
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) or cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": _OfficialLayout(
        (("train",), ("test",), ("meta",)),
        ("", "cifar-100-python/"),
        _read_cifar100,
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python/ (train, test, meta) or cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
    ),
    "svhn": _OfficialLayout(
        (("train_32x32.mat",), ("test_32x32.mat",)),
        ("",),
        _read_svhn,
        "http://ufldl.stanford.edu/housenumbers/",
        "train_32x32.mat and test_32x32.mat",
    ),
    "mnist": _OfficialLayout(
        _idx_markers(),
        ("", "MNIST/raw/"),
        _read_mnist,
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "the idx files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (.gz or not)",
    ),
    "fashionmnist": _OfficialLayout(
        _idx_markers(),
        ("", "FashionMNIST/raw/"),
        _read_mnist,
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "the idx files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (.gz or not)",
    ),
    "tinyimagenet": _OfficialLayout(
        (("wnids.txt",), ("val/val_annotations.txt",)),
        ("", "tiny-imagenet-200/"),
        _read_tiny_imagenet,
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "tiny-imagenet-200.zip or its extracted tiny-imagenet-200/ folder",
        "tiny-imagenet-200.zip",
    ),
}
