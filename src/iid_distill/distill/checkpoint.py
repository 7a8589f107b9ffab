"""Checkpoints: the whole state saved atomically, refused when it belongs to other settings or data, restored bit for
bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from iid_distill.distill.context import DistillContext
from iid_distill.distill.iteration import DistillState
from iid_distill.distill.networks import new_queue_member
from iid_distill.distill.settings import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, RESULT_NEUTRAL_FIELDS
from iid_distill.utils import atomic_torch_save, json_round_trip, load_torch_file


def checkpoint_path(out_path: str | os.PathLike) -> Path:
    """``<out>.ckpt``, beside the synthetic-set file."""
    return Path(f"{out_path}.ckpt")


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def save_checkpoint(path: Path, state: DistillState, ctx: DistillContext, dataset) -> None:
    """Write the whole run state atomically (a crash mid-write leaves the previous checkpoint intact)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config_hash": ctx.config.result_hash(),
        "config": json_round_trip(ctx.config.to_dict()),
        "dataset": ctx.spec.name,
        "dataset_sha256": dict(dataset.sha256),
        "device_type": ctx.device.type,
        "iteration": state.iteration,
        "images": state.images.detach().cpu(),
        "velocity": state.velocity.detach().cpu(),
        "host_generator": state.host_generator.get_state(),
        "device_generator": state.device_generator.get_state(),
        "queue": [
            {"seed": member.seed, "net": _to_cpu(member.net.state_dict()), "optimizer": _to_cpu(member.optimizer.state_dict()), "meter": member.meter.cpu()}
            for member in state.queue
        ],
        "loss_log": state.loss_log,
        "eval_rows": state.eval_rows,
        "elapsed_s": state.elapsed_s,
    }
    atomic_torch_save(payload, path)


_CHECKPOINT_KEYS = ("config_hash", "config", "dataset", "dataset_sha256", "device_type", "iteration", "images", "velocity",
                    "host_generator", "device_generator", "queue", "loss_log", "eval_rows", "elapsed_s")
_FRESH_HINT = "delete it or pass --restart to start over"


def read_checkpoint(path: Path, ctx: DistillContext, dataset) -> dict[str, Any]:
    """Load ``path`` and check that it belongs to this run; a one-line CheckpointError says what differs otherwise."""
    payload = load_torch_file(path, CheckpointError, "unreadable checkpoint", _FRESH_HINT)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a distillation checkpoint (format {found!r}); {_FRESH_HINT}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')!r}, this code reads {CHECKPOINT_VERSION}; {_FRESH_HINT}")
    missing = [key for key in _CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {', '.join(missing)}); {_FRESH_HINT}")
    if payload["dataset"] != ctx.spec.name:
        raise CheckpointError(f"{path}: checkpoint is for dataset {payload['dataset']!r}, this run distils {ctx.spec.name!r}; {_FRESH_HINT}")
    if payload["dataset_sha256"] != dict(dataset.sha256):
        differing = sorted(key for key in set(payload["dataset_sha256"]) | set(dataset.sha256)
                           if payload["dataset_sha256"].get(key) != dataset.sha256.get(key))
        raise CheckpointError(f"{path}: checkpoint was made from other {ctx.spec.name} data ({', '.join(differing)} sha256 differ); {_FRESH_HINT}")
    if payload["config_hash"] != ctx.config.result_hash():
        now = json_round_trip(ctx.config.to_dict())
        saved = payload["config"] if isinstance(payload["config"], dict) else {}
        differing = [f"{key}: {saved.get(key)!r} in checkpoint, {now.get(key)!r} now" for key in sorted(set(now) | set(saved))
                     if key not in RESULT_NEUTRAL_FIELDS and saved.get(key) != now.get(key)]
        detail = "; ".join(differing[:4]) + ("; ..." if len(differing) > 4 else "") if differing else "settings hash differs"
        raise CheckpointError(f"{path}: checkpoint was written with other settings ({detail}); {_FRESH_HINT}")
    if payload["device_type"] != ctx.device.type:
        raise CheckpointError(f"{path}: checkpoint was written on {payload['device_type']}, this run uses {ctx.device.type}; "
                              f"resume with --device {payload['device_type']} or {_FRESH_HINT}")
    expected_shape = (ctx.num_classes * ctx.config.ipc, ctx.spec.channels, ctx.spec.image_size, ctx.spec.image_size)
    if tuple(payload["images"].shape) != expected_shape or not 0 <= int(payload["iteration"]) <= ctx.config.iterations:
        raise CheckpointError(f"{path}: checkpoint content does not fit this run (images {tuple(payload['images'].shape)}, "
                              f"iteration {payload['iteration']}); {_FRESH_HINT}")
    if not (torch.isfinite(payload["images"]).all() and torch.isfinite(payload["velocity"]).all()):
        raise CheckpointError(f"{path}: the checkpoint's images hold NaN or infinite values (corrupt); {_FRESH_HINT}")
    return payload


def resume_state(path: Path, ctx: DistillContext, dataset) -> DistillState:
    """:func:`read_checkpoint` then :func:`restore_state`; content torch cannot restore (a bad generator state, a
    state_dict of other shapes) is a one-line CheckpointError too."""
    try:
        return restore_state(read_checkpoint(path, ctx, dataset), ctx)
    except CheckpointError:
        raise
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise CheckpointError(f"{path}: damaged checkpoint, its state cannot be restored ({reason}); {_FRESH_HINT}") from None


def restore_state(payload: dict[str, Any], ctx: DistillContext) -> DistillState:
    """Rebuild the run state saved by :func:`save_checkpoint` (generators, queue networks, optimisers, meters)."""
    config = ctx.config
    host_generator = torch.Generator(device="cpu")
    host_generator.set_state(payload["host_generator"])
    device_generator = torch.Generator(device=ctx.device)
    device_generator.set_state(payload["device_generator"])
    queue = []
    for entry in payload["queue"]:
        member = new_queue_member(int(entry["seed"]), config, ctx.spec, ctx.device, ctx.dtype)
        member.net.load_state_dict(entry["net"])
        member.optimizer.load_state_dict(entry["optimizer"])
        member.meter = entry["meter"].to(ctx.device)
        queue.append(member)
    return DistillState(
        iteration=int(payload["iteration"]),
        images=payload["images"].to(ctx.device, ctx.dtype),
        velocity=payload["velocity"].to(ctx.device, ctx.dtype),
        host_generator=host_generator,
        device_generator=device_generator,
        queue=queue,
        loss_log=list(payload["loss_log"]),
        eval_rows=list(payload["eval_rows"]),
        elapsed_s=float(payload["elapsed_s"]),
    )
