"""run_distillation: a whole run with its outputs (set, record, grid, accuracy curve), checkpoints and resume."""

from __future__ import annotations

import csv
import io
import os
import resource
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from iid_distill.distill.checkpoint import checkpoint_path, resume_state, save_checkpoint
from iid_distill.distill.context import DistillContext
from iid_distill.distill.iteration import DistillState, distill_iteration, initial_state
from iid_distill.distill.networks import FeatureNetPool, _has_batch_statistics
from iid_distill.distill.settings import DistillConfig, DistillError, LOSS_TERMS, host_of, method_id_of, structural_label
from iid_distill.names import METHOD_LABELS
from iid_distill.losses import warn_if_degenerate
from iid_distill.utils import atomic_path, atomic_write_json, device_description, git_sha, json_round_trip, portable_path, progress_bar


def output_paths(out_path: str | os.PathLike) -> dict[str, Path]:
    """Files of a run: the synthetic set, its JSON record, image grid, accuracy-vs-iteration CSV and checkpoint."""
    out = Path(out_path)
    return {"set": out, "record": out.with_suffix(".json"), "grid": out.with_suffix(".png"), "eval_csv": out.with_suffix(".eval.csv"),
            "checkpoint": checkpoint_path(out)}


def synthetic_params(config: DistillConfig, ctx: DistillContext, pool_info: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter of the run, with the DSA strategy resolved, for the synthetic set's meta and the record."""
    params = json_round_trip(config.to_dict())
    params["dsa_strategy"] = ctx.dsa_config.strategy if ctx.dsa_config is not None else None
    params["method_label"] = structural_label(config)  # the run's method id, when known, gives the display label
    params["cc_pool"] = pool_info
    params["chunks_in_effect"] = dict(zip(("real", "syn"), ctx.chunks))
    return params


def run_method_id(config: DistillConfig, params: dict[str, Any]) -> str:
    """The method id a run was asked for (the command line's --method-id, in its provenance), else the id of its
    method and constraints."""
    return ((params.get("provenance") or {}).get("method_id")) or method_id_of(config.method, config.constraints)


def current_synthetic_set(state: DistillState, ctx: DistillContext, params: dict[str, Any]):
    from iid_distill.synthetic import SyntheticSet

    config = ctx.config
    meta = {
        "dataset": ctx.spec.name,
        "ipc": config.ipc,
        "method": structural_label(config),
        "method_id": run_method_id(config, params),
        "method_label": params.get("method_label", structural_label(config)),
        "params": params,
        "seed": config.seed,
        "git_sha": git_sha(),
        "expand_factor": config.expand_factor,
        "iteration": state.iteration,
    }
    from iid_distill.data import get_spec

    if ctx.num_classes != get_spec(ctx.spec.name).num_classes:
        meta["classes"] = list(range(ctx.num_classes))  # a class subset (continual learning), labelled 0..k-1
    return SyntheticSet(state.images.detach().to("cpu", torch.float32, copy=True), ctx.syn_labels.cpu(), meta)  # the run updates state.images in place


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)), "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "peak_memory_kind": "ru_maxrss (process)"}


def _write_eval_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["iteration", "seed", "acc"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row[key] for key in ("iteration", "seed", "acc")})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _check_finite(first_bad: torch.Tensor) -> None:
    bad_iteration = int(first_bad)
    if bad_iteration >= 0:
        raise DistillError(
            f"the loss became NaN or infinite at iteration {bad_iteration}; lower lr_img or the lambdas (cc_form 'paper' "
            f"can overflow exp(): try cc_form 'squared'); the last checkpoint holds the state before it"
        )


def _load_pool(config: DistillConfig, dataset, device: torch.device, pool_dir: str | os.PathLike | None, pool: FeatureNetPool | None):
    if not config.uses_cc:
        return None, None
    if pool is None:
        if pool_dir is None:
            raise DistillError(f"constraints {config.constraints!r} include 'cc', which needs pre-trained ResNet18s: pass --pool DIR "
                               f"(build one with `iid-distill pretrain --dataset {dataset.spec.name} --out DIR`)")
        from iid_distill.pretrain import FeaturePool

        pool = FeaturePool.load(pool_dir, dataset.spec, device, arch=config.cc_arch, dataset_sha256=dict(dataset.sha256))
    if config.channels_last:
        for model in getattr(pool, "models", []):
            model.to(memory_format=torch.channels_last)
    describe = getattr(pool, "describe", None)
    return pool, (describe() if callable(describe) else {"kind": type(pool).__name__})


