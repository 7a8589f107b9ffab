"""Class-incremental continual learning with a synthetic memory (IID paper Sec. 4.5, Fig. 7; the DM protocol).

The classes of the dataset (CIFAR-100 in the paper) are shuffled by a seeded permutation (one per ``order``, 0..4 in
the paper) and cut into ``steps`` equal chunks (5 steps of 20 classes, 10 steps of 10). At step k only the real
images of the k-th chunk are available: they are condensed into ``ipc`` images per class (20 in the paper) by a
coreset method (``herding``, ...) or a distiller (``dm``, ``dm_iid``, ``idm``, ``idm_iid``, any id of
``distill.method_ids()`` or params ``distill.methods``). The memory is the union of all steps' images so far. Then
``models_per_step`` fresh networks (3 in the paper) with a head over ALL classes of the dataset are trained from
scratch on the memory with the evaluation protocol and tested on the test images of the classes seen so far:
plain argmax over every class, no masking of unseen classes (the memory holds no image of them, so the trained
network rarely predicts them; the DM protocol does not mask either).

Which data each method sees. A step's synthetic images come from :func:`class_subset`, a view of the dataset with
only that step's classes, relabelled 0..k-1. So herding's embedding network, DM's matching, and IDM's queue networks
and class-aware cross-entropy are all trained on / restricted to the step's classes, the only real data a
class-incremental learner has at that step: this is how the IDM-style "all-class" models are restricted to the
classes at hand. The one exception is IID's class-centralisation network g: the CC pool is loaded ONCE for the full
dataset (``pretrain.FeaturePool.load``) and has seen every class, as the paper's single pre-trained ResNet18 did;
CC only uses its embedding, never its classifier.

Seeds. Class order ``o`` is ``torch.randperm`` with a generator seeded ``o``. Each step's synthesis uses the run's
``seed`` (select_coreset's seed; DistillConfig.seed). Model ``m`` of step ``k`` in order ``o`` is trained with
evaluation seed ``1_000_000 * o + 1000 * k + m`` (:func:`training_seed`), so networks differ across models, steps
and orders; records keep ``model_seed = m``.

Resumability. Everything goes to ``work_dir``: ``step<k>.pt`` (the step's images with the dataset's class ids, meta
``classes``), for distillers the distiller's own outputs ``step<k>.local.pt/.json/.png`` in the step's local label
space and its checkpoint ``step<k>.local.pt.ckpt`` (a killed distillation resumes from it), and ``progress.json``
(rewritten atomically when a step's set is built and when its models are tested). A re-run skips what
``progress.json`` says is done, after checking that it was written with the same settings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from iid_distill.augment import partition_and_expand
from iid_distill.coreset import coreset_methods, select_coreset
from iid_distill.data import PreparedDataset, Split, normalize
from iid_distill.distill import RESULT_NEUTRAL_FIELDS, DistillConfig, run_distillation, structural_label
from iid_distill.evaluate import EvalConfig, evaluation_params, test_accuracy, train_evaluation_networks
from iid_distill.names import METHOD_LABELS
from iid_distill.synthetic import SyntheticSet, load_synthetic_set, save_synthetic_set, validate_synthetic_set
from iid_distill.utils import (
    UserError,
    atomic_write_json,
    device_description,
    git_sha,
    json_round_trip,
    make_generator,
    portable_path,
    sha256_file,
)

__all__ = [
    "ContinualError",
    "class_order",
    "class_subset",
    "default_work_dir",
    "memory_set",
    "run_continual",
    "step_classes",
    "training_seed",
]

PROGRESS_FILE = "progress.json"
PROGRESS_KIND = "continual-progress"


class ContinualError(UserError):
    """Bad continual-learning settings, or a work directory that belongs to another run."""


class StaleProgressError(ContinualError):
    """The work dir holds the progress of a run with other settings (the workflow re-runs a job when its settings change)."""


# ------------------------------------------------------------------------------------------------ classes


def class_order(num_classes: int, order_seed: int) -> list[int]:
    """Class order ``order_seed``: a permutation of 0..num_classes-1 drawn with a generator seeded ``order_seed``."""
    return torch.randperm(int(num_classes), generator=make_generator(int(order_seed))).tolist()


def step_classes(order: Sequence[int], steps: int) -> list[list[int]]:
    """``order`` cut into ``steps`` consecutive chunks of equal size (the classes new at each step)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or len(order) % steps != 0:
        raise ContinualError(f"steps = {steps!r} must be a positive integer dividing the {len(order)} classes "
                             f"(the paper uses 5 or 10 steps on CIFAR-100)")
    size = len(order) // steps
    return [list(order[start : start + size]) for start in range(0, len(order), size)]


