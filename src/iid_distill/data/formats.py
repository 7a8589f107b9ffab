"""The official file formats (CIFAR, SVHN, MNIST, Tiny ImageNet), image folders, the embedded digits, and the official
layouts.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from iid_distill.data.prepared import Split
from iid_distill.data.specs import (
    DATASETS,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_PER_CLASS,
    DIGIT_CLASS_NAMES,
    DataError,
    DatasetSpec,
    FASHION_CLASS_NAMES,
)
from iid_distill.data.trees import _Tree, _has_folder, _is_image_name, _one_line, _read_checked
from iid_distill.utils import make_generator, progress_bar


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
