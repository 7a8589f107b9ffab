"""Datasets in memory: Split, PreparedDataset, normalisation and the one-object summary of a prepared dataset."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from iid_distill.data.specs import DatasetSpec


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
