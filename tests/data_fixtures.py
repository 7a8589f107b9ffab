"""Writers of small datasets in the official on-disk formats, for tests of ``iid_distill.data``.

Each writer returns the expected content as a ``Fixture`` (uint8 images (N, C, H, W), int64 labels, class names),
so tests can compare what the loader reads with what was written.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


@dataclass
class Fixture:
    train_images: np.ndarray  # uint8 (N, C, H, W)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def random_split(num_classes: int, per_class: int, channels: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` random images per class, labels interleaved (0, 1, ..., 0, 1, ...) as in shuffled official files."""
    labels = np.tile(np.arange(num_classes, dtype=np.int64), per_class)
    images = rng.integers(0, 256, size=(len(labels), channels, size, size), dtype=np.uint8)
    return images, labels


def _pickle_batch(path: Path, content: dict) -> None:
    """A protocol-2 pickle, as the official (python 2) batches; arrays named by numpy 1's module path, as in them."""
    data = pickle.dumps(content, protocol=2)
    path.write_bytes(data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def write_cifar10(root: Path, per_class: int = 2, test_per_class: int = 1, class_names: Sequence[str] | None = None, seed: int = 0) -> Fixture:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``; train images spread over 5 batches."""
    rng = np.random.default_rng(seed)
    names = list(class_names) if class_names is not None else [f"class{index}" for index in range(10)]
    train_images, train_labels = random_split(10, per_class, 3, 32, rng)
    test_images, test_labels = random_split(10, test_per_class, 3, 32, rng)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), 1):
        _pickle_batch(folder / f"data_batch_{index}", {"batch_label": f"training batch {index} of 5", "labels": train_labels[chunk].tolist(), "data": train_images[chunk].reshape(len(chunk), -1)})
    _pickle_batch(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(), "data": test_images.reshape(len(test_labels), -1)})
    _pickle_batch(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    return Fixture(train_images, train_labels, test_images, test_labels, names)


def write_cifar100(root: Path, per_class: int = 1, seed: int = 0) -> Fixture:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    names = [f"fine{index:02d}" for index in range(100)]
    train_images, train_labels = random_split(100, per_class, 3, 32, rng)
    test_images, test_labels = random_split(100, 1, 3, 32, rng)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        _pickle_batch(folder / split, {"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(), "data": images.reshape(len(labels), -1)})
    _pickle_batch(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"coarse{index}" for index in range(20)]})
    return Fixture(train_images, train_labels, test_images, test_labels, names)


def write_svhn(root: Path, per_class: int = 2, seed: int = 0) -> Fixture:
    """``root/{train,test}_32x32.mat``: X (32, 32, 3, N) uint8, y (N, 1) with 10 meaning digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    splits = [random_split(10, per_class, 3, 32, rng), random_split(10, 1, 3, 32, rng)]
    for name, (images, labels) in zip(("train_32x32.mat", "test_32x32.mat"), splits):
        official_labels = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        savemat(root / name, {"X": images.transpose(2, 3, 1, 0), "y": official_labels})
    return Fixture(*splits[0], *splits[1], [str(digit) for digit in range(10)])


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte idx file: magic 0x0000 08 <ndim>, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root: Path, per_class: int = 2, gz: bool = False, seed: int = 0) -> Fixture:
    """``root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` with 28x28 grayscale images."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    splits = [random_split(10, per_class, 1, 28, rng), random_split(10, 1, 1, 28, rng)]
    for stem, (images, labels) in zip(("train", "t10k"), splits):
        for kind, array in (("images-idx3", images[:, 0]), ("labels-idx1", labels.astype(np.uint8))):
            data = idx_bytes(array)
            name = f"{stem}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (root / name).write_bytes(data)
    return Fixture(*splits[0], *splits[1], [str(digit) for digit in range(10)])


def encode_image(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """(C, H, W) uint8 -> encoded image bytes (PNG is lossless; JPEG is not)."""
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def tiny_wnids(num_classes: int = 200) -> list[str]:
    """Made-up wnids in a non-sorted order (the official wnids.txt is not sorted either)."""
    return [f"n{(index * 7919) % 100000:08d}" for index in range(num_classes)]


def write_tiny_imagenet(root: Path, seed: int = 0) -> Fixture:
    """``root/tiny-imagenet-200/``: wnids.txt, train/<wnid>/images/<wnid>_0.JPEG, val/images + val_annotations.txt.

    One 64x64 PNG-encoded image (lossless, under the official .JPEG name) per class and split; PIL reads it by content.
    """
    rng = np.random.default_rng(seed)
    wnids = tiny_wnids()
    sorted_wnids = sorted(wnids)
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train_images = rng.integers(0, 256, size=(200, 3, 64, 64), dtype=np.uint8)
    for index, wnid in enumerate(sorted_wnids):
        images_dir = folder / "train" / wnid / "images"
        images_dir.mkdir(parents=True)
        (images_dir / f"{wnid}_0.JPEG").write_bytes(encode_image(train_images[index]))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    # val labels in a shuffled class order; the loader keeps the annotation-file order
    val_labels = rng.permutation(200).astype(np.int64)
    val_images = rng.integers(0, 256, size=(200, 3, 64, 64), dtype=np.uint8)
    lines = []
    for index, label in enumerate(val_labels):
        (folder / "val" / "images" / f"val_{index}.JPEG").write_bytes(encode_image(val_images[index]))
        lines.append(f"val_{index}.JPEG\t{sorted_wnids[label]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return Fixture(train_images, np.arange(200, dtype=np.int64), val_images, val_labels, sorted_wnids)


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its own name as the top-level directory (as the official tiny-imagenet-200.zip)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def write_image_folder(
    root: Path,
    class_names: Sequence[str],
    per_class: int = 2,
    channels: int = 3,
    size: int = 32,
    test_name: str = "test",
    file_names: Sequence[str] | None = None,
    seed: int = 0,
) -> Fixture:
    """``root/{train,<test_name>}/<class>/<file>.png``; expected order = sorted classes, files in sorted name order."""
    rng = np.random.default_rng(seed)
    names = list(file_names) if file_names is not None else [f"{index:04d}.png" for index in range(per_class)]
    sorted_classes = sorted(class_names)
    expected = []
    for split in ("train", test_name):
        images = rng.integers(0, 256, size=(len(class_names), len(names), channels, size, size), dtype=np.uint8)
        for class_index, class_name in enumerate(sorted_classes):
            (root / split / class_name).mkdir(parents=True, exist_ok=True)
            for file_index, file_name in enumerate(names):
                (root / split / class_name / file_name).write_bytes(encode_image(images[class_index, file_index]))
        order = np.argsort(np.array(names), kind="stable")  # the loader reads files in sorted name order
        ordered = images[:, order].reshape(-1, channels, size, size)
        labels = np.repeat(np.arange(len(class_names), dtype=np.int64), len(names))
        expected.append((ordered, labels))
    return Fixture(*expected[0], *expected[1], sorted_classes)


def tar_member(name: str, data: bytes = b"x", link_to: str | None = None, hard: bool = False) -> tuple[tarfile.TarInfo, bytes | None]:
    """A tar member with an arbitrary (possibly unsafe) name: a regular file, or a symbolic/hard link to ``link_to``."""
    info = tarfile.TarInfo(name)
    if link_to is not None:
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = link_to
        return info, None
    info.size = len(data)
    return info, data


def tar_folder(folder: Path, archive: Path, top: str | None = None, extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    """``.tar.gz`` of ``folder``'s contents (under the top-level directory ``top`` if given), then ``extra`` members."""
    with tarfile.open(archive, "w:gz") as handle:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            handle.add(path, arcname=f"{top}/{relative}" if top else relative, recursive=False)
        for info, data in extra:
            handle.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive
