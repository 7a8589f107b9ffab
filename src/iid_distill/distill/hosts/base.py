"""The host interface: what a distribution-matching method matches through and what it matches.

A host owns its objective: which networks an iteration matches through (and what it draws for them), the features it
extracts from a network (:meth:`Host.extract`: any number of layers) and its matching loss over real and synthetic
features batched over classes (:meth:`Host.matching_loss`). Everything else is shared: real-image sampling, siamese
DSA, IID's two constraints (class centralisation on the pool network's embedding of the synthetic batch, covariance
matching on :attr:`MatchFeatures.feature_map`), IDM's class-aware CE (on ``classifier(embedding)``), the image
step, checkpoints and records. So IID applies to any host registered with
:func:`~iid_distill.distill.settings.register_host`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from iid_distill.distill.context import DistillContext
from iid_distill.distill.networks import FreshNetFactory, QueueMember
from iid_distill.distill.settings import DistillConfig
from iid_distill.losses import mean_matching_loss


class MatchFeatures(NamedTuple):
    """What a host extracts from a batch of images (rows = images, in the batch's order).

    embedding: (N, D), the network's output features (IDM's CE reads ``classifier(embedding)``);
    feature_map: (N, C, H, W), the last feature map, which IID's covariance matching reads (None where a pass has no use
      for it: the real side drops it unless CM is on);
    layers: the host's own per-layer features (DataDAM: one attention map per intermediate layer), () if none.
    """

    embedding: torch.Tensor
    feature_map: torch.Tensor | None = None
    layers: tuple[torch.Tensor, ...] = ()


def map_features(features: MatchFeatures, function) -> MatchFeatures:
    """``function`` applied to every tensor of ``features`` (None stays None)."""
    feature_map = None if features.feature_map is None else function(features.feature_map)
    return MatchFeatures(function(features.embedding), feature_map, tuple(function(layer) for layer in features.layers))


def concat_features(parts: Sequence[MatchFeatures]) -> MatchFeatures:
    """The features of consecutive image chunks as one batch."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    feature_map = None if first.feature_map is None else torch.cat([part.feature_map for part in parts])
    layers = tuple(torch.cat([part.layers[index] for part in parts]) for index in range(len(first.layers)))
    return MatchFeatures(torch.cat([part.embedding for part in parts]), feature_map, layers)


class Host:
    """The host interface; the defaults are DM's objective (mean embeddings, Eq. 2).

    The draws happen in a fixed order (networks, then real images and DSA plans, then the CC network, then training
    batches), so a host's draws must come from the generators it is given, in its methods.
    """

    name = ""
    code_iid_weights = (0.05, 0.01)  # (lambda_cc, lambda_cm) of the published IID code for this host
    trains_matching_nets = False  # True: its networks have accuracies (IDM's class-aware CE needs them)
    # True: the network couples the images of a batch (BatchNorm in train mode), so the real images and the synthetic
    # images each go through it in one batch of all classes, as the host's code does (no chunks, no class groups)
    joint_batches = False
    matches_in_train_mode = False  # the matching network's mode during matching (BatchNorm: batch statistics)

    def published_settings(self, spec, ipc: int, source: str) -> dict[str, Any]:
        """The host's part of :func:`~iid_distill.distill.settings.published_settings` for (dataset, ipc, source)."""
        return {}

    def validate(self, config: DistillConfig) -> None:
        """Refuse settings this host cannot run (a DistillError naming the key)."""

    # ------------------------------------------------------------------------------------------------ objective

    def extract(self, net: nn.Module, images: torch.Tensor, config: DistillConfig) -> MatchFeatures:
        """The features the host matches, from one forward of ``net`` (a pure function: it may be compiled)."""
        feature_map = net.feature_map(images)
        return MatchFeatures(net.embedding_from_map(feature_map), feature_map)

    def matching_loss(self, real: MatchFeatures, real_labels: torch.Tensor, syn: MatchFeatures, syn_labels: torch.Tensor,
                      num_classes: int, config: DistillConfig) -> torch.Tensor:
        """The matching term over every class at once (a 0-d tensor; a sum of per-class terms, so class groups add up).
        ``real`` is detached; labels are 0..num_classes-1 within the group."""
        return mean_matching_loss(real.embedding, real_labels, syn.embedding, syn_labels, num_classes)

    # ------------------------------------------------------------------------------------------------ networks

    def matching_passes(self, config: DistillConfig) -> int:
        """How many matching passes (networks) an iteration makes: sizes the compile policy."""
        return 1

    def fresh_net_factory(self, config: DistillConfig, spec, device: torch.device, dtype: torch.dtype) -> FreshNetFactory | None:
        """A builder of fresh random networks, if the host matches through them (passed to every iteration)."""
        return None

    def initial_queue(self, ctx: DistillContext, host_generator: torch.Generator) -> list[QueueMember]:
        """Networks the host keeps across iterations (saved in checkpoints with the state)."""
        return []

    def draw_networks(self, iteration: int, config: DistillConfig, host_generator: torch.Generator,
                      queue_length: int) -> tuple[int | None, list[int], int, int]:
        """(seed of a network to build or add, queue slots to match with, number of matching passes, queue length)."""
        raise NotImplementedError

    def draw_training(self, ctx: DistillContext, host_generator: torch.Generator, device_generator: torch.Generator,
                      queue_length: int) -> tuple[list[int], torch.Tensor | None]:
        """(queue slots to train after the image step, their real batches (slots, steps, batch)); none by default."""
        return [], None

    def begin_iteration(self, state, ctx: DistillContext) -> None:
        """Before the iteration's draw (IDM: reset the accuracy meters on schedule)."""

    def matchers(self, state, ctx: DistillContext, draw, fresh_net: FreshNetFactory | None) -> list[tuple[nn.Module, Any]]:
        """(network, CE scale) per matching pass, from the draw."""
        raise NotImplementedError

    def end_iteration(self, state, ctx: DistillContext, draw) -> None:
        """After the image step (IDM: train the drawn queue networks)."""
