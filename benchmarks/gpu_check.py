"""One-shot GPU check: CUDA code paths, the speed benchmark on CUDA and CIFAR-10 IPC 10 cells, under one folder.

Needs only torch and torchvision (no snakemake, dvc or pytest; the package is imported from ``src/``). The run of
2026-12-04 on one H200 (reports/gpu_check/README.md) took 507 s:

    PYTHONPATH=src python benchmarks/gpu_check.py --out /tmp/gpu --source data/cifar10-jpeg.tar.gz --speed-iterations 5 \
        --cells dm_iid dm dm_cc dm_cm dm_cc_eq3 random herding --convergence dm dm_iid --parallel 4 --threads 3 --deadline-s 495

Steps, each recorded in ``<out>/summary.json`` with its wall time, result and status (a failing step is recorded
and the next one runs):

1. ``checks``: device placement (networks, data and the distiller's state stay on the device), bf16 autocast (a
   convolution's output is bf16, the losses finite fp32), the vmapped evaluation ensemble (equal to training the
   seeds one by one), and the distiller on the device agreeing with the CPU for ``--agree-iterations`` DM+IID and
   IDM+IID iterations (same draws; within ``--agree-tolerance`` or within 3x the drift that a one-rounding-step
   change of the initial images causes on the CPU: see :func:`check_agreement`).
2. ``speed``: ``benchmarks/distill_speed.py --device cuda`` for DM, DM+IID, IDM+IID in fp32 and bf16.
3. ``reproduce``: a ResNet18 pool (``--pool-models`` x ``--pool-epochs``) on the real CIFAR-10, then every
   ``--cells`` entry at IPC 10 (params.yaml method ids distilled for ``--iterations`` with the published code's
   settings; coreset names selected), each evaluated by the protocol (1000 epochs) with ``--eval-seeds``; cells in
   ``--convergence`` also evaluate every ``--convergence-every`` iterations. Up to ``--parallel`` jobs share the
   device; at ``--deadline-s`` running jobs stop, so the outputs still come back inside a lease. Sets in
   ``<out>/sets``, records in ``<out>/evals``, one log per job in ``<out>/logs``.

``--device cpu`` with ``--dataset digits`` runs the same steps on the CPU at tiny sizes (the test suite does that).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _iteration_setup(variant: str, dataset, device, seed: int = 0, ipc: int = 10, **overrides):
    import torch

    from iid_distill.distill import DistillConfig, DistillContext, FreshNetFactory, InMemoryPool, initial_state, published_settings
    from iid_distill.models import get_network

    method, constraints = {"dm": ("dm", "none"), "dm_iid": ("dm", "cc+cm"), "idm_iid": ("idm", "cc+cm")}[variant]
    spec = dataset.spec
    config = DistillConfig(**{**published_settings(spec.name, ipc, method, constraints, source="code"), "seed": seed, **overrides})
    pool = InMemoryPool([get_network("ResNet18", spec.channels, spec.num_classes, spec.image_size, seed=0).to(device)])
    ctx = DistillContext.create(config, dataset, device)
    state = initial_state(ctx)
    fresh = FreshNetFactory(config, spec, torch.device(device), torch.float32) if method == "dm" else None
    return ctx, state, fresh, pool


def check_placement(dataset, device: str, ipc: int = 10) -> dict:
    """One DM+IID iteration on ``device``: every tensor of the state and the loss terms live there."""
    from iid_distill.distill import distill_iteration

    ctx, state, fresh, pool = _iteration_setup("dm_iid", dataset, device, ipc=ipc, batch_real=32)
    terms = distill_iteration(state, ctx, fresh, pool)
    devices = {str(state.images.device), str(state.velocity.device), str(ctx.train_images.device), *(str(v.device) for v in terms.values())}
    expected = str(ctx.device) if ctx.device.index is not None or ctx.device.type == "cpu" else f"{ctx.device.type}:0"
    ok = devices == {expected}
    return {"ok": ok, "devices": sorted(devices), "expected": expected}


def check_autocast(dataset, device: str, ipc: int = 10) -> dict:
    """bf16 autocast: activations inside are bf16, the loss terms are finite fp32."""
    import torch

    from iid_distill.distill import distill_iteration

    ctx, state, fresh, pool = _iteration_setup("dm_iid", dataset, device, ipc=ipc, batch_real=32, precision="bf16")
    net = fresh(0)
    probe = ctx.real_images(ctx.sampler.sample(state.device_generator)[:4])
    # a convolution's output: normalisation layers may run in fp32 by autocast's own op list (CUDA's does)
    first_conv = next(module for module in net.modules() if isinstance(module, torch.nn.Conv2d))
    seen = []
    hook = first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with ctx.autocast():
        net.feature_map(probe)
    hook.remove()
    inner = seen[0]
    terms = distill_iteration(state, ctx, fresh, pool)
    finite = all(bool(torch.isfinite(value)) for value in terms.values())
    outer = {str(value.dtype) for value in terms.values()}
    return {"ok": inner == torch.bfloat16 and finite and outer == {"torch.float32"}, "activation_dtype": str(inner), "loss_dtypes": sorted(outer), "finite": finite}


def check_vmapped_evaluation(dataset, device: str, epochs: int = 3) -> dict:
    """The vmapped seed ensemble trains the same weights as the seeds one by one (same test accuracies)."""
    import dataclasses

    import torch

    from iid_distill.evaluate import EvalConfig, train_evaluation_networks

    spec = dataset.spec
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(spec.num_classes * 2, spec.channels, spec.image_size, spec.image_size, generator=generator).to(device)
    labels = torch.arange(spec.num_classes).repeat_interleave(2).to(device)
    config = EvalConfig(epochs=epochs, arch_kwargs={"width": 16})
    batched = train_evaluation_networks(images, labels, spec, dataclasses.replace(config, seed_batching="batched"), [0, 1, 2], device)
    sequential = train_evaluation_networks(images, labels, spec, dataclasses.replace(config, seed_batching="sequential"), [0, 1, 2], device)
    difference = 0.0
    for one, two in zip(batched, sequential):
        for (name, a), (_, b) in zip(one.net.state_dict().items(), two.net.state_dict().items()):
            difference = max(difference, float((a.float() - b.float()).abs().max()))
    return {"ok": difference < 1e-4, "max_weight_difference": difference}


def _moved_draw(draw, device, cpu_pool, device_pool):
    """An IterationDraw made on the CPU, with its tensors on ``device`` and the same pool network's twin there."""
    from iid_distill.augment import GroupPlan
    from iid_distill.distill import IterationDraw, MatchDraw

    def plan_on(plan):
        if plan is None:
            return None
        return GroupPlan(plan.ops, plan.op_index.to(device), {op: {k: v.to(device) for k, v in p.items()} for op, p in plan.params.items()})

    passes = [MatchDraw(one.real_indices.to(device), plan_on(one.plan)) for one in draw.passes]
    pool_net = None if draw.pool_net is None else device_pool.models[[id(m) for m in cpu_pool.models].index(id(draw.pool_net))]
    batches = None if draw.train_batches is None else draw.train_batches.to(device)
    return IterationDraw(draw.net_seed, draw.match_slots, passes, pool_net, draw.train_slots, batches)


