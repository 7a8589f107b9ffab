"""All of an iteration's randomness, drawn first: the matching networks, real images, DSA plans, pool network and IDM's
training batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from iid_distill.augment import GroupPlan, draw_group_plan
from iid_distill.distill.context import DistillContext
from iid_distill.distill.networks import FeatureNetPool
from iid_distill.distill.settings import DistillError, host_of


@dataclass
class MatchDraw:
    """The randomness of one matching pass: every class's real images and the per-class DSA plan."""

    real_indices: torch.Tensor  # training-set indices, class-major (RealSampler.class_offsets)
    plan: GroupPlan | None


@dataclass
class IterationDraw:
    """All randomness of one iteration, drawn before any computation.

    net_seed: DM: the fresh matching network's seed; IDM: the seed of the network appended to the queue this
      iteration (None if none is). match_slots / train_slots: IDM queue positions (after the append) matched / trained.
    train_batches: IDM: (len(train_slots), train_steps, net_batch) training-set indices, without replacement per batch.
    """

    net_seed: int | None
    match_slots: list[int]
    passes: list[MatchDraw]
    pool_net: nn.Module | None
    train_slots: list[int]
    train_batches: torch.Tensor | None


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one random stream of a run ("host", "device"); streams never collide."""
    return int(hashlib.sha256(f"iid-distill/distill/{int(seed)}/{stream}".encode()).hexdigest()[:15], 16)


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _random_subsets(rows: int, population: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``rows`` independent uniformly random subsets of ``min(size, population)`` of range(population)."""
    keys = torch.rand(rows, population, generator=generator, device=device)
    return keys.topk(min(size, population), dim=1).indices


def draw_iteration(
    iteration: int,
    ctx: DistillContext,
    host_generator: torch.Generator,
    device_generator: torch.Generator,
    queue_length: int = 0,
    pool: FeatureNetPool | None = None,
) -> IterationDraw:
    """Draw iteration ``iteration``'s randomness, in a fixed order (see :class:`IterationDraw`)."""
    config = ctx.config
    host = host_of(config.method)
    net_seed, match_slots, passes_count, queue_length = host.draw_networks(iteration, config, host_generator, queue_length)
    height, width = ctx.train_images.shape[2], ctx.train_images.shape[3]
    passes = []
    for _ in range(passes_count):
        real_indices = ctx.sampler.sample(device_generator)
        plan = None
        if ctx.dsa_config is not None:
            plan = draw_group_plan(ctx.num_classes, height, width, device_generator, ctx.dsa_config, ctx.device)
        passes.append(MatchDraw(real_indices, plan))
    pool_net = None
    if config.uses_cc:
        if pool is None:
            raise DistillError("constraint 'cc' needs a pool of pre-trained feature networks; pass a pool directory (--pool)")
        pool_net = pool.sample(host_generator)
    train_slots, train_batches = host.draw_training(ctx, host_generator, device_generator, queue_length)
    return IterationDraw(net_seed, match_slots, passes, pool_net, train_slots, train_batches)