def run_distillation(
    config: DistillConfig,
    dataset,
    out_path: str | os.PathLike,
    device: torch.device | str,
    pool_dir: str | os.PathLike | None = None,
    eval_config=None,
    progress: bool = True,
    *,
    restart: bool = False,
    pool: FeatureNetPool | None = None,
    eval_seeds: Sequence[int] = (0,),
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Distil ``dataset`` with ``config`` into ``out_path`` (a synthetic-set ``.pt``); return the run record.

    Writes, atomically: the synthetic set (meta: dataset, ipc, method label, every parameter, seed, git sha,
    expand_factor), ``<stem>.json`` (the record: losses per term at log points, iterations, wall time, it/s, peak
    memory, device, parameters), ``<stem>.png`` (image grid) and, with ``eval_every > 0``, ``<stem>.eval.csv``
    (iteration, seed, acc: the evaluation protocol of ``eval_config`` at iterations 0, eval_every, ... and the end).
    Every ``checkpoint_every`` iterations the whole state goes to ``<out>.ckpt``; running the same call again resumes
    from it (bit-identical on CPU to an uninterrupted run). A checkpoint that is unreadable or was written for other
    settings / data is refused (CheckpointError) unless ``restart`` deletes it. The checkpoint is removed once the
    outputs are written. The CC networks come from ``pool`` or are loaded once from ``pool_dir``. ``provenance``
    (plain values, e.g. the workflow's method id and settings source) is stored in the meta params and the record.
    """

    device = torch.device(device)
    paths = output_paths(out_path)
    fresh_net = host_of(config.method).fresh_net_factory(config, dataset.spec, device, torch.float32)
    _check_architecture(config, dataset.spec, fresh_net)
    if config.constraints != "none":
        warn_if_degenerate(config.ipc, config.expand_factor)
    pool, pool_info = _load_pool(config, dataset, device, pool_dir, pool)
    ctx = DistillContext.create(config, dataset, device)
    state, resumed_from = _start_state(paths["checkpoint"], ctx, dataset, restart)
    params = synthetic_params(config, ctx, pool_info)
    params["provenance"] = json_round_trip(provenance or {})
    params["method_label"] = METHOD_LABELS.get(run_method_id(config, params), params["method_label"])  # names.py's label of a known id
    evaluation = PeriodicEvaluation(state, ctx, params, dataset, eval_config, eval_seeds, device)
    session_start_iteration = state.iteration
    session_wall = _distill_loop(state, ctx, fresh_net, pool, paths["checkpoint"], dataset, evaluation, progress)
    _write_outputs(current_synthetic_set(state, ctx, params), state.eval_rows, paths)
    session_iterations = state.iteration - session_start_iteration
    distill_wall = session_wall - evaluation.wall_s
    record = {
        "dataset": dataset.spec.name,
        "dataset_sha256": dict(dataset.sha256),
        "ipc": config.ipc,
        "method": structural_label(config),
        "method_id": run_method_id(config, params),
        "seed": config.seed,
        "iterations": config.iterations,
        "params": params,
        "params_hash": config.result_hash(),
        "resumed_from": resumed_from,
        "wall_s": state.elapsed_s + session_wall,
        "session_wall_s": session_wall,
        "session_eval_wall_s": evaluation.wall_s,
        "session_iterations": session_iterations,
        "it_per_s": session_iterations / distill_wall if session_iterations and distill_wall > 0 else None,  # evaluation excluded
        "compiled": ctx.match_forward.active,  # this session's network passes ran through torch.compile
        **_peak_memory(device),
        "device": device_description(device),
        "git_sha": git_sha(),
        "loss_log": state.loss_log,
        "final_losses": state.loss_log[-1] if state.loss_log else None,
        "eval": state.eval_rows,
        "outputs": {name: portable_path(path) for name, path in paths.items() if name != "checkpoint" and (name != "eval_csv" or state.eval_rows)},
    }
    atomic_write_json(record, paths["record"])
    if paths["checkpoint"].exists():
        paths["checkpoint"].unlink()  # the outputs hold the final state; a re-run starts afresh
    return record


def _check_architecture(config: DistillConfig, spec, fresh_net) -> None:
    """The matching network may not couple the classes through batch statistics, unless its host forwards every class in
    one batch per side as its code does (``joint_batches``: DataDAM)."""
    if host_of(config.method).joint_batches:
        return
    template = fresh_net.template if fresh_net is not None else None
    if template is None:
        from iid_distill.models import get_network

        template = get_network(config.arch, spec.channels, spec.num_classes, spec.image_size, seed=0, **config.arch_kwargs)
    if _has_batch_statistics(template):
        raise DistillError(f"distill.arch = {config.arch!r} has BatchNorm, whose batch statistics couple the classes; "
                           "the DM/IDM/IID settings use instance norm (ConvNet)")


def _start_state(checkpoint: Path, ctx: DistillContext, dataset, restart: bool) -> tuple[DistillState, int | None]:
    """(state, the iteration resumed from or None): from the checkpoint when there is one (unless ``restart``)."""
    if restart and checkpoint.exists():
        checkpoint.unlink()
    if checkpoint.exists():
        state = resume_state(checkpoint, ctx, dataset)
        return state, state.iteration
    return initial_state(ctx), None


class PeriodicEvaluation:
    """The evaluation protocol applied to the current images every ``eval_every`` iterations (rows in the state)."""

    def __init__(self, state: DistillState, ctx: DistillContext, params: dict[str, Any], dataset, eval_config,
                 eval_seeds: Sequence[int], device: torch.device) -> None:
        if ctx.config.eval_every > 0 and eval_config is None:
            from iid_distill.evaluate import EvalConfig

            eval_config = EvalConfig()
        self.state, self.ctx, self.params, self.dataset = state, ctx, params, dataset
        self.eval_config, self.eval_seeds, self.device = eval_config, list(eval_seeds), device
        self.every = ctx.config.eval_every
        self.wall_s = 0.0

    def due(self, final: bool = False) -> bool:
        return self.every > 0 and (final or self.state.iteration % self.every == 0)

    def __call__(self) -> None:
        from iid_distill.evaluate import evaluate_synthetic_set

        state = self.state
        if any(row["iteration"] == state.iteration for row in state.eval_rows):
            return  # evaluated before an interruption
        started = time.perf_counter()
        sset = current_synthetic_set(state, self.ctx, self.params)
        for record in evaluate_synthetic_set(sset, self.dataset, self.eval_config, self.eval_seeds, self.device):
            state.eval_rows.append({"iteration": state.iteration, "seed": record["seed"], "acc": record["acc"]})
        self.wall_s += time.perf_counter() - started


def _distill_loop(state: DistillState, ctx: DistillContext, fresh_net, pool, checkpoint: Path, dataset,
                  evaluation: PeriodicEvaluation, progress: bool) -> float:
    """Iterate to ``config.iterations``: losses logged, NaN caught, checkpoints written; returns the session's wall."""
    config, device = ctx.config, ctx.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    check_every_iteration = device.type == "cpu"  # free on CPU; on GPU only at log points (no per-iteration sync)
    session_start = time.perf_counter()
    bar = progress_bar(total=config.iterations, initial=state.iteration, desc=f"{structural_label(config)} {ctx.spec.name} ipc {config.ipc}",
                       unit="it", dynamic_ncols=True, enabled=progress)
    try:
        while state.iteration < config.iterations:
            if evaluation.due():
                evaluation()
            iteration = state.iteration
            terms = distill_iteration(state, ctx, fresh_net, pool)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(terms["total"]), torch.full_like(first_bad, iteration), first_bad)
            last = state.iteration == config.iterations
            log_now = iteration % config.log_every == 0 or last
            if check_every_iteration or log_now or state.iteration % config.checkpoint_every == 0:
                _check_finite(first_bad)
            if log_now:
                entry = {"iteration": iteration, **{name: float(value) for name, value in terms.items()}}
                state.loss_log.append(entry)
                bar.set_postfix({name: f"{entry[name]:.4g}" for name in LOSS_TERMS if name == "total" or entry[name] != 0.0}, refresh=False)
            bar.update(1)
            if state.iteration % config.checkpoint_every == 0 and not last:
                state_elapsed = state.elapsed_s
                state.elapsed_s = state_elapsed + time.perf_counter() - session_start
                save_checkpoint(checkpoint, state, ctx, dataset)
                state.elapsed_s = state_elapsed
        if evaluation.due(final=True):
            evaluation()
    finally:
        bar.close()
    return time.perf_counter() - session_start


def _write_outputs(sset, eval_rows: Sequence[dict[str, Any]], paths: dict[str, Path]) -> None:
    from iid_distill.synthetic import save_image_grid, save_synthetic_set

    save_synthetic_set(sset, paths["set"])
    save_image_grid(sset, paths["grid"])
    if eval_rows:
        _write_eval_csv(eval_rows, paths["eval_csv"])
