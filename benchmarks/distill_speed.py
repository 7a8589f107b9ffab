"""Distillation speed: the batched distiller against the authors' per-class loop, CIFAR-10 at IPC 10.

For DM, DM+IID and IDM+IID (published settings: 256 real images per class) it times whole iterations of
``iid_distill.distill.distill_iteration`` with the batched image step and with ``reference_per_class_step`` (the
per-class loop of the authors' code; same draws, same queue training), in fp32 and bf16 autocast, with channels_last
off and on, on the CPU and on CUDA when available. Both start from the same state and draw the same randomness, so
their first iteration must give the same loss terms (checked in fp32) and the same images.

Data: the real CIFAR-10 with ``--source ../shared/data/cifar10-jpeg.tar.gz``, else random uint8 images of CIFAR
shape (speed does not depend on the pixels). CC networks: ``--pool DIR`` or freshly initialised ResNet18s (speed
does not depend on trained weights). ``--profile`` adds where the batched iteration spends its time.

    python benchmarks/distill_speed.py --iterations 2 --warmup 1 --write reports/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

from iid_distill.data import PreparedDataset, Split, get_spec, load_dataset
from iid_distill.distill import (
    DistillConfig,
    DistillContext,
    FreshNetFactory,
    InMemoryPool,
    distill_iteration,
    initial_state,
    method_label,
    published_settings,
)
from iid_distill.models import get_network
from iid_distill.utils import device_description, git_sha

START_MARKER = "<!-- distill-speed:start -->"
END_MARKER = "<!-- distill-speed:end -->"
VARIANTS = {"dm": ("dm", "none"), "dm+iid": ("dm", "cc+cm"), "idm+iid": ("idm", "cc+cm")}
PROFILE_LABELS = ("distill/dsa", "distill/forward_real", "distill/forward_syn", "distill/cc_network", "distill/backward", "distill/train_queue")


def random_cifar(per_class: int, seed: int = 0) -> PreparedDataset:
    """Random uint8 images of CIFAR-10 shape, ``per_class`` per class (enough for 256-image class batches)."""
    spec = get_spec("cifar10")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(spec.num_classes).repeat(per_class)
    images = torch.randint(0, 256, (labels.numel(), spec.channels, spec.image_size, spec.image_size), dtype=torch.uint8, generator=generator)
    test = Split(images[: spec.num_classes * 10].clone(), labels[: spec.num_classes * 10].clone())
    sha = {key: "random" for key in ("train_images", "train_labels", "test_images", "test_labels")}
    return PreparedDataset(spec, Split(images, labels), test, [str(c) for c in range(spec.num_classes)], sha, "random uint8")


def make_pool(args, dataset, device: torch.device):
    if args.pool:
        from iid_distill.pretrain import FeaturePool

        return FeaturePool.load(args.pool, dataset.spec, device)
    spec = dataset.spec
    return InMemoryPool([get_network("ResNet18", spec.channels, spec.num_classes, spec.image_size, seed=seed).to(device) for seed in (0, 1)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_iterations(config: DistillConfig, dataset, device: torch.device, pool, reference: bool, warmup: int, iterations: int):
    """(seconds per timed iteration, first iteration's loss terms, images after the first iteration)."""
    ctx = DistillContext.create(config, dataset, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    for model in pool.models:
        model.to(memory_format=memory_format)
    state = initial_state(ctx)
    fresh_net = FreshNetFactory(config, dataset.spec, device, torch.float32) if config.method == "dm" else None
    first_terms, first_images = None, None
    for index in range(warmup + iterations):
        if index == warmup:
            _sync(device)
            started = time.perf_counter()
        terms = distill_iteration(state, ctx, fresh_net, pool, reference=reference)
        if index == 0:
            first_terms = {name: float(value) for name, value in terms.items()}
            first_images = state.images.detach().float().cpu().clone()
    _sync(device)
    return (time.perf_counter() - started) / iterations, first_terms, first_images


def profile_batched(config: DistillConfig, dataset, device: torch.device, pool) -> dict[str, float]:
    """Milliseconds per labelled part of one batched iteration (after one warm-up iteration)."""
    from torch.profiler import ProfilerActivity, profile

    ctx = DistillContext.create(config, dataset, device)
    state = initial_state(ctx)
    fresh_net = FreshNetFactory(config, dataset.spec, device, torch.float32) if config.method == "dm" else None
    distill_iteration(state, ctx, fresh_net, pool)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    started = time.perf_counter()
    with profile(activities=activities) as profiler:
        distill_iteration(state, ctx, fresh_net, pool)
        _sync(device)
    total_ms = (time.perf_counter() - started) * 1000
    parts = {"iteration (wall, profiled)": total_ms}
    for event in profiler.key_averages():
        if event.key in PROFILE_LABELS:
            device_ms = getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0)) / 1000
            parts[event.key] = device_ms if device.type == "cuda" and device_ms > 0 else event.cpu_time_total / 1000
    return parts


