"""IDM (Zhao et al., CVPR 2023): a queue of networks trained as it goes, partition and expansion, a class-aware CE."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from iid_distill.distill.context import DistillContext, _full_precision
from iid_distill.distill.draws import _draw_seed, _random_subsets
from iid_distill.distill.hosts.base import Host
from iid_distill.distill.networks import QueueMember, new_queue_member
from iid_distill.distill.settings import DistillError, _idm_flags


class IDMHost(Host):
    """IDM (Zhao et al., CVPR 2023): a queue of networks, a new one every ``queue_interval`` iterations, ``match_nets``
    of them matched per iteration and ``train_nets`` trained on real batches after the image step; its class-aware CE
    weights classes by the queue networks' accuracy meters, reset every ``acc_reset_interval`` iterations."""

    name = "idm"
    code_iid_weights = (0.01, 0.03)
    trains_matching_nets = True

    def published_settings(self, spec, ipc: int, source: str) -> dict[str, Any]:
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