def class_subset(dataset: PreparedDataset, classes: Sequence[int]) -> PreparedDataset:
    """A view of ``dataset`` with only ``classes`` (train and test), relabelled 0..k-1 in the given order.

    The spec keeps its name (DSA strategy and normalisation stay the dataset's) with ``num_classes = k``; the sha256
    entries hash the parent's with the class list, so checkpoints of different class subsets never mix.
    """
    classes = [int(c) for c in classes]
    num_classes = dataset.spec.num_classes
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c < num_classes for c in classes):
        raise ContinualError(f"class subset {classes}: expected distinct class indices in [0, {num_classes})")
    lookup = torch.full((num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def filtered(split: Split) -> Split:
        local = lookup[split.labels]
        keep = local >= 0
        return Split(split.images[keep], local[keep])

    tag = ",".join(map(str, classes))
    sha256 = {key: hashlib.sha256(f"{value}|classes={tag}".encode()).hexdigest() for key, value in dataset.sha256.items()}
    return PreparedDataset(
        spec=dataclasses.replace(dataset.spec, num_classes=len(classes)),
        train=filtered(dataset.train),
        test=filtered(dataset.test),
        class_names=[dataset.class_names[c] for c in classes],
        sha256=sha256,
        source=f"{dataset.source} (classes {tag})",
        cache_path=dataset.cache_path,
    )


def training_seed(order: int, step: int, model: int) -> int:
    """Evaluation seed of model ``model`` at step ``step`` (from 1) of class order ``order``: distinct for all three."""
    return 1_000_000 * int(order) + 1000 * int(step) + int(model)


def memory_set(step_sets: Sequence[SyntheticSet]) -> SyntheticSet:
    """The memory after the given steps: their images and labels concatenated (validated: ipc images per seen class)."""
    first = step_sets[0].meta
    classes = sorted(c for sset in step_sets for c in sset.meta["classes"])
    meta = {key: first[key] for key in ("dataset", "ipc", "method", "params", "seed", "git_sha")}
    meta.update(classes=classes, expand_factor=int(first.get("expand_factor", 1) or 1))
    memory = SyntheticSet(torch.cat([s.images for s in step_sets]), torch.cat([s.labels for s in step_sets]), meta)
    validate_synthetic_set(memory, f"continual memory of {len(step_sets)} step(s)")
    return memory


# ------------------------------------------------------------------------------------------------ one step


def _global_set(local: SyntheticSet, dataset: PreparedDataset, classes: list[int], step_meta: dict[str, Any]) -> SyntheticSet:
    """``local`` (labels 0..k-1 of the class subset) with the dataset's class ids and meta ``classes``."""
    meta = dict(local.meta)
    meta.update(dataset=dataset.spec.name, classes=sorted(classes), continual=step_meta)
    if "indices" in meta:  # coreset: subset train indices -> the dataset's train indices (class_subset keeps order)
        parent_indices = torch.nonzero(torch.isin(dataset.train.labels, torch.tensor(classes))).flatten()
        meta["indices"] = parent_indices[torch.tensor(meta["indices"], dtype=torch.int64)].tolist()
        meta["dataset_sha256"] = dict(dataset.sha256)
    labels = torch.tensor(classes, dtype=torch.int64)[local.labels]
    return SyntheticSet(local.images.detach().cpu().float(), labels, meta)


def _synthesize_step(
    method: str, dataset: PreparedDataset, classes: list[int], ipc: int, seed: int, device: torch.device, work_dir: Path,
    step: int, step_meta: dict[str, Any], *, distill_config: DistillConfig | None, coreset_options: dict[str, Any], pool: Any,
    progress: bool, restart: bool,
) -> SyntheticSet:
    """The step's images for the new ``classes`` only, made from their real images alone."""
    subset = class_subset(dataset, classes)
    if distill_config is None:
        local = select_coreset(method, subset, ipc, seed, device, **coreset_options)
    else:
        local_path = work_dir / f"step{step}.local.pt"
        run_distillation(distill_config, subset, local_path, device, progress=progress, restart=restart, pool=pool,
                         provenance={"method_id": method, "continual": step_meta})
        local = load_synthetic_set(local_path, dataset=dataset.spec.name)
    return _global_set(local, dataset, classes, step_meta)


def _test_models(memory: SyntheticSet, dataset: PreparedDataset, eval_config: EvalConfig, seeds: list[int],
                 device: torch.device) -> list[dict[str, float]]:
    """Train one fresh full-head network per seed on ``memory``; test each on the test images of its classes."""
    images, labels = memory.images.to(device, torch.float32), memory.labels.to(device)
    if memory.expand_factor > 1:  # IDM sets store factor^2 patches per image, as evaluation expands them
        images, labels = partition_and_expand(images, labels, memory.expand_factor)
    seen = torch.isin(dataset.test.labels, torch.tensor(memory.meta["classes"]))
    test_images = normalize(dataset.test.images[seen].to(device), dataset.spec)
    test_labels = dataset.test.labels[seen].to(device)
    results = []
    for trained in train_evaluation_networks(images, labels, dataset.spec, eval_config, seeds, device):
        acc = test_accuracy(trained.net, test_images, test_labels, eval_config.test_batch_size)  # argmax over all classes
        results.append({"acc": acc, "train_acc": trained.train_acc})
    return results


# ------------------------------------------------------------------------------------------------ progress


def _read_progress(path: Path, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished steps of ``path`` (none if absent); a file of other settings is an error."""
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ContinualError(f"{path}: unreadable continual progress file ({error}); pass --restart to start afresh") from None
    if not isinstance(saved, dict) or saved.get("kind") != PROGRESS_KIND or not isinstance(saved.get("steps"), list):
        raise ContinualError(f"{path}: not a continual progress file; pass --restart or use another --work-dir")
    stored = saved.get("identity") or {}
    if stored != identity:
        differing = [f"{key}: {stored.get(key)!r} there, {identity.get(key)!r} now" for key in sorted(set(stored) | set(identity))
                     if stored.get(key) != identity.get(key)]
        detail = "; ".join(differing[:3]) + ("; ..." if len(differing) > 3 else "")
        raise StaleProgressError(f"{path}: progress of a run with other settings ({detail}); pass --restart or use another --work-dir")
    return saved["steps"]


def _write_progress(path: Path, identity: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    atomic_write_json({"kind": PROGRESS_KIND, "identity": identity, "steps": entries}, path)


def _load_step_set(work_dir: Path, entry: dict[str, Any], dataset_name: str) -> SyntheticSet:
    path = work_dir / entry["set"]
    if not path.is_file() or sha256_file(path) != entry["set_sha256"]:
        raise ContinualError(f"{path}: step {entry['step']}'s set is missing or changed since {PROGRESS_FILE} was written; "
                             f"pass --restart to start afresh")
    return load_synthetic_set(path, dataset=dataset_name)


# ------------------------------------------------------------------------------------------------ the run


def default_work_dir(out_path: str | os.PathLike) -> Path:
    """``<out without suffix>.steps`` beside the record."""
    out = Path(out_path)
    return out.with_name(out.stem + ".steps")


def run_continual(
    dataset: PreparedDataset,
    method: str,
    steps: int,
    order: int,
    ipc: int,
    out_path: str | os.PathLike,
    device: torch.device | str,
    *,
    eval_config: EvalConfig,
    distill_settings: dict[str, Any] | None = None,
    coreset_options: dict[str, Any] | None = None,
    models_per_step: int = 3,
    seed: int = 0,
    pool: Any = None,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
    restart: bool = False,
) -> dict[str, Any]:
    """Run class order ``order`` of the ``steps``-step protocol with ``method``; write and return the continual record.

    ``method`` is a coreset method (select_coreset with ``coreset_options``) or a distillation method id, whose
    DistillConfig keyword dict ``distill_settings`` the caller resolves (``ipc`` and ``seed`` are this run's). ``pool``:
    the CC networks (loaded for the full dataset), needed when the settings include ``cc``. ``restart`` discards the
    work directory's progress and distillation checkpoints. See the module docstring for the protocol.
    """
    started = time.perf_counter()
    device = torch.device(device)
    spec = dataset.spec
    for name, value, low in (("models_per_step", models_per_step, 1), ("order", order, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ContinualError(f"{name} = {value!r}: expected an integer >= {low}")
    classes_order = class_order(spec.num_classes, order)
    coreset_options = dict(coreset_options or {})
    distill_config, label, synthesis = _synthesiser(method, spec, ipc, seed, distill_settings, coreset_options, pool)
    uses_pool = distill_config is not None and distill_config.uses_cc
    pool_info = pool.describe() if uses_pool and callable(getattr(pool, "describe", None)) else None
    eval_params = evaluation_params(eval_config, spec)
    identity = json_round_trip({
        "dataset": spec.name, "dataset_sha256": dict(dataset.sha256), "method": method, "steps": steps, "order": order,
        "class_order": classes_order, "ipc": ipc, "seed": seed, "models_per_step": models_per_step, "device_type": device.type,
        "eval_params": eval_params, "cc_pool": (pool_info or {}).get("fingerprint"), **synthesis,
    })
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(out_path)
    progress_path, entries = _open_progress(work_dir, identity, restart)
    synthesize = functools.partial(_synthesize_step, method, dataset, ipc=ipc, seed=seed, device=device, work_dir=work_dir,
                                   distill_config=distill_config, coreset_options=coreset_options, pool=pool, progress=progress,
                                   restart=restart)
    step_sets: list[SyntheticSet] = []
    for step, new_classes in enumerate(step_classes(classes_order, steps), start=1):
        _run_step(step, new_classes, entries, step_sets, synthesize, progress_path, identity, dataset, eval_config, models_per_step, device)

    record = {
        "kind": "continual",
        "dataset": spec.name,
        "method": method,
        "method_label": label,
        "steps": steps,
        "order": order,
        "class_order": classes_order,
        "ipc": ipc,
        "seed": seed,
        "models_per_step": models_per_step,
        "arch": eval_config.arch,
        "eval_params": eval_params,
        "distill_params": synthesis.get("distill"),
        "coreset_params": synthesis.get("coreset"),
        "cc_pool": pool_info,
        "git_sha": git_sha(),
        "device": device_description(device),
        "wall_s": sum(entry["synthesis_wall_s"] + entry["eval_wall_s"] for entry in entries),
        "session_wall_s": time.perf_counter() - started,
        "work_dir": portable_path(work_dir),
        "step_sets": [portable_path(work_dir / entry["set"]) for entry in entries],
        "records": [record for entry in entries for record in entry["records"]],
    }
    atomic_write_json(json_round_trip(record), out_path)
    return record


def _open_progress(work_dir: Path, identity: dict[str, Any], restart: bool) -> tuple[Path, list[dict[str, Any]]]:
    """(the progress file, its finished steps): none with ``restart``; progress of other settings is refused."""
    work_dir.mkdir(parents=True, exist_ok=True)
    progress_path = work_dir / PROGRESS_FILE
    if restart and progress_path.exists():
        progress_path.unlink()
    return progress_path, _read_progress(progress_path, identity)


def _synthesiser(method: str, spec, ipc: int, seed: int, distill_settings: dict[str, Any] | None, coreset_options: dict[str, Any],
                 pool: Any) -> tuple[DistillConfig | None, str, dict[str, Any]]:
    """(the step distillation's config or None for a coreset, the method's label, the settings that identify it)."""
    if method in coreset_methods():
        return None, METHOD_LABELS[method], {"coreset": coreset_options}
    if distill_settings is None:
        raise ContinualError(f"method {method!r} is no coreset method ({', '.join(coreset_methods())}), so it needs distillation "
                             f"settings (a distill method id such as dm, dm_iid, idm_iid)")
    distill_config = DistillConfig(**{**distill_settings, "ipc": ipc, "seed": seed})
    if distill_config.uses_cc and pool is None:
        raise ContinualError(f"method {method!r} uses class centralisation: pass the CC pool (--pool DIR, pre-trained on the full "
                             f"{spec.name} with `iid-distill pretrain --dataset {spec.name}`)")
    synthesis = {"distill": {k: v for k, v in distill_config.to_dict().items() if k not in RESULT_NEUTRAL_FIELDS}}
    return distill_config, METHOD_LABELS.get(method, structural_label(distill_config)), synthesis


def _run_step(step: int, new_classes: list[int], entries: list[dict[str, Any]], step_sets: list[SyntheticSet], synthesize, progress_path: Path,
              identity: dict[str, Any], dataset: PreparedDataset, eval_config: EvalConfig, models_per_step: int,
              device: torch.device) -> None:
    """Step ``step``: its synthetic set (made, or read back and verified from the progress; appended to ``step_sets``)
    and its memory models' records."""
    work_dir, order = progress_path.parent, identity["order"]
    if step <= len(entries):
        entry = entries[step - 1]
        if entry.get("step") != step or entry.get("new_classes") != new_classes:
            raise ContinualError(f"{progress_path}: entry {step} does not describe step {step}; pass --restart to start afresh")
        step_sets.append(_load_step_set(work_dir, entry, dataset.spec.name))
    else:
        step_started = time.perf_counter()
        sset = synthesize(new_classes, step=step, step_meta={"order": order, "steps": identity["steps"], "step": step,
                                                               "new_classes": new_classes})
        set_path = work_dir / f"step{step}.pt"
        save_synthetic_set(sset, set_path)
        entry = {"step": step, "new_classes": new_classes, "set": set_path.name, "set_sha256": sha256_file(set_path),
                 "synthesis_wall_s": time.perf_counter() - step_started, "records": None}
        entries.append(entry)
        _write_progress(progress_path, identity, entries)
        step_sets.append(sset)
    if entry["records"] is not None:
        return
    eval_started = time.perf_counter()
    memory = memory_set(step_sets)
    seeds = [training_seed(order, step, model) for model in range(models_per_step)]
    results = _test_models(memory, dataset, eval_config, seeds, device)
    entry["records"] = [
        {"step": step, "new_classes": new_classes, "classes_seen": len(memory.meta["classes"]), "model_seed": model,
         "train_seed": seeds[model], "memory_size": int(memory.labels.numel()), **result}
        for model, result in enumerate(results)
    ]
    entry["eval_wall_s"] = time.perf_counter() - eval_started
    _write_progress(progress_path, identity, entries)