def benchmark(args) -> tuple[list[dict], list[tuple[str, str, dict]]]:
    dataset = load_dataset("cifar10", source=args.source, cache_dir=args.cache_dir) if args.source else random_cifar(args.per_class)
    rows, profiles = [], []
    for device_name in args.devices:
        if device_name == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped", file=sys.stderr)
            continue
        device = torch.device(device_name)
        pool = make_pool(args, dataset, device)
        for variant in args.variants:
            method, constraints = VARIANTS[variant]
            base = published_settings("cifar10", 10, method, constraints, source="paper")
            for precision in args.precisions:
                for channels_last in args.channels_last:
                    config = DistillConfig(**{**base, "precision": precision, "channels_last": channels_last == "on", "seed": args.seed})
                    label = f"{device_name} {method_label(config)} {precision} channels_last={channels_last}"
                    print(f"{label}: batched ...", file=sys.stderr, flush=True)
                    batched_s, batched_terms, batched_images = run_iterations(config, dataset, device, pool, False, args.warmup, args.iterations)
                    print(f"{label}: per-class reference ...", file=sys.stderr, flush=True)
                    reference_s, reference_terms, reference_images = run_iterations(config, dataset, device, pool, True, args.warmup, args.iterations)
                    loss_diff = max(abs(batched_terms[k] - reference_terms[k]) / max(abs(reference_terms[k]), 1e-12) for k in batched_terms)
                    image_diff = float((batched_images - reference_images).abs().max())
                    rows.append({
                        "device": device_description(device), "variant": method_label(config), "precision": precision,
                        "channels_last": channels_last, "batched_it_s": 1 / batched_s, "reference_it_s": 1 / reference_s,
                        "speedup": reference_s / batched_s, "loss_rel_diff": loss_diff, "image_max_diff": image_diff,
                        "total_loss": batched_terms["total"],
                    })
                    print(f"{label}: {1 / batched_s:.3f} vs {1 / reference_s:.3f} it/s (x{reference_s / batched_s:.2f}), "
                          f"loss rel diff {loss_diff:.1e}, image diff {image_diff:.1e}", file=sys.stderr, flush=True)
            if args.profile:
                config = DistillConfig(**{**base, "seed": args.seed})
                profiles.append((device_description(device), method_label(config), profile_batched(config, dataset, device, pool)))
    return rows, profiles


def markdown(rows, profiles, args) -> str:
    lines = [
        "## Distillation speed (benchmarks/distill_speed.py)",
        "",
        f"CIFAR-10 IPC 10, published settings (256 real images per class), {'real data' if args.source else 'random uint8 data of CIFAR shape'}, "
        f"CC networks: {'pool ' + args.pool if args.pool else 'freshly initialised ResNet18s'}. "
        f"{args.iterations} timed iteration(s) after {args.warmup} warm-up; git {git_sha()}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {datetime.date.today().isoformat()}.",
        "Batched = one pass over all classes (`image_step`); reference = the authors' per-class loop (`reference_per_class_step`),",
        "same draws. Loss rel. diff = largest relative difference of the first iteration's loss terms (fp32 rows must agree).",
        "",
        "| device | variant | precision | channels_last | batched it/s | per-class it/s | speed-up | loss rel. diff | image max diff |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['device']} | {row['variant']} | {row['precision']} | {row['channels_last']} | {row['batched_it_s']:.3f} | "
                     f"{row['reference_it_s']:.3f} | {row['speedup']:.2f}x | {row['loss_rel_diff']:.1e} | {row['image_max_diff']:.1e} |")
    for device, variant, parts in profiles:
        lines += ["", f"Where one batched {variant} iteration spends its time ({device}, fp32, ms; labels may nest in wall time):", "",
                  "| part | ms |", "|---|---:|"]
        lines += [f"| {name} | {value:.1f} |" for name, value in parts.items()]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path`` (or append the marked section), keeping everything else."""
    block = f"{START_MARKER}\n{section}{END_MARKER}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if START_MARKER in text and END_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        tail = rest.split(END_MARKER, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="CIFAR-10 source (e.g. ../shared/data/cifar10-jpeg.tar.gz); default random data")
    parser.add_argument("--cache-dir", default="resources/data")
    parser.add_argument("--per-class", type=int, default=1000, help="random images per class when no --source is given")
    parser.add_argument("--pool", default=None, help="pre-trained pool directory (default: fresh ResNet18s)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--write", default=None, help="Markdown file whose distill-speed section to write/update")
    args = parser.parse_args(argv)
    rows, profiles = benchmark(args)
    section = markdown(rows, profiles, args)
    print(section)
    if args.write:
        write_section(Path(args.write), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