def check_agreement(dataset, device: str, iterations: int, tolerance: float, ipc: int = 10, variants=("dm_iid", "idm_iid"),
                    sensitivity_factor: float = 3.0) -> dict:
    """The distiller on ``device`` against the CPU for DM+IID and IDM+IID: the device run replays the CPU run's
    draws (its generators draw differently) from the same initial images; TF32 off, so both are fp32 throughout.

    The runs amplify rounding: a twin CPU run whose initial images differ by one float32 rounding step (relative
    2^-23) drifts from the CPU run by about as much as a correct device run does (CIFAR-10, IPC 10, batch_real 32,
    3 iterations: 0.017-0.019 for CC). So a variant passes when the device differs from the CPU by at most
    ``tolerance`` or by at most ``sensitivity_factor`` times that twin's drift; a real fault (a wrong term, a lost
    draw) moves the images by the size of an update, 0.1-0.4 per iteration."""
    import torch

    import iid_distill.distill as distill
    import iid_distill.distill.iteration as iteration_module  # where distill_iteration looks its draw up

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    differences, sensitivities, moved = {}, {}, {}
    original_draw = distill.draw_iteration
    for variant in variants:
        overrides = dict(ipc=ipc, batch_real=32, queue_initial=2, train_steps=2)
        cpu_ctx, cpu_state, cpu_fresh, cpu_pool = _iteration_setup(variant, dataset, "cpu", **overrides)
        dev_ctx, dev_state, dev_fresh, dev_pool = _iteration_setup(variant, dataset, device, **overrides)
        twin_ctx, twin_state, twin_fresh, _ = _iteration_setup(variant, dataset, "cpu", **overrides)
        start = cpu_state.images.clone()
        dev_state.images = start.to(device, copy=True)  # the iterations update state.images in place
        signs = torch.randint(0, 2, start.shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1
        twin_state.images = start * (1 + 2.0 ** -23 * signs)
        replay_ctx, replay_state, _, _ = _iteration_setup(variant, dataset, "cpu", **overrides)  # draws only
        for _ in range(iterations):
            distill.distill_iteration(cpu_state, cpu_ctx, cpu_fresh, cpu_pool)

            def replayed(iteration, ctx, host, dev, queue_length=0, pool=None):
                draw = original_draw(iteration, replay_ctx, replay_state.host_generator, replay_state.device_generator, queue_length, cpu_pool)
                return _moved_draw(draw, device, cpu_pool, dev_pool)

            iteration_module.draw_iteration = replayed
            try:
                distill.distill_iteration(dev_state, dev_ctx, dev_fresh, dev_pool)
            finally:
                iteration_module.draw_iteration = original_draw
            distill.distill_iteration(twin_state, twin_ctx, twin_fresh, cpu_pool)  # same seeds: the CPU run's draws
        differences[variant] = float((cpu_state.images - dev_state.images.cpu()).abs().max())
        sensitivities[variant] = float((cpu_state.images - twin_state.images).abs().max())
        moved[variant] = float((cpu_state.images - start).abs().max())
    ok = all(differences[v] <= max(tolerance, sensitivity_factor * sensitivities[v]) for v in variants)
    return {"ok": ok, "max_image_difference": differences, "rounding_sensitivity": sensitivities, "max_image_change": moved,
            "tolerance": tolerance, "sensitivity_factor": sensitivity_factor, "iterations": iterations, "tf32": False}


def run_step(name: str, function, summary: dict, out: Path) -> None:
    started = time.time()
    try:
        result = function()
        status = "ok" if result.get("ok", True) else "failed"
    except Exception as error:  # a failing step is recorded; the next one runs
        result, status = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}, "error"
    summary["steps"][name] = {"status": status, "wall_s": round(time.time() - started, 1), **result}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[gpu_check] {name}: {status} ({summary['steps'][name]['wall_s']} s)", flush=True)


