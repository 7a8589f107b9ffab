"""M3D (Zhang et al., AAAI 2024): the maximum mean discrepancy between real and synthetic embeddings of each class
under a sum of Gaussian kernels, through a random ConvNet reused for ``m3d_net_reuse`` iterations.

Its official code (Hansong-Zhang/M3D) holds only a README ("the source code will be released soon") in the snapshot
fetched on 2026-12-08, so this follows the paper's description: per class, the biased MMD^2
``mean k(r, r') + mean k(s, s') - 2 mean k(r, s)`` with ``k(x, y) = sum_k exp(-||x - y||^2 / (h 2^k))``,
k = -K//2..K//2 (K = ``m3d_kernels``, 5: bandwidths h/4..4h) and h the mean squared distance between distinct rows of
the class's real and synthetic embeddings together, without gradient through h. The other settings are DM's.
"""

from __future__ import annotations

from typing import Any

import torch

from iid_distill.distill.draws import stream_seed
from iid_distill.distill.hosts.dm import DMHost


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) -> (N, M) squared Euclidean distances, through the expansion (finite gradient at distance 0)."""
    return (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * x @ y.T).clamp_min(0.0)


class M3DHost(DMHost):
    """M3D: DM's networks (one reused for ``m3d_net_reuse`` iterations) and a kernel MMD per class."""

    name = "m3d"

    def published_settings(self, spec, ipc: int, source: str) -> dict[str, Any]:
        return {**super().published_settings(spec, ipc, source), "m3d_kernels": 5, "m3d_net_reuse": 1}

    def draw_networks(self, iteration, config, host_generator, queue_length):
        # a new network every m3d_net_reuse iterations; its seed follows from the run's seed and the block, so a resumed
        # run rebuilds the same network mid-block (the host generator is not drawn)
        return stream_seed(config.seed, f"m3d-net-{iteration // config.m3d_net_reuse}"), [], 1, queue_length

    def matching_loss(self, real, real_labels, syn, syn_labels, num_classes, config) -> torch.Tensor:
        return class_mmd2(real.embedding, real_labels, syn.embedding, syn_labels, num_classes, config.m3d_kernels)


def class_mmd2(real: torch.Tensor, real_labels: torch.Tensor, syn: torch.Tensor, syn_labels: torch.Tensor, num_classes: int,
               kernels: int) -> torch.Tensor:
    """Sum over classes present on both sides of the biased MMD^2 of the class's real and synthetic rows (module
    docstring), for every class at once and in any row order: one distance matrix over all rows, each same-class entry under its class's bandwidth, and
    per-class block sums through one-hot products (no per-class indexing, so no device synchronisation)."""
    joint = torch.cat([real, syn])
    labels = torch.cat([real_labels, syn_labels])
    one_hot = torch.nn.functional.one_hot(labels, num_classes).to(joint.dtype).T  # (C, rows)
    is_syn = torch.cat([torch.zeros_like(real_labels), torch.ones_like(syn_labels)]).to(joint.dtype)
    distances = squared_distances(joint, joint)
    counts = one_hot.sum(1)
    pair_sums = ((one_hot @ distances) * one_hot).sum(1)  # the diagonal is 0: sums over distinct pairs
    bandwidth = (pair_sums / (counts * (counts - 1)).clamp_min(1.0)).detach().clamp_min(torch.finfo(joint.dtype).tiny)
    row_bandwidth = bandwidth[labels].unsqueeze(1)  # a same-class entry's class bandwidth (other entries are masked out)
    kernel = sum(torch.exp(-distances / (row_bandwidth * 2.0**k)) for k in range(-(kernels // 2), kernels - kernels // 2))
    real_hot, syn_hot = one_hot * (1.0 - is_syn), one_hot * is_syn
    block = lambda left, right: ((left @ kernel) * right).sum(1)  # noqa: E731  (per-class sum of a kernel block)
    n_real, n_syn = real_hot.sum(1), syn_hot.sum(1)
    mmd2 = (block(real_hot, real_hot) / n_real.clamp_min(1.0) ** 2 + block(syn_hot, syn_hot) / n_syn.clamp_min(1.0) ** 2
            - 2.0 * block(real_hot, syn_hot) / (n_real * n_syn).clamp_min(1.0))
    return (((n_real > 0) & (n_syn > 0)).to(joint.dtype) * mmd2).sum()
