"""The networks a run matches with: the class-centralisation pool, DM's fresh random network, IDM's queue members."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch
from torch import nn

from iid_distill.distill.settings import DistillConfig, DistillError


class FeatureNetPool(Protocol):
    """What the distiller needs of a pool of CC networks (``pretrain.FeaturePool`` or :class:`InMemoryPool`)."""

    def sample(self, generator: torch.Generator) -> nn.Module: ...


class InMemoryPool:
    """A pool of networks held in memory (tests, benchmarks); ``sample`` picks one uniformly, like FeaturePool."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise DistillError("InMemoryPool: needs at least one network")
        self.models = [model.eval().requires_grad_(False) for model in models]

    def __len__(self) -> int:
        return len(self.models)

    def sample(self, generator: torch.Generator) -> nn.Module:
        index = torch.randint(len(self.models), (1,), generator=generator, device=generator.device)
        return self.models[int(index)]

    def describe(self) -> dict[str, Any]:
        return {"pool": None, "num_models": len(self.models), "kind": "in-memory"}


def _has_batch_statistics(net: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in net.modules())


def _reset_parameters(net: nn.Module, seed: int) -> None:
    """Re-initialise ``net`` as ``models.get_network(seed=seed)`` initialises a new one (same RNG stream, same order)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        for module in net.modules():
            if module is not net and hasattr(module, "reset_parameters"):
                module.reset_parameters()


class FreshNetFactory:
    """DM's fresh random matching network per iteration, without rebuilding the module every time.

    Building a ConvNet costs tens of ms on CPU (a shape probe runs a forward); re-initialising a CPU template costs
    about 1 ms. At construction the re-initialised template is compared with ``get_network(seed=...)``; if the two
    ever differ for an architecture, every iteration builds a new network instead, so the weights are always exactly
    those of ``get_network(arch, ..., seed=seed)``.
    """

    def __init__(self, config: DistillConfig, spec, device: torch.device, dtype: torch.dtype) -> None:
        from iid_distill.models import get_network

        self._build = lambda seed: get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=seed, **config.arch_kwargs)
        self.template = self._build(0)
        probe_seed = 12345
        _reset_parameters(self.template, probe_seed)
        reference = self._build(probe_seed).state_dict()
        self.reuse = all(torch.equal(value, reference[name]) for name, value in self.template.state_dict().items())
        self.device, self.dtype, self.channels_last = device, dtype, config.channels_last
        self.device_net = self._placed(self._build(0)) if self.reuse else None
        self._last: tuple[int, nn.Module] | None = None  # (seed, network) of the latest call: M3D asks for one seed many times

    def _placed(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device, self.dtype).eval().requires_grad_(False)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def __call__(self, seed: int) -> nn.Module:
        if self._last is not None and self._last[0] == seed:
            return self._last[1]
        if not self.reuse:
            net = self._placed(self._build(seed))
        else:
            _reset_parameters(self.template, seed)
            with torch.no_grad():
                for target, source in zip(self.device_net.parameters(), self.template.parameters()):
                    target.copy_(source)
            net = self.device_net
        self._last = (seed, net)
        return net


@contextlib.contextmanager
def frozen(net: nn.Module, train_mode: bool = False) -> Iterator[nn.Module]:
    """``net`` with no parameter gradients (the matching network), in eval mode unless ``train_mode`` (a host that
    matches with BatchNorm's batch statistics), restored afterwards."""
    flags = [parameter.requires_grad for parameter in net.parameters()]
    was_training = net.training
    net.train(train_mode).requires_grad_(False)
    try:
        yield net
    finally:
        for parameter, flag in zip(net.parameters(), flags):
            parameter.requires_grad_(flag)
        net.train(was_training)


@dataclass
class QueueMember:
    """One IDM queue network with its optimiser and accuracy meter ([correct, seen] int64 on the device)."""

    seed: int
    net: nn.Module
    optimizer: torch.optim.Optimizer
    meter: torch.Tensor

    def accuracy_percent(self) -> torch.Tensor:
        """Running top-1 train accuracy in percent since the last reset; 0 with no samples (as IDM's code)."""
        correct, seen = self.meter[0].to(torch.float64), self.meter[1].to(torch.float64)
        return torch.where(seen > 0, 100.0 * correct / seen.clamp(min=1.0), torch.zeros_like(seen))


def new_queue_member(seed: int, config: DistillConfig, spec, device: torch.device, dtype: torch.dtype = torch.float32) -> QueueMember:
    from iid_distill.models import get_network

    net = get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=seed, **config.arch_kwargs).to(device, dtype)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=config.net_lr, momentum=config.net_momentum, weight_decay=config.net_weight_decay)
    return QueueMember(seed, net, optimizer, torch.zeros(2, dtype=torch.int64, device=device))
