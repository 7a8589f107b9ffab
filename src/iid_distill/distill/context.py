"""Data on the device for a run: the real-image sampler, chunk sizes, and DistillContext (the run's data, settings and
network passes).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from iid_distill.augment import DSAConfig, partition_and_expand
from iid_distill.compiled import Compiled, compile_wanted
from iid_distill.distill.settings import COMPILE_AUTO_REAL_IMAGES, DistillConfig, DistillError, host_of
from iid_distill.utils import autocast_for, keep_freed_memory


class RealSampler:
    """Draws up to ``batch`` distinct real images of every class at once, class-major.

    The training indices sit in a padded (C, max_count) matrix (-1 = padding); a draw puts uniform random keys on it
    (-1 on padding), takes the top ``min(batch, max_count)`` keys per row and keeps the first ``min(batch, count_c)``
    of row c: a uniformly random subset of each class, without replacement, in one batched op. The kept positions are
    fixed, so the draw's size and its labels (``labels``) are known without a device synchronisation.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, batch: int) -> None:
        device = labels.device
        counts = torch.bincount(labels, minlength=num_classes)
        if counts.numel() != num_classes:
            raise DistillError(f"training labels go up to {counts.numel() - 1}, beyond the dataset's {num_classes} classes")
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(labels.numel(), device=device) - starts[sorted_labels]
        self.counts = counts.tolist()
        self.max_count = max(self.counts)
        self.index_matrix = torch.full((num_classes, self.max_count), -1, dtype=torch.int64, device=device)
        self.index_matrix[sorted_labels, slot] = order
        self.padding = self.index_matrix < 0
        self.num_classes = num_classes
        self.top = min(batch, self.max_count)
        self.take = [min(batch, count) for count in self.counts]
        kept = torch.arange(self.top, device=device) < torch.tensor(self.take, device=device).unsqueeze(1)
        self.kept_positions = torch.nonzero(kept.flatten()).squeeze(1)
        self.labels = torch.repeat_interleave(torch.arange(num_classes, device=device), torch.tensor(self.take, device=device))
        self.class_offsets = [0]
        for take in self.take:
            self.class_offsets.append(self.class_offsets[-1] + take)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """Training-set indices (sum_c take_c,), class c's at ``class_offsets[c]:class_offsets[c + 1]``."""
        keys = torch.rand(self.index_matrix.shape, generator=generator, device=self.index_matrix.device)
        keys = keys.masked_fill(self.padding, -1.0)
        chosen = self.index_matrix.gather(1, keys.topk(self.top, dim=1).indices)
        return chosen.flatten()[self.kept_positions]


def default_chunks(device: torch.device, image_size: int) -> tuple[int, int]:
    """(real_chunk, syn_chunk) when the config leaves them 0, for 32 px images scaled by 32^2 / image_size^2.

    CUDA: 8192 real images per no-grad forward and 2048 synthetic images per forward + backward (about 16 GB of
    ResNet18 + ConvNet activations at 32 px), so CIFAR at IPC <= 50 runs the synthetic side in one pass. CPU: 64 and
    64, measured on 2-core AMD EPYC machines (reports/benchmarks.md): 64-128 real images per forward were fastest
    (512 was 1.1-1.3x slower even without page faults), and the synthetic group size made no measurable difference.
    """
    real, syn = (8192, 2048) if device.type == "cuda" else (64, 64)
    scale = 32 * 32 / (image_size * image_size)
    return max(1, int(real * scale)), max(1, int(syn * scale))


