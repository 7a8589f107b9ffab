"""Distillation speed: seconds per iteration, page faults, system time and peak memory, beside the authors' code.

For DM, DM+IID and IDM+IID at CIFAR-10 IPC 10 with the published settings (256 real images per class, DSA
``color_crop_cutout_flip_scale_rotate``, init real; the IID weights of the published code, ``--settings code``),
each measurement runs in a fresh process (so peak RSS and allocator state are its own): ``--warmup`` iterations,
then ``--iterations`` timed ones, with ``getrusage`` before and after each. With ``--authors-repo`` (a checkout of
github.com/VincenDen/IID) the authors' published script of the same variant is timed the same way by
``benchmarks/authors_code.py``, interleaved with ours round by round (``--rounds``), so both see the same machine.
``--count-flops`` then runs one more, eager iteration on our side under torch's FlopCounterMode: the GFLOP of
the network passes, which both programs compute alike, for a GFLOP/s column that shows how near each side runs
to the CPU's convolution throughput.

Data: the real CIFAR-10 with ``--source ../shared/data/cifar10-jpeg.tar.gz``, else random uint8 images of CIFAR
shape (speed does not depend on the pixels). CC networks: freshly initialised ResNet18s, 2 (speed does not depend
on trained weights; the authors' side gets random ResNet18s of their own definition).

    python benchmarks/distill_speed.py --source ../shared/data/cifar10-jpeg.tar.gz --authors-repo ../authors-iid \\
        --variants dm dm+iid --iterations 3 --rounds 2 --write reports/benchmarks.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_MARKER = "<!-- distill-speed:start -->"
END_MARKER = "<!-- distill-speed:end -->"
VARIANTS = {"dm": ("dm", "none"), "dm+iid": ("dm", "cc+cm"), "idm+iid": ("idm", "cc+cm")}
AUTHORS_SCRIPTS = {"dm": "dm", "dm+iid": "dm_iid", "idm+iid": "idm_iid"}
HERE = Path(__file__).resolve().parent


def random_cifar(per_class: int, seed: int = 0):
    """Random uint8 images of CIFAR-10 shape, ``per_class`` per class (enough for 256-image class batches)."""
    import torch

    from iid_distill.data import PreparedDataset, Split, get_spec

    spec = get_spec("cifar10")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(spec.num_classes).repeat(per_class)
    images = torch.randint(0, 256, (labels.numel(), spec.channels, spec.image_size, spec.image_size), dtype=torch.uint8, generator=generator)
    test = Split(images[: spec.num_classes * 10].clone(), labels[: spec.num_classes * 10].clone())
    sha = {key: "random" for key in ("train_images", "train_labels", "test_images", "test_labels")}
    return PreparedDataset(spec, Split(images, labels), test, [str(c) for c in range(spec.num_classes)], sha, "random uint8")


def usage_stamp() -> tuple[float, float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime, usage.ru_stime, usage.ru_minflt


def measure(args) -> dict:
    """One measurement in this process: warm-up, then timed iterations of ``distill_iteration``."""
    import torch

    from iid_distill.data import load_dataset
    from iid_distill.distill import DistillConfig, DistillContext, FreshNetFactory, InMemoryPool, distill_iteration, initial_state, published_settings
    from iid_distill.models import get_network
    from iid_distill.utils import device_description

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = load_dataset("cifar10", source=args.source, cache_dir=args.cache_dir) if args.source else random_cifar(args.per_class)
    method, constraints = VARIANTS[args.measure]
    settings = published_settings("cifar10", args.ipc, method, constraints, source="code")
    overrides = {"precision": args.precision, "seed": args.seed, "batch_real": args.batch_real, "compile": args.compile, **json.loads(args.overrides)}
    config = DistillConfig(**{**settings, **overrides})
    spec = dataset.spec
    pool = InMemoryPool([get_network("ResNet18", spec.channels, spec.num_classes, spec.image_size, seed=seed).to(device) for seed in (0, 1)])
    ctx = DistillContext.create(config, dataset, device)
    state = initial_state(ctx)
    fresh_net = FreshNetFactory(config, spec, device, torch.float32) if method == "dm" else None
    stamps = []
    started = time.perf_counter()
    for index in range(args.warmup + args.iterations):
        if index >= args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(usage_stamp())
        terms = distill_iteration(state, ctx, fresh_net, pool)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stamps.append(usage_stamp())
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the counting iteration below
    gflop = count_gflop(state, dataclasses.replace(config, compile=False), dataset, device, fresh_net, pool) if args.count_flops else None
    rows = [{"wall_s": b[0] - a[0], "user_s": b[1] - a[1], "system_s": b[2] - a[2], "minor_faults": b[3] - a[3]} for a, b in zip(stamps, stamps[1:])]
    return {
        "variant": args.measure, "precision": args.precision, "device": device_description(device), "torch": torch.__version__,
        "config": {key: value for key, value in config.to_dict().items() if key in overrides or key in ("real_chunk", "syn_chunk")},
        "chunks": list(ctx.chunks), "compiled": ctx.match_forward.active, "warmup_wall_s": stamps[0][0] - started,
        "iterations": rows, "final_total_loss": float(terms["total"]),
        "wall_s_per_iteration": statistics.mean(row["wall_s"] for row in rows),
        "minor_faults_per_iteration": statistics.mean(row["minor_faults"] for row in rows),
        "system_s_per_iteration": statistics.mean(row["system_s"] for row in rows),
        "peak_rss_mb": peak_rss_mb, "gflop_per_iteration": gflop,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def count_gflop(state, config, dataset, device, fresh_net, pool) -> float:
    """GFLOP of one more (eager) iteration from ``state``, as torch's FlopCounterMode counts them: the network
    passes' convolutions and matrix products, which both programs compute alike; compiled kernels are not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from iid_distill.distill import DistillContext, distill_iteration

    ctx = DistillContext.create(config, dataset, device)
    counter = FlopCounterMode(display=False)
    with counter:
        distill_iteration(state, ctx, fresh_net, pool)
    return counter.get_total_flops() / 1e9


