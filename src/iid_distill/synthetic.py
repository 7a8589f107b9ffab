"""The synthetic-set file format: images in normalised space, labels and provenance in one validated ``.pt`` file.

A file is a plain dict ``{"format", "version", "images", "labels", "meta", "sha256"}`` written with ``torch.save`` and
read with ``torch.load(weights_only=True)``, so loading never executes code. ``sha256`` (``{"images", "labels"}``, see
``utils.sha256_tensor``) lets the loader refuse a damaged file (torch does not check the zip's CRCs); files written
before it existed load without the check. ``meta`` holds only plain values
(str, int, float, bool, None, lists, dicts with str keys); its keys are sorted on save, so identical inputs give
byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from iid_distill.utils import UserError, atomic_path, atomic_torch_save, load_torch_file, sha256_tensor

FORMAT_TAG = "iid-distill/synthetic-set"
FORMAT_VERSION = 1
REQUIRED_META_KEYS = ("dataset", "ipc", "method", "params", "seed", "git_sha")
GRID_PADDING = 2


class SyntheticSetError(UserError):
    """A synthetic-set file (or an in-memory set about to be saved) is unreadable or inconsistent."""


@dataclass
class SyntheticSet:
    """A distilled (or selected) training set.

    images: float32 (N, C, H, W) in the dataset's normalised space.
    labels: int64 (N,), ``meta["ipc"]`` of each class.
    meta: dataset, ipc, method, params (every parameter used), seed, git_sha; optionally
      expand_factor (IDM: each stored image is partitioned and expanded at evaluation, factor 2) and
      classes (sorted class indices the set covers, for class-incremental memories; default all classes).
    """

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def expand_factor(self) -> int:
        return int(self.meta.get("expand_factor", 1) or 1)


def _plain_meta(value: Any, where: str) -> Any:
    """Copy ``value`` as weights_only-loadable plain data with dict keys sorted (tuples become lists)."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise SyntheticSetError(f"{where}: meta dict keys must be strings")
        return {key: _plain_meta(value[key], f"{where}.{key}") for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_plain_meta(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SyntheticSetError(f"{where}: meta value of type {type(value).__name__} is not plain data (use str/int/float/bool/list/dict)")


def _spec_for(dataset_name: Any, source: str):
    from iid_distill.data import get_spec

    if not isinstance(dataset_name, str):
        raise SyntheticSetError(f"{source}: meta['dataset'] must be a dataset name, got {dataset_name!r}")
    try:
        return get_spec(dataset_name)
    except (UserError, KeyError, ValueError) as error:
        raise SyntheticSetError(f"{source}: meta['dataset'] = {dataset_name!r} is not a known dataset ({error})") from None


def _image_hw(spec) -> tuple[int, int]:
    size = spec.image_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def validate_synthetic_set(sset: SyntheticSet, source: str = "<synthetic set>", dataset: str | None = None) -> None:
    """Raise a one-line ``SyntheticSetError`` naming ``source`` if ``sset`` is inconsistent.

    Checks tensor types and shapes, required meta keys, labels against the dataset's classes, image
    channels/size against the dataset spec, that every covered class has exactly ``ipc`` images, and
    (when ``dataset`` is given) that the set was made for that dataset.
    """
    images, labels, meta = sset.images, sset.labels, sset.meta
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise SyntheticSetError(f"{source}: images must be a float (N, C, H, W) tensor, got {got}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        got = f"{labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise SyntheticSetError(f"{source}: labels must be an int64 (N,) tensor, got {got}")
    if labels.numel() != images.shape[0]:
        raise SyntheticSetError(f"{source}: {images.shape[0]} images but {labels.numel()} labels")
    if not isinstance(meta, dict):
        raise SyntheticSetError(f"{source}: meta must be a dict, got {type(meta).__name__}")
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise SyntheticSetError(f"{source}: meta lacks required key(s) {', '.join(missing)}")
    if dataset is not None and meta["dataset"] != dataset:
        raise SyntheticSetError(f"{source}: made for dataset {meta['dataset']!r}, expected {dataset!r}")
    spec = _spec_for(meta["dataset"], source)
    ipc = meta["ipc"]
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise SyntheticSetError(f"{source}: meta['ipc'] must be a positive integer, got {ipc!r}")
    expand_factor = meta.get("expand_factor", 1)
    if isinstance(expand_factor, bool) or not isinstance(expand_factor, int) or expand_factor < 1:
        raise SyntheticSetError(f"{source}: meta['expand_factor'] must be a positive integer, got {expand_factor!r}")
    height, width = _image_hw(spec)
    if tuple(images.shape[1:]) != (spec.channels, height, width):
        raise SyntheticSetError(
            f"{source}: images are {tuple(images.shape[1:])} but dataset {spec.name} needs ({spec.channels}, {height}, {width})"
        )
    if not bool(torch.isfinite(images).all()):
        raise SyntheticSetError(f"{source}: images contain NaN or infinite values")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes):
        raise SyntheticSetError(
            f"{source}: labels span [{int(labels.min())}, {int(labels.max())}] but dataset {spec.name} has classes 0..{spec.num_classes - 1}"
        )
    classes = meta.get("classes", list(range(spec.num_classes)))
    if not isinstance(classes, list) or not all(isinstance(c, int) and 0 <= c < spec.num_classes for c in classes):
        raise SyntheticSetError(f"{source}: meta['classes'] must be a list of class indices in [0, {spec.num_classes})")
    counts = torch.bincount(labels, minlength=spec.num_classes)
    expected = torch.zeros_like(counts)
    expected[torch.tensor(classes, dtype=torch.int64)] = ipc
    wrong = torch.nonzero(counts != expected).flatten()
    if wrong.numel():
        first = int(wrong[0])
        raise SyntheticSetError(
            f"{source}: class {first} has {int(counts[first])} images, expected {int(expected[first])} (ipc {ipc}); "
            f"{wrong.numel()} class(es) differ"
        )


def save_synthetic_set(sset: SyntheticSet, path: str | os.PathLike) -> None:
    """Validate ``sset`` and write it atomically to ``path``; identical inputs give byte-identical files."""
    path = Path(path)
    meta = _plain_meta(sset.meta, f"{path}: meta")
    images = sset.images.detach().to("cpu", dtype=torch.float32, copy=True).contiguous()
    labels = sset.labels.detach().to("cpu", copy=True).contiguous()
    validate_synthetic_set(SyntheticSet(images, labels, meta), str(path))
    checksums = {"images": sha256_tensor(images), "labels": sha256_tensor(labels)}
    payload = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "images": images, "labels": labels, "meta": meta, "sha256": checksums}
    atomic_torch_save(payload, path)


def load_synthetic_set(path: str | os.PathLike, dataset: str | None = None) -> SyntheticSet:
    """Read and validate a synthetic-set file; ``dataset`` (if given) must match the one it was made for."""
    path = Path(path)
    if not path.is_file():
        raise SyntheticSetError(f"{path}: {'a folder, not' if path.is_dir() else 'no such'} synthetic-set file")
    payload = load_torch_file(path, SyntheticSetError, "not a readable synthetic-set file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SyntheticSetError(f"{path}: not a synthetic-set file (format tag {found!r}, expected {FORMAT_TAG!r})")
    if payload.get("version") != FORMAT_VERSION:
        raise SyntheticSetError(f"{path}: synthetic-set format version {payload.get('version')!r} is not supported (expected {FORMAT_VERSION})")
    sset = SyntheticSet(images=payload.get("images"), labels=payload.get("labels"), meta=payload.get("meta"))
    validate_synthetic_set(sset, str(path), dataset=dataset)
    recorded = payload.get("sha256")
    if recorded is not None:
        for key, tensor in (("images", sset.images), ("labels", sset.labels)):
            if not isinstance(recorded, dict) or recorded.get(key) != sha256_tensor(tensor):
                raise SyntheticSetError(f"{path}: {key} do not match the sha256 recorded in the file (damaged or modified); "
                                        "copy it again or rebuild it")
    sset.images = sset.images.float()
    return sset


def _grid_tensor(images01: torch.Tensor, labels: torch.Tensor, classes: list[int], columns: int, padding: int) -> torch.Tensor:
    """Arrange images (N, C, H, W) in [0, 1] as one row per class (first ``columns`` images of it) on a white canvas."""
    _, channels, height, width = images01.shape
    order = torch.argsort(labels, stable=True)
    by_class = images01[order].reshape(len(classes), -1, channels, height, width)[:, :columns]
    rows = len(classes)
    canvas = torch.ones(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    tiles = torch.nn.functional.pad(by_class, (padding, 0, padding, 0), value=1.0)  # each tile carries its top/left gap
    body = tiles.permute(2, 0, 3, 1, 4).reshape(channels, rows * (height + padding), columns * (width + padding))
    canvas[:, : body.shape[1], : body.shape[2]] = body
    return canvas


def save_image_grid(sset: SyntheticSet, path: str | os.PathLike, nrow: int | None = None) -> None:
    """Write a de-normalised PNG grid of ``sset``: one row per class, ``nrow`` images per row (default: ipc).

    IDM sets show the stored (un-expanded) images. Written atomically with PIL.
    """
    from PIL import Image

    from iid_distill.data import denormalize

    validate_synthetic_set(sset, str(path))
    spec = _spec_for(sset.meta["dataset"], str(path))
    ipc = int(sset.meta["ipc"])
    columns = ipc if nrow is None else min(int(nrow), ipc)
    if columns < 1:
        raise SyntheticSetError(f"{path}: nrow must be at least 1, got {nrow}")
    classes = sset.meta.get("classes", list(range(spec.num_classes)))
    images01 = denormalize(sset.images.detach().to("cpu", torch.float32), spec).clamp(0.0, 1.0)
    grid = _grid_tensor(images01, sset.labels.cpu(), classes, columns, GRID_PADDING)
    pixels = (grid * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)  # uint8 2-D -> "L", (H, W, 3) -> "RGB"
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def grid_pixel_size(num_rows: int, num_columns: int, height: int, width: int, padding: int = GRID_PADDING) -> tuple[int, int]:
    """(width, height) in pixels of a grid written by ``save_image_grid``."""
    return num_columns * (width + padding) + padding, num_rows * (height + padding) + padding


__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "SyntheticSet",
    "SyntheticSetError",
    "grid_pixel_size",
    "load_synthetic_set",
    "save_image_grid",
    "save_synthetic_set",
    "validate_synthetic_set",
]

