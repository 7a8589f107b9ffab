"""Distribution-matching hosts: what a method matches with, which the IID constraints plug into.

A host says which networks an iteration matches the real and synthetic features through, what it draws for them,
what it does around the image step, and its published settings. Everything else (real-image sampling, DSA, the
batched mean / CC / CM / CE terms, the image step, checkpoints) is shared, so IID's constraints apply to any host.
DM matches through one fresh random network per iteration; IDM through networks of a queue that it trains as it goes.
Add a host by subclassing :class:`Host` and calling :func:`~iid_distill.distill.settings.register_host`
(``tests/test_hosts.py`` registers a toy one from a test module).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from iid_distill.distill.context import DistillContext, _full_precision
from iid_distill.distill.draws import _draw_seed, _random_subsets
from iid_distill.distill.networks import FreshNetFactory, QueueMember, new_queue_member
from iid_distill.distill.settings import DistillConfig, DistillError, _idm_flags, register_host


class Host:
    """The host interface. The draws happen in a fixed order (networks, then real images and DSA plans, then the CC
    network, then training batches), so a host's draws must come from the generators it is given, in its methods."""

    name = ""
    code_iid_weights = (0.05, 0.01)  # (lambda_cc, lambda_cm) of the published IID code for this host
    trains_matching_nets = False  # True: its networks have accuracies (IDM's class-aware CE needs them)

    def published_settings(self, spec, ipc: int) -> dict[str, Any]:
        """The host's part of :func:`~iid_distill.distill.settings.published_settings` for (dataset, ipc)."""
        return {}

    def validate(self, config: DistillConfig) -> None:
        """Refuse settings this host cannot run (a DistillError naming the key)."""

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


class DMHost(Host):
    """DM (Zhao & Bilen): one fresh randomly initialised network per iteration; one joint image step."""

    name = "dm"
    code_iid_weights = (0.05, 0.01)

    def published_settings(self, spec, ipc: int) -> dict[str, Any]:
        return dict(lr_img=10.0 if spec.name == "cifar10" and ipc >= 100 else 1.0, expand_factor=1, image_step="joint", ce_weight=0.0)

    def fresh_net_factory(self, config, spec, device, dtype):
        return FreshNetFactory(config, spec, device, dtype)

    def draw_networks(self, iteration, config, host_generator, queue_length):
        return _draw_seed(host_generator), [], 1, queue_length

    def matchers(self, state, ctx, draw, fresh_net):
        return [(fresh_net(draw.net_seed), 0.0)]


class IDMHost(Host):
    """IDM (Zhao et al., CVPR 2023): a queue of networks, a new one every ``queue_interval`` iterations, ``match_nets``
    of them matched per iteration and ``train_nets`` trained on real batches after the image step; its class-aware CE
    weights classes by the queue networks' accuracy meters, reset every ``acc_reset_interval`` iterations."""

    name = "idm"
    code_iid_weights = (0.01, 0.03)
    trains_matching_nets = True

    def published_settings(self, spec, ipc: int) -> dict[str, Any]:
        return dict(lr_img=0.2, expand_factor=2, image_step="per_class", **_idm_flags(spec.name, ipc))

    def validate(self, config):
        if config.queue_initial + 1 < config.match_nets:
            raise DistillError(f"distill.match_nets = {config.match_nets}: the IDM queue starts with queue_initial + 1 = "
                               f"{config.queue_initial + 1} networks; lower match_nets or raise queue_initial")
        if config.queue_initial > config.queue_size:
            raise DistillError(f"distill.queue_initial = {config.queue_initial} exceeds queue_size = {config.queue_size}")

    def matching_passes(self, config):
        return config.match_nets

    def initial_queue(self, ctx, host_generator):
        return [new_queue_member(_draw_seed(host_generator), ctx.config, ctx.spec, ctx.device, ctx.dtype) for _ in range(ctx.config.queue_initial)]

    def draw_networks(self, iteration, config, host_generator, queue_length):
        net_seed = None
        if iteration % config.queue_interval == 0:
            net_seed = _draw_seed(host_generator)
            queue_length = min(queue_length + 1, config.queue_size)
        match_slots = torch.randperm(queue_length, generator=host_generator)[: config.match_nets].tolist()
        return net_seed, match_slots, len(match_slots), queue_length

    def draw_training(self, ctx, host_generator, device_generator, queue_length):
        config = ctx.config
        if config.train_nets == 0 or config.train_steps == 0:
            return [], None
        train_slots = torch.randperm(queue_length, generator=host_generator)[: config.train_nets].tolist()
        batches = _random_subsets(len(train_slots) * config.train_steps, ctx.train_labels.numel(), config.net_batch, device_generator, ctx.device)
        return train_slots, batches.view(len(train_slots), config.train_steps, -1)

    def begin_iteration(self, state, ctx):
        if state.iteration > 0 and state.iteration % ctx.config.acc_reset_interval == 0:
            for member in state.queue:
                member.meter.zero_()

    def matchers(self, state, ctx, draw, fresh_net):
        config = ctx.config
        if draw.net_seed is not None:
            if len(state.queue) == config.queue_size:
                state.queue.pop(0)
            state.queue.append(new_queue_member(draw.net_seed, config, ctx.spec, ctx.device, ctx.dtype))
        return [(state.queue[slot].net, state.queue[slot].accuracy_percent().to(ctx.dtype)) for slot in draw.match_slots]

    def end_iteration(self, state, ctx, draw):
        if draw.train_batches is not None:
            with torch.profiler.record_function("distill/train_queue"):
                train_queue_nets(state.queue, draw.train_slots, draw.train_batches, ctx)


def train_queue_nets(queue: list[QueueMember], slots: Sequence[int], batches: torch.Tensor, ctx: DistillContext) -> None:
    """IDM: each chosen queue network takes ``train_steps`` SGD steps on its real batches (no augmentation, train mode)
    and adds the batches' top-1 hits to its accuracy meter.

    A step's batch runs in chunks of at most ``real_chunk`` images whose gradients add up to the batch's mean-loss
    gradient (the ConvNets normalise per sample, so chunks are independent): the same step to float rounding, with
    the activation memory of one chunk (2 Zen 4 cores, compiled: a 256-image step peaked at 965 MB RSS whole, 541 MB
    in chunks of 64, at the same speed; reports/benchmarks.md).
    """
    chunk = ctx.chunks[0]
    for row, slot in enumerate(slots):
        member = queue[slot]
        member.net.train()
        for step in range(batches.shape[1]):
            indices = batches[row, step]
            member.optimizer.zero_grad(set_to_none=True)
            hits = torch.zeros((), dtype=torch.int64, device=indices.device)
            for start in range(0, indices.numel(), chunk):
                part = indices[start : start + chunk]
                inputs, targets = ctx.real_images(part), ctx.train_labels[part]
                with ctx.autocast():
                    logits = ctx.train_forward(member.net, inputs)
                # the chunk's mean loss scaled by its share: exactly the batch mean when one chunk holds the batch
                loss = F.cross_entropy(_full_precision(logits), targets) * (part.numel() / indices.numel())
                loss.backward()
                hits += (logits.detach().argmax(dim=1) == targets).sum()
            member.optimizer.step()
            member.meter += torch.stack([hits, torch.full_like(hits, indices.numel())])


register_host(DMHost())
register_host(IDMHost())