@dataclass
class DistillContext:
    """What an iteration reads but never changes: settings, the uint8 training set on the device, samplers, DSA.

    ``dtype`` is the working precision of images and networks (float32; the tests use float64).
    """

    config: DistillConfig
    spec: Any
    train_images: torch.Tensor  # uint8 (N, C, H, W) on device
    train_labels: torch.Tensor  # int64 (N,) on device
    sampler: RealSampler
    dsa_config: DSAConfig | None
    device: torch.device
    dtype: torch.dtype = torch.float32
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)
    _syn_labels: torch.Tensor = field(init=False, repr=False)
    _step_coefficients: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)
    match_forward: Compiled = field(init=False, repr=False)  # (net, images) -> the host's MatchFeatures: real and synthetic
    embed_forward: Compiled = field(init=False, repr=False)  # (net, images) -> embedding: the CC pool network
    train_forward: Compiled = field(init=False, repr=False)  # (net, images) -> logits: IDM's queue training

    @classmethod
    def create(cls, config: DistillConfig, dataset, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "DistillContext":
        device = torch.device(device)
        keep_freed_memory(device)
        spec = dataset.spec
        train_images = dataset.train.images.to(device)
        train_labels = dataset.train.labels.to(device)
        dsa_config = DSAConfig(strategy=config.dsa_strategy or spec.dsa_strategy) if config.dsa else None
        sampler = RealSampler(train_labels, spec.num_classes, config.batch_real)
        return cls(config, spec, train_images, train_labels, sampler, dsa_config, device, dtype)

    def __post_init__(self) -> None:
        # cached on the device: data.normalize would copy mean/std from the host on every call
        self._mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self._std = torch.tensor(self.spec.std, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self._syn_labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(self.config.ipc)
        host, config = host_of(self.config.method), self.config
        real_images = config.iterations * host.matching_passes(config) * self.sampler.labels.numel()
        enabled = compile_wanted(config.compile, self.device, real_images, COMPILE_AUTO_REAL_IMAGES)
        self.match_forward = Compiled(lambda net, images: host.extract(net, images, config), enabled, "the matching network's forward")
        self.embed_forward = Compiled(_embed_forward, enabled, "the CC network's forward")
        self.train_forward = Compiled(_train_forward, enabled, "the IDM queue training forward")

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def chunks(self) -> tuple[int, int]:
        """(real_chunk, syn_chunk) in effect: the config's, or :func:`default_chunks` where it gives 0; a host whose
        network couples the images of a batch (``joint_batches``) matches every class in one batch per side."""
        if host_of(self.config.method).joint_batches:
            whole = self.sampler.labels.numel()
            return whole, self.num_classes * self.config.ipc * self.config.expand_factor**2
        real, syn = default_chunks(self.device, self.spec.image_size)
        return self.config.real_chunk or real, self.config.syn_chunk or syn

    @property
    def syn_labels(self) -> torch.Tensor:
        """Labels of the stored synthetic images, class-major (ipc of class 0, then class 1, ...)."""
        return self._syn_labels

    def step_coefficients(self) -> dict[str, torch.Tensor]:
        """:func:`per_class_coefficients` for this run, computed once (no host-to-device copy per iteration)."""
        if self._step_coefficients is None:
            self._step_coefficients = per_class_coefficients(self.num_classes, self.config.momentum_img, self.device, self.dtype)
        return self._step_coefficients

    def real_images(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised training images at ``indices`` (same arithmetic as ``data.normalize``), in ``dtype``."""
        images = (self.train_images[indices].to(torch.float32) / 255.0 - self._mean) / self._std
        return self.memory_format(images.to(self.dtype))

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device, self.config.precision)


def _embed_forward(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return net.embed(images)


def _train_forward(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return net(images)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Losses run in at least fp32 (bf16 autocast outputs are upcast; float64 stays float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def expand_training_view(images: torch.Tensor, labels: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the matching sees: IDM's partition-and-expansion (factor > 1) or the stored images."""
    if factor == 1:
        return images, labels
    return partition_and_expand(images, labels, factor)


def per_class_coefficients(num_classes: int, momentum: float, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Closed forms of IDM's class loop: one SGD-with-momentum step per class, class c's gradient non-zero only on
    its own slice.

    With momentum mu, learning rate lr and the buffer v of a slice of class c at the start of the iteration, the
    loop first takes c momentum-only sub-steps (buffer mu v, mu^2 v, ...; the slice moves by -lr v (mu + ... + mu^c)),
    then the gradient step at that drifted point (buffer b = mu^(c+1) v + g; slice -= lr b), then C-1-c momentum-only
    sub-steps (slice -= lr b (mu + ... + mu^(C-1-c)); buffer mu^(C-1-c) b). Returned per class (shape (C,)):
    ``drift`` = sum_{k=1..c} mu^k, ``decay`` = mu^(c+1), ``tail`` = sum_{k=0..C-1-c} mu^k (the gradient step plus the
    later sub-steps) and ``tail_decay`` = mu^(C-1-c).
    """
    mu = float(momentum)
    rows = []
    for c in range(num_classes):
        after = num_classes - 1 - c
        rows.append((sum(mu**k for k in range(1, c + 1)), mu ** (c + 1), sum(mu**k for k in range(after + 1)), mu**after))
    table = torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)
    return {"drift": table[:, 0], "decay": table[:, 1], "tail": table[:, 2], "tail_decay": table[:, 3]}
