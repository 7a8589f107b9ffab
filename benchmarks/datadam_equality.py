"""One DataDAM iteration of iid-distill beside the official code's pieces, in float64: loss, gradient and new images.

The official code (DataDistillation/DataDAM, ``main_DataDAM.py``) computes its loss inline in ``main()``, so its loop
cannot be called; this driver imports what it can of theirs, unmodified, and follows ``main()`` line by line for the
rest (nothing of theirs is copied into the package):

- theirs, imported: ``networks.ConvNet`` (built as their ``get_network('ConvNet')`` builds it: width 128, depth 3,
  ReLU, average pooling, BatchNorm forced) and ``utils.get_attention`` (called as ``main()`` calls it: param=1,
  exp=1, norm='l2');
- following ``main()``: a forward hook on every ReLU of ``net.features`` keeping a clone of its output, ``net.train()``
  with frozen parameters, one forward of all classes' real images and one of all synthetic images, ``error(...,
  "MSE_B")`` (per class ||mean real - mean syn||^2, summed), ``100 * error`` per hooked layer but the last, plus
  ``100 * task_balance * error`` of the embeddings, and ``torch.optim.SGD([image_syn], lr_img, momentum=0.5)``.

Ours: ``batched_loss_and_gradient`` and ``image_step`` of the ``datadam`` host with the same network weights, real
images and initial images (DSA off on both sides: the siamese DSA is shared with DM, checked there). Their modules
import ``kornia`` and ``scipy.ndimage.interpolation`` (removed from SciPy) only for code not used here: empty stand-ins.

    python benchmarks/datadam_equality.py --datadam-repo /path/to/DataDAM --source ../shared/data/cifar10-jpeg.tar.gz \
        --json reports/hosts/datadam_equality.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import torch


def import_theirs(repo: Path):
    for name in ("kornia", "scipy.ndimage.interpolation"):
        stand_in = types.ModuleType(name)
        stand_in.rotate = None
        sys.modules.setdefault(name, stand_in)
    from iid_distill._torchvision import import_torchvision

    import_torchvision()
    sys.path.insert(0, str(repo))
    import networks  # noqa: E402  (theirs)
    import utils  # noqa: E402  (theirs)

    return networks.ConvNet, utils.get_attention


def their_iteration(net, get_attention, real, syn, labels_count, ipc, batch_real, task_balance, lr_img):
    """Their loss, gradient and SGD step, as main() computes them (see the module docstring)."""
    activations = {}
    hooks = [module.register_forward_hook(lambda m, i, o, key=index: activations.__setitem__(key, o.clone()))
             for index, module in enumerate(net.features) if isinstance(module, torch.nn.ReLU)]
    net.train()
    for parameter in net.parameters():
        parameter.requires_grad = False
    image_syn = syn.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([image_syn], lr=lr_img, momentum=0.5)
    output_real = net(real)[0].detach()
    real_maps = [activations[key] for key in sorted(activations)]
    activations.clear()
    output_syn = net(image_syn)[0]
    syn_maps = [activations[key] for key in sorted(activations)]
    for hook in hooks:
        hook.remove()

    def mse_b(r, s):
        return torch.sum((torch.mean(r.reshape(labels_count, batch_real, -1), dim=1) - torch.mean(s.reshape(labels_count, ipc, -1), dim=1)) ** 2)

    loss = torch.zeros((), dtype=real.dtype)
    for layer in range(len(real_maps) - 1):
        real_attention = get_attention(real_maps[layer].detach(), param=1, exp=1, norm="l2")
        syn_attention = get_attention(syn_maps[layer], param=1, exp=1, norm="l2")
        loss = loss + 100 * mse_b(real_attention, syn_attention)
    loss = loss + 100 * task_balance * mse_b(output_real, output_syn)
    optimizer.zero_grad()
    loss.backward()
    gradient = image_syn.grad.clone()
    optimizer.step()
    return loss.detach(), gradient, image_syn.detach()


def our_iteration(net, dataset, real_indices, syn, ipc, batch_real):
    from iid_distill.distill import DistillConfig, DistillContext, MatchDraw, batched_loss_and_gradient, image_step, published_settings
    from iid_distill.distill.networks import frozen

    settings = {**published_settings("cifar10", ipc, "datadam"), "batch_real": batch_real, "dsa": False, "iterations": 1}
    config = DistillConfig(**settings)
    ctx = DistillContext.create(config, dataset, "cpu", torch.float64)
    draw = MatchDraw(real_indices, None)
    with frozen(net, train_mode=True):
        images, _, terms = image_step(syn.clone(), torch.zeros_like(syn), ctx.syn_labels,
                                      lambda point: batched_loss_and_gradient(point, net, ctx, draw), config, ctx.num_classes)
        _, gradient = batched_loss_and_gradient(syn.clone(), net, ctx, draw)
    return terms["mean"], gradient, images, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datadam-repo", required=True, type=Path)
    parser.add_argument("--source", required=True, help="CIFAR-10 source (e.g. ../shared/data/cifar10-jpeg.tar.gz)")
    parser.add_argument("--cache-dir", default="resources/data")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the comparison here (an existing file needs --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    if args.json:
        from iid_distill.outputs import OutputError, check_outputs

        try:
            check_outputs([args.json], force=args.force)  # before the work, not after
        except OutputError as error:
            raise SystemExit(f"datadam_equality: {error}") from None

    from iid_distill.data import load_dataset
    from iid_distill.distill import RealSampler
    from iid_distill.models import get_network

    ConvNet, get_attention = import_theirs(args.datadam_repo)
    dataset = load_dataset("cifar10", source=args.source, cache_dir=args.cache_dir)
    spec = dataset.spec
    torch.manual_seed(args.seed)
    theirs = ConvNet(channel=3, num_classes=10, net_width=128, net_depth=3, net_act="relu", net_norm="batchnorm",
                     net_pooling="avgpooling", im_size=(32, 32)).double()
    ours = get_network("ConvNet", 3, 10, 32, norm="batchnorm").double()
    ours.load_state_dict(theirs.state_dict())
    generator = torch.Generator().manual_seed(args.seed)
    real_indices = RealSampler(dataset.train.labels, spec.num_classes, args.batch_real).sample(generator)
    syn_indices = RealSampler(dataset.train.labels, spec.num_classes, args.ipc).sample(generator)
    # normalised in float32 then widened, as iid-distill's DistillContext.real_images reads the uint8 images
    normalise = lambda idx: ((dataset.train.images[idx].float() / 255.0 - torch.tensor(spec.mean).view(-1, 1, 1))  # noqa: E731
                             / torch.tensor(spec.std).view(-1, 1, 1)).double()
    real, syn = normalise(real_indices), normalise(syn_indices)
    their_loss, their_gradient, their_images = their_iteration(theirs, get_attention, real, syn, spec.num_classes, args.ipc,
                                                               args.batch_real, 0.01, 1.0)
    our_loss, our_gradient, our_images, config = our_iteration(ours, dataset, real_indices, syn, args.ipc, args.batch_real)
    relative = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    result = {
        "what": "one DataDAM iteration (settings: code) of iid-distill beside the official code's ConvNet and get_attention, float64",
        "datadam_commit": subprocess.run(["git", "-C", str(args.datadam_repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "data": "CIFAR-10 (JPEG copy)", "ipc": args.ipc, "batch_real": args.batch_real, "dsa": False, "seed": args.seed,
        "settings": {key: getattr(config, key) for key in ("lr_img", "momentum_img", "arch_kwargs", "datadam_power",
                                                            "datadam_task_balance", "datadam_scale")},
        "loss_theirs": float(their_loss), "loss_ours": float(our_loss),
        "loss_relative_difference": abs(float(our_loss) - float(their_loss)) / abs(float(their_loss)),
        "gradient_max_relative_difference": relative(our_gradient, their_gradient),
        "images_max_abs_difference": float((our_images - their_images).abs().max()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from iid_distill.utils import atomic_write_text

        atomic_write_text(text + "\n", args.json)
    return 0 if result["gradient_max_relative_difference"] < 1e-10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
