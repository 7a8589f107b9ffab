"""DataDAM (Sajedi et al., ICCV 2023; official code DataDistillation/DataDAM, main_DataDAM.py): spatial attention maps
of the intermediate activations and the final embedding, matched by class means, through a fresh random ConvNet per
iteration.

Per iteration the code builds a random ConvNet (BatchNorm forced by its ``get_network``) in train mode, forwards
all classes' real images in one batch and all synthetic images in another (so BatchNorm's batch statistics span
every class), hooks every ReLU of ``features``, and matches, for every ReLU output but the last,
``normalize_L2(sum over channels |A|^p)`` plus the embedding:
``L = s * (sum_layers sum_c ||mean_c(att real) - mean_c(att syn)||^2 + task_balance * sum_c ||mean_c(emb real) -
mean_c(emb syn)||^2)`` with s = 100 in the code. One joint SGD step (momentum 0.5).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.distill.hosts.base import MatchFeatures
from iid_distill.distill.hosts.dm import DMHost
from iid_distill.distill.settings import DistillError
from iid_distill.losses import mean_matching_loss
from iid_distill.models import ACTIVATION_MODULES


def attention_map(activation: torch.Tensor, power: float) -> torch.Tensor:
    """DataDAM's spatial attention: (N, C, H, W) -> (N, H*W), ``sum_C |A|^p`` normalised to unit L2 norm per image."""
    summed = activation.abs().pow(power).sum(dim=1).flatten(1)
    return F.normalize(summed, p=2.0, dim=1)


class DataDAMHost(DMHost):
    """DataDAM: DM's fresh network per iteration, its own features (attention maps) and loss."""

    name = "datadam"
    joint_batches = True  # BatchNorm in train mode: one batch of all classes per side, as the code forwards them
    matches_in_train_mode = True

    def published_settings(self, spec, ipc: int, source: str) -> dict[str, Any]:
        """The code's defaults (and the paper's hyper-parameter table where they differ, ``source="paper"``):
        batch_real 64, lr_img 1 (10 above IPC 50), momentum 0.5, init real, DSA, task_balance 0.01 (0.02 at high
        resolution, the table); the code forces BatchNorm and uses p = 1, the table lists InstanceNorm and p = 4."""
        paper = source == "paper"
        return dict(
            lr_img=10.0 if ipc > 50 else 1.0, batch_real=64, expand_factor=1, image_step="joint", ce_weight=0.0,
            arch_kwargs={"norm": "instancenorm" if paper else "batchnorm"},
            datadam_power=4.0 if paper else 1.0, datadam_scale=1.0 if paper else 100.0,
            datadam_task_balance=0.02 if spec.image_size > 32 else 0.01,
        )

    def validate(self, config) -> None:
        if not config.arch.startswith("ConvNet"):
            raise DistillError(f"distill.arch = {config.arch!r}: DataDAM reads the activations of a ConvNet's feature blocks; use ConvNet")
        if config.image_step != "joint" or config.expand_factor != 1:
            raise DistillError("distill.image_step / expand_factor: DataDAM takes one joint step on stored images (joint, 1)")

    def extract(self, net: nn.Module, images: torch.Tensor, config) -> MatchFeatures:
        activations = []
        x = images
        for module in net.features:
            x = module(x)
            if isinstance(module, ACTIVATION_MODULES):
                activations.append(x)
        layers = tuple(attention_map(activation, config.datadam_power) for activation in activations[:-1])
        return MatchFeatures(net.embedding_from_map(x), x, layers)

    def matching_loss(self, real, real_labels, syn, syn_labels, num_classes, config) -> torch.Tensor:
        attention = sum(mean_matching_loss(r, real_labels, s, syn_labels, num_classes) for r, s in zip(real.layers, syn.layers))
        output = mean_matching_loss(real.embedding, real_labels, syn.embedding, syn_labels, num_classes)
        return config.datadam_scale * (attention + config.datadam_task_balance * output)
