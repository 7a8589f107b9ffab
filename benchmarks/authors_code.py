"""Time the authors' published DM, DM+IID and IDM+IID scripts (VincenDen/IID, commit f0d4b30) per iteration, unmodified.

The comparison that counts for a speed claim is the authors' code on the same machine with the same settings. Their
scripts need CUDA, wandb, torchvision's CIFAR-10 download and a pool of pre-trained ResNet18s that was never
released; this driver runs ``DM+ours/main_DM.py``, ``DM+ours/main_DM_IID.py`` or ``IDM+ours/IDM_cifar10_IID.py`` as
published (``runpy``, their files untouched, nothing of theirs copied here) with these shims, each outside their code:

1. Modules: ``wandb`` (and ``visdom``, which ``torchnet`` imports for loggers never used) are stand-ins whose every
   attribute and call does nothing; ``main_DM.py`` imports a module ``cka_loss`` that was never published and that
   it never uses: an empty module. Install what their imports need first:
   ``pip install einops`` (DM), plus ``pip install --no-deps torchnet kornia kornia_rs`` (IDM; --no-deps keeps the
   CPU torch).
2. Data: CIFAR-10 from ``--source`` (e.g. the JPEG copy in ../shared) written as the official
   ``cifar-10-batches-py`` pickles; torchvision's md5 check is answered "ok" because the pickles are not the
   official bytes (no download is possible here).
3. The CC pool: ``--pool-size`` ResNet18 state dicts of THEIR ResNet18, randomly initialised (speed does not depend
   on trained weights), in a temporary folder that their ``get_premodel`` is pointed at.
4. The checkpoint key prefix: their loop adds ``module.`` to every key (2+ GPUs, ``DataParallel``); on one device
   the ResNet18 they build gets a ``load_state_dict`` that strips it again (a dict comprehension per iteration).
5. ``torchvision`` is imported through the project's guarded helper first (the CPU wheel needs it).

Settings: CIFAR-10, IPC 10, 256 real images per class, DSA ``color_crop_cutout_flip_scale_rotate``, init real; DM
and DM+IID with lr_img 1, IDM+IID with the IID README's command line. Timing: the first network each script builds
in every iteration (DM: the fresh ConvNet; IDM+IID: the CC ResNet18) opens an iteration; the driver records wall
time, CPU time, system time and minor page faults (``getrusage``) there and reports the intervals after
``--warmup`` iterations. The DM scripts evaluate at iteration 0: ``--num_eval 0`` makes that evaluation empty
(numpy warns about a mean of nothing), so no evaluation is timed; IDM+IID evaluates first at iteration 2,000.

    python benchmarks/authors_code.py --authors-repo /path/to/IID --script dm_iid --iterations 3 \
        --source ../shared/data/cifar10-jpeg.tar.gz --json authors_dm_iid.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import resource
import runpy
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class Script:
    folder: str
    file: str
    networks: str  # their module defining the ResNet18 of the CC pool
    builder: str  # their module whose get_network the script imports
    clock_model: str  # the network the script builds first in every iteration
    argv: tuple[str, ...]  # the published command line (IID README / DM defaults) beyond the shared flags


SCRIPTS = {
    "dm": Script("DM+ours", "main_DM.py", "networks", "utils", "ConvNet", ("--lr_img", "1", "--eval_mode", "SS")),
    "dm_iid": Script("DM+ours", "main_DM_IID.py", "networks", "utils", "ConvNet", ("--lr_img", "1", "--eval_mode", "SS")),
    # the IID README's IDM+IID command (eval_interval only resets meters here; its evaluations start at iteration 2000)
    "idm_iid": Script("IDM+ours", "IDM_cifar10_IID.py", "dc_networks", "dc_utils", "ResNet18",
                      ("--lr_img", "0.2", "--net_train_real", "--eval_interval", "100", "--outer_loop", "1", "--mismatch_lambda", "0",
                       "--net_decay", "--embed_last", "1000", "--syn_ce", "--ce_weight", "0.5", "--train_net_num", "1", "--aug")),
}


class _Nothing:
    """Any attribute, any call: itself (wandb.init(...), wandb.Artifact(...).add_file(...), wandb.plot.bar(...))."""

    def __getattr__(self, name: str) -> "_Nothing":
        return self

    def __call__(self, *args, **kwargs) -> "_Nothing":
        return self


def nothing_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__getattr__ = lambda attribute: _Nothing()
    return module


def write_cifar_pickles(dataset, folder: Path) -> None:
    """The prepared uint8 dataset as torchvision's cifar-10-batches-py (5 train batches, 1 test batch, meta)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images = dataset.train.images.numpy().reshape(len(dataset.train.labels), -1)
    train_labels = dataset.train.labels.tolist()
    per_batch = len(train_labels) // 5
    for index in range(5):
        rows = slice(index * per_batch, (index + 1) * per_batch if index < 4 else len(train_labels))
        with open(folder / f"data_batch_{index + 1}", "wb") as handle:
            pickle.dump({"data": train_images[rows], "labels": train_labels[rows]}, handle)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({"data": dataset.test.images.numpy().reshape(len(dataset.test.labels), -1), "labels": dataset.test.labels.tolist()}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(dataset.class_names)}, handle)


