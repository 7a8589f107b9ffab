"""The host plug-in point: hosts registered from a test module (no edits to the package), one with its own loss used by
id through the CLI and the library; DataDAM's and M3D's objectives against slow direct computations."""

from __future__ import annotations

import json

import pytest
import torch

import sys
import textwrap

from torch import nn

from iid_distill.cli import main as cli_main
from iid_distill.distill import (
    HOSTS,
    DistillConfig,
    DistillContext,
    DistillError,
    Host,
    InMemoryPool,
    MatchDraw,
    RealSampler,
    batched_loss_terms,
    method_ids,
    published_settings,
    register_host,
    run_distillation,
)
from iid_distill.distill.hosts import M3DHost, class_mmd2
from iid_distill.distill.networks import frozen
from iid_distill.models import get_network
from iid_distill.synthetic import load_synthetic_set


class FixedNetHost(Host):
    """A toy host: DM's matching, but through ONE random network kept for the whole run (seeded by the run's seed)."""

    name = "fixednet"
    code_iid_weights = (0.05, 0.01)

    def published_settings(self, spec, ipc, source):
        return dict(lr_img=1.0, expand_factor=1, image_step="joint", ce_weight=0.0)

    def fresh_net_factory(self, config, spec, device, dtype):
        return HOSTS["dm"].fresh_net_factory(config, spec, device, dtype)

    def draw_networks(self, iteration, config, host_generator, queue_length):
        return None, [], 1, queue_length  # nothing to draw: the same network every iteration

    def matchers(self, state, ctx, draw, fresh_net):
        return [(fresh_net(ctx.config.seed), 0.0)]


@pytest.fixture
def fixednet_host():
    register_host(FixedNetHost())
    yield HOSTS["fixednet"]
    HOSTS.pop("fixednet")


def test_a_registered_host_distils_digits_with_iids_constraints(digits, tmp_path, fixednet_host):
    settings = published_settings("digits", 2, "fixednet", "cc+cm")
    assert (settings["lambda_cc"], settings["lambda_cm"], settings["image_step"]) == (0.05, 0.01, "joint")
    config = DistillConfig(**{**settings, "iterations": 3, "batch_real": 16, "arch_kwargs": {"width": 8}, "log_every": 1})
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=101, width=4)])
    record = run_distillation(config, digits, tmp_path / "fixed.pt", "cpu", pool=pool, progress=False)
    sset = load_synthetic_set(tmp_path / "fixed.pt")
    assert sset.meta["method"] == "FIXEDNET+IID" and sset.meta["method_id"] == "fixednet_iid" and sset.meta["iteration"] == 3
    losses = json.loads((tmp_path / "fixed.json").read_text())["loss_log"]
    assert all(entry["cc"] > 0 and entry["cm"] > 0 and entry["mean"] > 0 for entry in losses)  # IID's terms act on it
    # its images moved, and differently from DM's (which draws a new network every iteration)
    dm = DistillConfig(**{**published_settings("digits", 2, "dm", "cc+cm"), "iterations": 3, "batch_real": 16, "arch_kwargs": {"width": 8}})
    run_distillation(dm, digits, tmp_path / "dm.pt", "cpu", pool=pool, progress=False)
    assert not torch.equal(sset.images, load_synthetic_set(tmp_path / "dm.pt").images)
    assert record["iterations"] == 3


def test_an_unknown_host_is_a_one_line_error():
    with pytest.raises(DistillError, match="unknown method 'fixednet'; expected one of dm, idm, datadam, m3d"):
        DistillConfig(method="fixednet")


