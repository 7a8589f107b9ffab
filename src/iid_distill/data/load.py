"""Loading a dataset: the hashed tensor cache, the sources it is prepared from, and the official download."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from iid_distill._torchvision import import_torchvision
from iid_distill.data.formats import OFFICIAL_LAYOUTS, _build_digits, _read_image_folder
from iid_distill.data.prepared import PreparedDataset, Split, dataset_info
from iid_distill.data.specs import (
    CACHE_FORMAT,
    DEFAULT_CACHE_DIR,
    DEFAULT_RAW_DIR,
    DataError,
    DatasetSpec,
    OFFICIAL_MD5,
    TENSOR_KEYS,
    get_spec,
)
from iid_distill.data.trees import (
    _FolderTree,
    _Tree,
    _closest_root,
    _find_image_folder_root,
    _find_root,
    _one_line,
    _open_tree,
    folder_files,
)
from iid_distill.utils import atomic_torch_save, atomic_write_json, load_failure_reason, portable_path, sha256_file, sha256_tensor


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling/IO failure means the file cannot be trusted
        raise DataError(f"cache {path} is unreadable ({load_failure_reason(error, path)}); {fix}") from None
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




def _source_identity(spec: DatasetSpec, source: Path | None, raw_root: Path, checksums: bool | Mapping[str, str]) -> tuple[str, str]:
    """(id used in the cache file name, description recorded in the cache) of a data source.

    Files and folders are identified by the sha256 of their content (the same on every machine).
    """
    if spec.name == "digits":
        return "sklearn", "sklearn.datasets.load_digits (built in)"
    if source is None:
        if checksums is True:  # official files, verified against the published checksums when prepared
            return "official", f"{portable_path(raw_root)} (official layout)"
        if not raw_root.exists():
            raise _not_found_error(spec, raw_root)
        source = raw_root
    if not source.exists():
        raise DataError(f"source {source} does not exist; pass an existing folder or archive for {spec.name}")
    if source.is_dir():
        return f"dir-{_folder_fingerprint(source)}", portable_path(source)
    try:
        return sha256_file(source)[:12], portable_path(source)
    except OSError as error:
        raise DataError(f"cannot read source {source} ({error.strerror or error}); check the file and its permissions") from None


def _folder_fingerprint(root: Path) -> str:
    """Hash of every file's name and content: two folders of equal names and sizes but other pixels, or an image
    edited in place, never share a cache entry."""
    digest = hashlib.sha256()
    for name, path in folder_files(root):
        try:
            digest.update(f"{name}\t{sha256_file(path)}\n".encode())
        except OSError as error:
            raise DataError(f"cannot read {path} ({error.strerror or error}); check the file and its permissions") from None
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