class IterationClock:
    """Stamps (wall, user CPU, system CPU, minor faults) at each iteration start."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float, float, int]] = []

    def stamp(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.stamps.append((time.perf_counter(), usage.ru_utime, usage.ru_stime, usage.ru_minflt))

    def intervals(self, warmup: int) -> list[dict[str, float]]:
        rows = []
        for before, after in zip(self.stamps[warmup:], self.stamps[warmup + 1 :]):
            rows.append({"wall_s": after[0] - before[0], "user_s": after[1] - before[1], "system_s": after[2] - before[2],
                         "minor_faults": after[3] - before[3]})
        return rows


def run(args) -> dict:
    import torch

    from iid_distill._torchvision import import_torchvision
    from iid_distill.data import load_dataset
    from iid_distill.utils import cpu_model, portable_path

    import_torchvision()
    import torchvision

    torch.set_num_threads(args.threads)
    script = SCRIPTS[args.script]
    code_dir = Path(args.authors_repo).resolve() / script.folder
    if not (code_dir / script.file).exists():
        raise SystemExit(f"--authors-repo {args.authors_repo}: no {script.folder}/{script.file} (a checkout of github.com/VincenDen/IID)")
    work = Path(tempfile.mkdtemp(prefix="authors-code-"))
    dataset = load_dataset("cifar10", source=args.source, cache_dir=args.cache_dir)
    write_cifar_pickles(dataset, work / "data" / "cifar-10-batches-py")
    torchvision.datasets.cifar.check_integrity = lambda *args, **kwargs: True  # shim 2: our pickles are not the official bytes
    torchvision.datasets.CIFAR10._check_integrity = lambda self: True

    for name in ("wandb", "visdom"):  # shim 1 (torchnet imports visdom for loggers these scripts never use)
        sys.modules[name] = nothing_module(name)
    sys.modules["cka_loss"] = types.ModuleType("cka_loss")  # main_DM.py imports this unpublished module and never uses it
    sys.path.insert(0, str(code_dir))
    os.chdir(code_dir)
    networks = importlib.import_module(script.networks)  # theirs
    builder = importlib.import_module(script.builder)  # theirs: the module whose get_network the script imports
    premodel = importlib.import_module("utils")  # theirs: get_premodel

    pool_dir = work / "pool"
    pool_dir.mkdir()
    for index in range(args.pool_size):  # shim 3: random ResNet18s of their own definition
        torch.save(networks.ResNet18(channel=3, num_classes=10).state_dict(), pool_dir / f"res18_{index}.pt")
    premodel.get_premodel.__defaults__ = (str(pool_dir),)

    clock = IterationClock()
    original_get_network = builder.get_network

    def get_network(model, *rest, **kwargs):
        if model == script.clock_model:
            clock.stamp()
        net = original_get_network(model, *rest, **kwargs)
        if model == "ResNet18" and not isinstance(net, torch.nn.DataParallel):  # shim 4
            load = net.load_state_dict
            net.load_state_dict = lambda state, *a, **k: load({key.removeprefix("module."): value for key, value in state.items()}, *a, **k)
        return net

    builder.get_network = get_network
    total = args.warmup + args.iterations
    sys.argv = [script.file, "--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", str(args.ipc), "--init", "real",
                "--dsa_strategy", "color_crop_cutout_flip_scale_rotate", "--num_exp", "1", "--num_eval", "0",
                "--Iteration", str(total), "--batch_real", str(args.batch_real),
                "--data_path", str(work / "data"), "--save_path", str(work / "result"), *script.argv]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mean of an empty evaluation list at iteration 0
        runpy.run_path(str(code_dir / script.file), run_name="__main__")
    clock.stamp()  # the end of the last iteration (their final save is included in it)
    rows = clock.intervals(args.warmup)[: args.iterations]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    arguments = [argument.replace(str(work), "<work>") for argument in sys.argv[1:]]  # the temporary folder, not a machine path
    return {"script": f"{script.folder}/{script.file}", "arguments": arguments, "ipc": args.ipc, "batch_real": args.batch_real,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__, "warmup": args.warmup,
            "iterations": rows, "wall_s_per_iteration": sum(row["wall_s"] for row in rows) / len(rows),
            "minor_faults_per_iteration": sum(row["minor_faults"] for row in rows) / len(rows),
            "system_s_per_iteration": sum(row["system_s"] for row in rows) / len(rows),
            "peak_rss_mb": peak_rss_mb, "data": portable_path(args.source) if args.source else "resources", "pool_size": args.pool_size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-repo", required=True, help="checkout of github.com/VincenDen/IID (commit f0d4b30)")
    parser.add_argument("--script", choices=list(SCRIPTS), default="dm_iid")
    parser.add_argument("--source", default=None, help="CIFAR-10 source for iid-distill (e.g. ../shared/data/cifar10-jpeg.tar.gz)")
    parser.add_argument("--cache-dir", default="resources/data")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--batch-real", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="iterations run before timing (the first one evaluates nothing but warms up)")
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)
    args.cache_dir = str(Path(args.cache_dir).resolve())
    if args.source:
        args.source = str(Path(args.source).resolve())
    json_path = Path(args.json).resolve() if args.json else None
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