# A host with its own loss, in a module of the user's own: matches the class means of the embeddings by cosine distance.
PLUGIN = textwrap.dedent('''
    import torch.nn.functional as F

    from iid_distill.distill import register_host
    from iid_distill.distill.hosts import DMHost
    from iid_distill.losses import class_means


    class CosineHost(DMHost):
        name = "cosmatch"

        def matching_loss(self, real, real_labels, syn, syn_labels, num_classes, config):
            real_means, _ = class_means(real.embedding, real_labels, num_classes)
            syn_means, _ = class_means(syn.embedding, syn_labels, num_classes)
            return (1.0 - F.cosine_similarity(real_means, syn_means, dim=1)).sum()


    register_host(CosineHost())
''')


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    (tmp_path / "my_hosts.py").write_text(PLUGIN)
    (tmp_path / "params.yaml").write_text("plugins: [my_hosts]\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    HOSTS.pop("cosmatch", None)
    sys.modules.pop("my_hosts", None)
    sys.path[:] = [entry for entry in sys.path if entry != str(tmp_path)]


def test_a_host_with_its_own_loss_distils_digits_by_id_through_the_cli_and_the_library(plugin_folder, digits, tmp_path):
    from iid_distill.api import distill_dataset

    assert "cosmatch_cm" not in method_ids()
    out = tmp_path / "cos.pt"
    code = cli_main(["distill", "--params", "params.yaml", "--dataset", "digits", "--ipc", "2", "--method-id", "cosmatch_cm",
                     "--iterations", "2", "--set", "batch_real=16", "--set", "arch_kwargs={width: 8}", "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(out), "--device", "cpu"])
    assert code in (0, None)
    assert "cosmatch_cm" in method_ids()  # the params' plugins registered it
    sset = load_synthetic_set(out)
    assert sset.meta["method"] == "COSMATCH+CM" and sset.meta["method_id"] == "cosmatch_cm"
    losses = json.loads((tmp_path / "cos.json").read_text())["loss_log"]
    assert all(0 < entry["mean"] < 2 * 10 and entry["cm"] > 0 for entry in losses)  # its own (bounded) loss, with CM beside it
    result = distill_dataset(digits, "cosmatch", ipc=2, iterations=2, batch_real=16, arch_kwargs={"width": 8})
    assert result.synthetic_set.meta["method_id"] == "cosmatch" and result.record["iterations"] == 2


def test_an_unimportable_plugin_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("plugins: [no_such_hosts]\n")
    monkeypatch.chdir(tmp_path)
    code = cli_main(["distill", "--params", "params.yaml", "--dataset", "digits", "--ipc", "2", "--method-id", "dm", "--out", "x.pt"])
    assert code == 2 and "params key 'plugins': cannot import 'no_such_hosts'" in capsys.readouterr().err


def _direct_datadam_loss(net, real, real_labels, syn, syn_labels, config, num_classes):
    """DataDAM's loss by its definition: hooks on the ReLUs, one forward per side, per-class loops, explicit norms."""
    def forward(images):
        outputs = []
        hooks = [module.register_forward_hook(lambda m, i, o: outputs.append(o)) for module in net.features if isinstance(module, nn.ReLU)]
        embedding = net.features(images).flatten(1)
        for hook in hooks:
            hook.remove()
        return outputs, embedding

    (real_maps, real_embedding), (syn_maps, syn_embedding) = forward(real), forward(syn)
    total = syn.new_zeros(())
    for c in range(num_classes):
        r, s = real_labels == c, syn_labels == c
        for real_map, syn_map in zip(real_maps[:-1], syn_maps[:-1]):
            attention = lambda a: a.abs().pow(config.datadam_power).sum(1).flatten(1)  # noqa: E731
            unit = lambda a: a / a.norm(dim=1, keepdim=True)  # noqa: E731
            total = total + config.datadam_scale * (unit(attention(real_map[r])).mean(0) - unit(attention(syn_map[s])).mean(0)).pow(2).sum()
        total = total + config.datadam_scale * config.datadam_task_balance * (real_embedding[r].mean(0) - syn_embedding[s].mean(0)).pow(2).sum()
    return total


@pytest.mark.parametrize("source", ["code", "paper"])
def test_datadam_loss_and_gradient_equal_the_direct_computation(digits, source):
    settings = {**published_settings("digits", 2, "datadam", "none", source), "batch_real": 6, "dsa": False, "iterations": 1,
                "arch_kwargs": {**published_settings("digits", 2, "datadam", "none", source)["arch_kwargs"], "width": 8}}
    config = DistillConfig(**settings)
    assert (config.datadam_power, config.arch_kwargs["norm"]) == ((1.0, "batchnorm") if source == "code" else (4.0, "instancenorm"))
    ctx = DistillContext.create(config, digits, "cpu", torch.float64)
    generator = torch.Generator().manual_seed(3)
    draw = MatchDraw(ctx.sampler.sample(generator), None)
    net = get_network("ConvNet", 1, 10, 32, seed=5, width=8, norm=config.arch_kwargs["norm"]).double()
    images = ctx.real_images(RealSampler(ctx.train_labels, 10, 2).sample(generator)).clone().requires_grad_(True)
    with frozen(net, train_mode=True):
        ours = batched_loss_terms(images, net, ctx, draw)["mean"]
        direct = _direct_datadam_loss(net, ctx.real_images(draw.real_indices), ctx.sampler.labels, images, ctx.syn_labels, config, 10)
    (our_gradient,) = torch.autograd.grad(ours, images)
    (direct_gradient,) = torch.autograd.grad(direct, images)
    assert torch.allclose(ours, direct, rtol=1e-10, atol=0) and ours > 0
    assert torch.allclose(our_gradient, direct_gradient, rtol=1e-8, atol=1e-14)


def test_datadam_refuses_what_its_joint_batches_cannot_run():
    with pytest.raises(DistillError, match="DataDAM takes one joint step"):
        DistillConfig(method="datadam", image_step="per_class")
    with pytest.raises(DistillError, match="distill.arch = 'ResNet18': DataDAM reads"):
        DistillConfig(method="datadam", arch="ResNet18")


def _direct_mmd2(real, syn, kernels=5):
    """M3D's MMD^2 of one class by its definition: double sums, h the mean squared distance over distinct pairs (no grad)."""
    joint = torch.cat([real, syn])
    pairs = [(i, j) for i in range(len(joint)) for j in range(len(joint)) if i != j]
    h = sum(float((joint[i] - joint[j]).pow(2).sum()) for i, j in pairs) / len(pairs)
    powers = range(-(kernels // 2), kernels - kernels // 2)
    k = lambda x, y: sum(torch.exp(-(x - y).pow(2).sum() / (h * 2.0**e)) for e in powers)  # noqa: E731
    mean = lambda a, b: sum(k(x, y) for x in a for y in b) / (len(a) * len(b))  # noqa: E731
    return mean(real, real) + mean(syn, syn) - 2 * mean(real, syn)


def test_m3d_mmd_equals_the_double_sum():
    generator = torch.Generator().manual_seed(0)
    real, syn = torch.randn(7, 4, generator=generator, dtype=torch.float64), torch.randn(3, 4, generator=generator, dtype=torch.float64)
    zeros = lambda n: torch.zeros(n, dtype=torch.int64)  # noqa: E731  (one class)
    assert torch.allclose(class_mmd2(real, zeros(7), syn, zeros(3), 1, 5), _direct_mmd2(real, syn), rtol=1e-12)
    assert float(class_mmd2(real, zeros(7), real.clone(), zeros(7), 1, 5)) == pytest.approx(0.0, abs=1e-12)


def test_m3d_all_classes_at_once_equal_the_per_class_loop_in_any_row_order():
    generator = torch.Generator().manual_seed(1)
    real_labels = torch.tensor([0] * 5 + [1] * 4 + [3] * 6)  # class 2 has no real rows, class 3 no synthetic ones
    syn_labels = torch.tensor([1, 0, 2, 1, 0, 0])  # patch-major like IDM's expansion: not class-major
    real = torch.randn(15, 6, generator=generator, dtype=torch.float64)
    syn = torch.randn(6, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    loop = sum(_direct_mmd2(real[real_labels == c], syn[syn_labels == c]) for c in (0, 1))
    batched = class_mmd2(real, real_labels, syn, syn_labels, 4, 5)
    assert torch.allclose(batched, loop, rtol=1e-12)
    assert torch.allclose(torch.autograd.grad(batched, syn)[0], torch.autograd.grad(loop, syn)[0], rtol=1e-10, atol=1e-14)


def test_m3d_reuses_a_network_for_m3d_net_reuse_iterations():
    host, config = M3DHost(), DistillConfig(method="m3d", m3d_net_reuse=3, seed=4)
    seeds = [host.draw_networks(iteration, config, torch.Generator(), 0)[0] for iteration in range(7)]
    assert seeds[0] == seeds[1] == seeds[2] != seeds[3] == seeds[4] == seeds[5] != seeds[6]


@pytest.mark.parametrize("method_id", ["datadam_iid", "m3d_iid"])
def test_the_new_hosts_distil_digits_with_iids_constraints(digits, tmp_path, method_id):
    from iid_distill.api import distill_dataset

    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=101, width=4)])
    result = distill_dataset(digits, method_id, ipc=2, iterations=2, batch_real=8, pool=pool,
                             arch_kwargs={"width": 8})  # merged with the host's published arch_kwargs
    assert all(entry["cc"] > 0 and entry["cm"] > 0 and entry["mean"] > 0 for entry in result.record["loss_log"])
    assert result.synthetic_set.meta["method"] == f"{method_id.split('_')[0].upper()}+IID"
    expected = {"width": 8, "norm": "batchnorm"} if method_id == "datadam_iid" else {"width": 8}
    assert result.record["params"]["arch_kwargs"] == expected  # the override merged with the host's published options