def run_child(command: list[str]) -> str:
    """Run one measurement process; returns its stdout."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"measurement failed ({' '.join(command)}):\n{result.stderr[-3000:]}")
    return result.stdout


def ours_command(args, variant: str, precision: str, compile_mode: str) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", variant, "--precision", precision, "--compile", compile_mode, "--device", args.device,
               "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--threads", str(args.threads), "--ipc", str(args.ipc),
               "--batch-real", str(args.batch_real), "--cache-dir", args.cache_dir, "--per-class", str(args.per_class),
               "--overrides", args.overrides, *(["--count-flops"] if args.count_flops else [])]
    return command + (["--source", args.source] if args.source else [])


def authors_command(args, variant: str, json_path: Path) -> list[str]:
    return [sys.executable, str(HERE / "authors_code.py"), "--authors-repo", args.authors_repo, "--script", AUTHORS_SCRIPTS[variant],
            "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--threads", str(args.threads), "--ipc", str(args.ipc),
            "--batch-real", str(args.batch_real), "--cache-dir", args.cache_dir, "--json", str(json_path),
            *(["--source", args.source] if args.source else [])]


def benchmark(args) -> list[dict]:
    """Rounds of (ours per precision and compile mode, then the authors') per variant; one row per (variant, precision, compile)."""
    rows: dict[tuple[str, str, str], dict] = {}
    authors: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for variant in args.variants:
            for precision in args.precisions:
                for compile_mode in args.compile_modes:
                    print(f"round {round_index + 1}: iid-distill {variant} {precision} compile={compile_mode} ...", file=sys.stderr, flush=True)
                    result = json.loads(run_child(ours_command(args, variant, precision, compile_mode)).strip().splitlines()[-1])
                    rows.setdefault((variant, precision, compile_mode), {"ours": []})["ours"].append(result)
            if args.authors_repo:
                print(f"round {round_index + 1}: authors' code {variant} ...", file=sys.stderr, flush=True)
                with tempfile.TemporaryDirectory() as folder:
                    json_path = Path(folder) / "authors.json"
                    run_child(authors_command(args, variant, json_path))
                    authors.setdefault(variant, []).append(json.loads(json_path.read_text()))
    table = []
    for (variant, precision, _), row in rows.items():
        table.append({"variant": variant, "precision": precision, "ours": row["ours"], "authors": authors.get(variant, [])})
    return table


def _mean(results: list[dict], key: str) -> float:
    return statistics.mean(result[key] for result in results)


def markdown(table: list[dict], args) -> str:
    from iid_distill.utils import cpu_model, git_sha

    import torch

    first = table[0]["ours"][0]
    counted = any(result.get("gflop_per_iteration") for row in table for result in row["ours"])
    lines = [  # no heading: --write fills the marked block under the section's own heading
        f"CIFAR-10 IPC 10, {'CIFAR-10 (JPEG copy)' if args.source else 'random uint8 data of CIFAR shape'}, published settings "
        f"(batch_real {args.batch_real}, DSA, init real, IID weights of the published code), CC networks = 2 freshly initialised "
        f"ResNet18s. Device: {first['device']}; CPU {cpu_model()}; torch {torch.__version__}; git {git_sha()}; "
        f"{datetime.date.today().isoformat()}. Each cell: a fresh process, {args.warmup} warm-up + {args.iterations} timed "
        f"iteration(s), {args.rounds} round(s) interleaved with the authors' script (`benchmarks/authors_code.py`: their "
        "published file run unmodified, with the shims listed in its docstring). s/iter: the mean per round, rounds "
        "separated by '/'. Faults and system time: per iteration, mean over rounds. Evaluation is not included.",
        "",
        "| variant | iid-distill mode | iid-distill s/iter | authors' s/iter | authors / ours | minor faults (ours / authors) | system s (ours / authors) | peak RSS MB (ours / authors) |"
        + (" GFLOP per iteration | GFLOP/s (ours / authors) |" if counted else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if counted else ""),
    ]
    for row in table:
        ours, authors = row["ours"], row["authors"]
        ours_s = " / ".join(f"{result['wall_s_per_iteration']:.3g}" for result in ours)
        if authors:
            authors_s = " / ".join(f"{result['wall_s_per_iteration']:.3g}" for result in authors)
            ratio = f"{_mean(authors, 'wall_s_per_iteration') / _mean(ours, 'wall_s_per_iteration'):.2f}x"
            faults = f"{_mean(ours, 'minor_faults_per_iteration'):,.0f} / {_mean(authors, 'minor_faults_per_iteration'):,.0f}"
            system = f"{_mean(ours, 'system_s_per_iteration'):.2f} / {_mean(authors, 'system_s_per_iteration'):.2f}"
            rss = f"{max(r['peak_rss_mb'] for r in ours):,.0f} / {max(r['peak_rss_mb'] for r in authors):,.0f}"
        else:
            authors_s, ratio = "-", "-"
            faults = f"{_mean(ours, 'minor_faults_per_iteration'):,.0f} / -"
            system = f"{_mean(ours, 'system_s_per_iteration'):.2f} / -"
            rss = f"{max(r['peak_rss_mb'] for r in ours):,.0f} / -"
        mode = row["precision"] + (", compiled" if ours[0].get("compiled") else ", eager")
        line = f"| {row['variant'].upper()} | {mode} | {ours_s} | {authors_s} | {ratio} | {faults} | {system} | {rss} |"
        lines.append(line + (_flop_rate_cells(ours, authors) if counted else ""))
    if counted:
        lines += ["", "GFLOP per iteration: counted on our side by torch's FlopCounterMode over one extra eager iteration "
                  "(convolutions and matrix products); the authors' code computes the same network passes, so their GFLOP/s "
                  "divides the same count by their time."]
    return "\n".join(lines) + "\n"


def _flop_rate_cells(ours: list[dict], authors: list[dict]) -> str:
    counts = [result["gflop_per_iteration"] for result in ours if result.get("gflop_per_iteration")]
    if not counts:
        return " - | - |"
    gflop = statistics.mean(counts)
    theirs = f"{gflop / _mean(authors, 'wall_s_per_iteration'):.0f}" if authors else "-"
    return f" {gflop:,.0f} | {gflop / _mean(ours, 'wall_s_per_iteration'):.0f} / {theirs} |"


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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="CIFAR-10 source (e.g. ../shared/data/cifar10-jpeg.tar.gz); default random data")
    parser.add_argument("--cache-dir", default="resources/data")
    parser.add_argument("--per-class", type=int, default=1000, help="random images per class when no --source is given")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of every measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile-modes", nargs="+", default=["auto"], choices=["auto", "true", "false"],
                        help="our side's DistillConfig.compile values to time: auto (params.yaml's default; on for these 20,000-iteration settings), true, false")
    parser.add_argument("--compile", default="auto", type=lambda v: {"true": True, "false": False}.get(v, v), help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help="JSON object of DistillConfig fields for our side (e.g. '{\"real_chunk\": 128}')")
    parser.add_argument("--count-flops", action="store_true",
                        help="after the timed iterations, count one more (eager) iteration's GFLOP (torch FlopCounterMode) for a GFLOP/s column")
    parser.add_argument("--authors-repo", default=None, help="checkout of github.com/VincenDen/IID to time beside ours")
    parser.add_argument("--write", default=None, help="Markdown file whose distill-speed section to write/update")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--measure", choices=list(VARIANTS), default=None, help=argparse.SUPPRESS)  # one child measurement
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cache_dir = str(Path(args.cache_dir).resolve())
    if args.source:
        args.source = str(Path(args.source).resolve())
    if args.authors_repo:
        args.authors_repo = str(Path(args.authors_repo).resolve())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    table = benchmark(args)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    section = markdown(table, args)
    print(section)
    if args.write:
        write_section(Path(args.write), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
