"""DM (Zhao & Bilen, WACV 2023): one fresh randomly initialised network per iteration, mean embeddings matched."""

from __future__ import annotations

from typing import Any

from iid_distill.distill.draws import _draw_seed
from iid_distill.distill.hosts.base import Host
from iid_distill.distill.networks import FreshNetFactory


class DMHost(Host):
    """DM: one fresh random network per iteration; one joint image step; the objective of :class:`Host`."""

    name = "dm"
    code_iid_weights = (0.05, 0.01)

    def published_settings(self, spec, ipc: int, source: str) -> dict[str, Any]:
        return dict(lr_img=10.0 if spec.name == "cifar10" and ipc >= 100 else 1.0, expand_factor=1, image_step="joint", ce_weight=0.0)

    def fresh_net_factory(self, config, spec, device, dtype):
        return FreshNetFactory(config, spec, device, dtype)

    def draw_networks(self, iteration, config, host_generator, queue_length):
        return _draw_seed(host_generator), [], 1, queue_length

    def matchers(self, state, ctx, draw, fresh_net):
        return [(fresh_net(draw.net_seed), 0.0)]
