"""Seconds per ResNet18 training step of the CC pool's pretraining (batch 256, 32x32, SGD 0.01 / 0.9 / 5e-4, no
augmentation), ours beside the authors' published loop, in fresh processes interleaved round by round.

Variants: ``ours_fp32`` and ``ours_bf16`` (``iid_distill.evaluate.train_network``, what ``iid-distill pretrain`` runs
for one model; bf16 = ``pretrain.precision: bf16``), and ``authors_fp32``: the ResNet18 of VincenDen/IID
(``DM+ours/networks.py``, commit f0d4b30) trained by their ``utils.epoch('train', ...)``, the function their
``pre_model.py`` calls (imported from ``--authors-repo``, unmodified; their DataLoader's ``num_workers=6`` replaced by
an in-memory loader of the same batches, so both sides time the training step only). Each process times ``--steps``
steps after ``--warmup`` steps on the first (warmup + steps) x 256 training images; a model-epoch of CIFAR-10 is 196
steps. Needs ``pip install einops`` for their networks module.

    python benchmarks/pretrain_speed.py --source ../shared/data/cifar10-jpeg.tar.gz --authors-repo ../IID --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("ours_fp32", "ours_bf16", "authors_fp32")
BATCH = 256
STEPS_PER_EPOCH = 196  # ceil(50,000 / 256)


def _data(args):
    from iid_distill.data import load_dataset, normalize

    dataset = load_dataset("cifar10", source=args.source, cache_dir=args.cache_dir)
    count = (args.warmup + args.steps) * BATCH
    return normalize(dataset.train.images[:count], dataset.spec), dataset.train.labels[:count]


def _time_ours(args, images, labels, precision: str) -> list[float]:
    from iid_distill.evaluate import train_network
    from iid_distill.models import get_network
    from iid_distill.utils import make_generator

    net = get_network("ResNet18", 3, 10, 32, seed=0)
    stamps = [time.perf_counter()]
    train_network(net, images, labels, epochs=1, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=BATCH, lr_decay_epoch=1,
                  generator=make_generator(0, "cpu"), precision=precision, on_batch_end=lambda *_: stamps.append(time.perf_counter()))
    return [later - earlier for earlier, later in zip(stamps, stamps[1:])]


def _time_authors(args, images, labels) -> list[float]:
    import torch

    from iid_distill._torchvision import import_torchvision

    import_torchvision()  # the CPU wheel's torchvision through the project's guard, before their modules import it
    code_dir = Path(args.authors_repo).resolve() / "DM+ours"
    sys.path.insert(0, str(code_dir))
    import utils as authors_utils  # theirs, unmodified

    net = authors_utils.get_network("ResNet18", 3, 10, (32, 32))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    stamps = [time.perf_counter()]

    def batches():
        for start in range(0, images.shape[0], BATCH):
            yield images[start:start + BATCH], labels[start:start + BATCH]
            stamps.append(time.perf_counter())

    authors_utils.epoch("train", batches(), net, optimizer, torch.nn.CrossEntropyLoss(), argparse.Namespace(device="cpu"), aug=False)
    return [later - earlier for earlier, later in zip(stamps, stamps[1:])]


def measure(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    images, labels = _data(args)
    if args.measure == "authors_fp32":
        steps = _time_authors(args, images, labels)
    else:
        steps = _time_ours(args, images, labels, args.measure.removeprefix("ours_"))
    timed = steps[args.warmup:]
    return {"variant": args.measure, "threads": args.threads, "step_s": timed, "median_step_s": statistics.median(timed)}


def benchmark(args) -> dict:
    from iid_distill.utils import cpu_model

    runs = []
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--measure", variant, *sys.argv[1:]]
            result = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "IID_DISTILL_NO_PROGRESS": "1"})
            runs.append({"round": round_index, **json.loads(result.stdout.strip().splitlines()[-1])})
            print(f"round {round_index} {variant}: median {runs[-1]['median_step_s']:.2f} s/step", file=sys.stderr)
    summary = {}
    for variant in VARIANTS:
        medians = [run["median_step_s"] for run in runs if run["variant"] == variant]
        summary[variant] = {"median_step_s": statistics.median(medians), "per_round": medians,
                            "model_epoch_min": statistics.median(medians) * STEPS_PER_EPOCH / 60}
    authors = summary["authors_fp32"]["median_step_s"]
    for variant in VARIANTS:
        summary[variant]["speedup_vs_authors"] = authors / summary[variant]["median_step_s"]
    return {"cpu": cpu_model(), "threads": args.threads, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
            "data": "CIFAR-10 (JPEG copy)" if args.source else "resources cache", "summary": summary, "runs": runs}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="CIFAR-10 source (e.g. ../shared/data/cifar10-jpeg.tar.gz)")
    parser.add_argument("--cache-dir", dest="cache_dir", default="resources/data")
    parser.add_argument("--authors-repo", dest="authors_repo", required=True, help="checkout of github.com/VincenDen/IID (commit f0d4b30)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--measure", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    table = benchmark(args)
    print(json.dumps(table["summary"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