def _cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), "IID_DISTILL_NO_PROGRESS": "1"}


def cli(args, *command: str) -> dict:
    """Run ``iid-distill`` (the package from src/) as a subprocess; its output goes to <out>/logs."""
    log = args.out / "logs" / f"{command[0]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log, "a") as handle:
        result = subprocess.run([sys.executable, "-m", "iid_distill.cli", *command], cwd=ROOT, env=_cli_env(), stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"iid-distill {command[0]} exited {result.returncode}; see {log}")
    return {"wall_s": round(time.time() - started, 1)}


@dataclasses.dataclass
class Job:
    """One command of the reproduction (an ``iid-distill`` call: :func:`iid_distill_command`), started once every job it
    needs has finished."""

    name: str
    command: list[str]
    needs: tuple[str, ...] = ()
    status: str = "waiting"   # waiting | running | ok | failed | skipped | stopped at the deadline
    wall_s: float | None = None


def run_jobs(jobs: list[Job], out: Path, parallel: int, deadline: float | None, threads: int) -> None:
    """Run ``jobs`` (a DAG by ``needs``) with at most ``parallel`` at once; a job whose need failed is skipped, and at
    ``deadline`` (time.time()) running jobs are stopped and waiting ones skipped. Logs: <out>/logs/<job>.log."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = {**_cli_env(), "OMP_NUM_THREADS": str(threads)}
    by_name = {job.name: job for job in jobs}
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    while any(job.status in ("waiting", "running") for job in jobs):
        for name, (process, started, handle) in list(running.items()):
            if process.poll() is not None:
                handle.close()
                by_name[name].status = "ok" if process.returncode == 0 else "failed"
                by_name[name].wall_s = round(time.time() - started, 1)
                del running[name]
                print(f"[gpu_check]   {name}: {by_name[name].status} ({by_name[name].wall_s} s)", flush=True)
        past_deadline = deadline is not None and time.time() > deadline
        for job in jobs:
            if job.status != "waiting":
                continue
            need_states = {by_name[need].status for need in job.needs}
            if past_deadline or need_states - {"ok", "waiting", "running"}:
                job.status = "skipped"
            elif need_states <= {"ok"} and len(running) < parallel:
                handle = open(out / "logs" / f"{job.name}.log", "w")
                process = subprocess.Popen(job.command, cwd=ROOT, env=env,
                                           stdout=handle, stderr=subprocess.STDOUT)
                running[job.name] = (process, time.time(), handle)
                job.status = "running"
        if past_deadline:
            for name, (process, started, handle) in running.items():
                process.terminate()
                process.wait()
                handle.close()
                by_name[name].status, by_name[name].wall_s = "stopped at the deadline", round(time.time() - started, 1)
            running.clear()
        time.sleep(0.5)


def iid_distill_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "iid_distill.cli", *arguments]


def is_coreset(cell: str) -> bool:
    from iid_distill.coreset import coreset_methods

    return cell in coreset_methods()


def uses_class_centralisation(method_id: str) -> bool:
    from iid_distill.config import load_params
    from iid_distill.distill import resolve_distill_settings

    settings = resolve_distill_settings(load_params(ROOT / "params.yaml"), "cifar10", 10, method_id)
    return "cc" in settings["constraints"].split("+")


def reproduction_jobs(args) -> list[Job]:
    """The pool, then every cell of ``--cells`` at IPC 10 (coresets by selection, the rest by distillation with the
    published code's settings), each evaluated by the protocol with ``--eval-seeds``; ``--convergence`` cells also
    evaluate every ``--convergence-every`` iterations (<set>.eval.csv)."""
    common = [*(["--source", args.source] if args.source else []), "--cache-dir", str(args.out / "cache"), "--device", args.device]
    eval_epochs = ["--epochs", str(args.eval_epochs)] if args.eval_epochs else []
    pool = args.out / "pool"
    subset = ["--set", f"subset_per_class={args.pool_subset_per_class}"] if args.pool_subset_per_class else []
    jobs = []
    if any(not is_coreset(cell) and uses_class_centralisation(cell) for cell in args.cells):
        jobs.append(Job("pretrain", iid_distill_command("pretrain", "--dataset", args.dataset, "--out", str(pool), "--num-models", str(args.pool_models),
                                     "--epochs", str(args.pool_epochs), *subset, *common)))
    for cell in args.cells:
        synthetic = args.out / "sets" / f"{args.dataset}_{cell}_ipc10.pt"
        if is_coreset(cell):
            jobs.append(Job(f"select_{cell}", iid_distill_command("coreset", "--dataset", args.dataset, "--method", cell, "--ipc", "10", "--seed", "0",
                                               "--out", str(synthetic), *common)))
        else:
            cc = uses_class_centralisation(cell)
            curve = (["--eval-every", str(args.convergence_every), "--eval-seeds", *map(str, args.convergence_seeds), *(
                ["--eval-set", f"epochs={args.eval_epochs}"] if args.eval_epochs else [])] if cell in args.convergence else [])
            jobs.append(Job(f"distill_{cell}", iid_distill_command("distill", "--dataset", args.dataset, "--ipc", "10", "--method-id", cell, "--settings", "code",
                                                "--iterations", str(args.iterations), "--seed", "0", "--out", str(synthetic),
                                                *(["--pool", str(pool)] if cc else []), *curve, *common), needs=("pretrain",) if cc else ()))
        records = args.out / "evals" / f"{args.dataset}_{cell}_ipc10.json"
        jobs.append(Job(f"evaluate_{cell}", iid_distill_command("evaluate", str(synthetic), "--out", str(records), "--seeds", *map(str, args.eval_seeds),
                                             *eval_epochs, *common), needs=(jobs[-1].name,)))
    return jobs


def reproduce(args) -> dict:
    from iid_distill.pretrain import MANIFEST_NAME

    for folder in ("sets", "evals"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    # the tensor cache is built once here, so the concurrent jobs only read it
    cli(args, "data", "prepare", args.dataset, *(["--source", args.source] if args.source else []), "--cache-dir", str(args.out / "cache"))
    jobs = reproduction_jobs(args)
    run_jobs(jobs, args.out, args.parallel, args.deadline, args.threads)
    cells = {}
    for cell in args.cells:
        records_path = args.out / "evals" / f"{args.dataset}_{cell}_ipc10.json"
        if records_path.exists():
            accuracies = [record["acc"] for record in json.loads(records_path.read_text())]
            mean = sum(accuracies) / len(accuracies)
            cells[cell] = {"accuracies": accuracies, "mean": mean, "std": (sum((a - mean) ** 2 for a in accuracies) / len(accuracies)) ** 0.5}
    manifest = args.out / "pool" / MANIFEST_NAME
    pool = json.loads(manifest.read_text()) if manifest.exists() else None
    return {"ok": all(job.status == "ok" for job in jobs), "cells": cells, "iterations": args.iterations, "eval_seeds": args.eval_seeds,
            "pool": None if pool is None else pool.get("models", pool), "jobs": {job.name: {"status": job.status, "wall_s": job.wall_s} for job in jobs}}


def speed(args) -> dict:
    command = [sys.executable, str(HERE / "distill_speed.py"), "--device", args.device, "--iterations", str(args.speed_iterations),
               "--warmup", "2", "--precisions", "fp32", "bf16", "--json", str(args.out / "speed.json"), "--cache-dir", str(args.out / "cache"),
               *(["--source", args.source] if args.source and args.dataset == "cifar10" else ["--per-class", "300"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    (args.out / "speed.md").write_text(result.stdout + "\n" + result.stderr[-3000:])
    return {"ok": result.returncode == 0, "returncode": result.returncode, "table": "speed.md"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for every output (summary.json, logs, set, records)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--source", default=None, help="dataset source, e.g. a copy of ../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--steps", nargs="+", default=["checks", "speed", "reproduce"], choices=["checks", "speed", "reproduce"])
    parser.add_argument("--agree-iterations", type=int, default=3)
    parser.add_argument("--agree-tolerance", type=float, default=1e-3)
    parser.add_argument("--speed-iterations", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=2000, help="distillation iterations of the reproduction step")
    parser.add_argument("--cells", nargs="+", default=["dm_iid"], help="IPC-10 cells to reproduce: method ids of params.yaml and coresets")
    parser.add_argument("--convergence", nargs="*", default=[], help="cells that also evaluate every --convergence-every iterations")
    parser.add_argument("--convergence-every", type=int, default=500)
    parser.add_argument("--convergence-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-epochs", type=int, default=None, help="default: the protocol's (params.yaml evaluation.epochs)")
    parser.add_argument("--pool-models", type=int, default=1)
    parser.add_argument("--pool-epochs", type=int, default=10)
    parser.add_argument("--pool-subset-per-class", type=int, default=0, help="train the pool on this many images per class (0: all)")
    parser.add_argument("--parallel", type=int, default=1, help="reproduction jobs run at once (they share the device)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each reproduction job")
    parser.add_argument("--deadline-s", type=float, default=0, help="from the script's start: reproduction jobs still running then are "
                        "stopped and waiting ones skipped, so the outputs come back inside a lease (0: none)")
    args = parser.parse_args(argv)
    args.deadline = time.time() + args.deadline_s if args.deadline_s else None
    args.out.mkdir(parents=True, exist_ok=True)
    args.out = args.out.resolve()
    if args.source:
        args.source = str(Path(args.source).resolve())
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from iid_distill.data import load_dataset
    from iid_distill.utils import device_description, portable_path

    summary = {"device": device_description(torch.device(args.device)), "torch": torch.__version__, "arguments": vars(args) | {"out": portable_path(args.out)},
               "steps": {}}
    if "checks" in args.steps:
        dataset = load_dataset(args.dataset, source=args.source, cache_dir=args.out / "cache")
        run_step("placement", lambda: check_placement(dataset, args.device), summary, args.out)
        run_step("autocast", lambda: check_autocast(dataset, args.device), summary, args.out)
        run_step("vmapped_evaluation", lambda: check_vmapped_evaluation(dataset, args.device), summary, args.out)
        run_step("agreement", lambda: check_agreement(dataset, args.device, args.agree_iterations, args.agree_tolerance), summary, args.out)
    if "speed" in args.steps:
        run_step("speed", lambda: speed(args), summary, args.out)
    if "reproduce" in args.steps:
        run_step("reproduce", lambda: reproduce(args), summary, args.out)
    failed = [name for name, step in summary["steps"].items() if step["status"] != "ok"]
    print(f"[gpu_check] {len(summary['steps']) - len(failed)}/{len(summary['steps'])} steps ok" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
