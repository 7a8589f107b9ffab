"""The library face: distil and evaluate in a notebook, on in-memory data, with results returned (files optional).

    from iid_distill import load_dataset, distill_dataset, evaluate_set
    digits = load_dataset("digits")
    result = distill_dataset(digits, "dm_iid", ipc=10, iterations=100, pool_dir="results/pools/digits-ConvNet")
    records = evaluate_set(result.synthetic_set, digits, seeds=[0, 1, 2], epochs=300)

The settings are resolved by ``iid_distill.jobs``, as the command line and the workflow resolve them (the published
code's per dataset / IPC / method, then your overrides); nothing reads params.yaml unless you pass ``params``. These
functions call the same code as ``iid-distill distill`` and ``iid-distill evaluate``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from iid_distill.config import build_dataclass


@dataclass
class DistillResult:
    """A finished distillation: the synthetic set (images, labels, meta) and the run's record (losses, timing)."""

    synthetic_set: Any
    record: dict[str, Any]


def distill_dataset(dataset, method_id: str, ipc: int, *, device: str = "cpu", settings: str = "code", pool=None,
                    pool_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                    params: Mapping[str, Any] | None = None, progress: bool = False, **overrides: Any) -> DistillResult:
    """Distil ``dataset`` (a prepared dataset, e.g. from :func:`load_dataset`) with method id ``method_id`` (``dm``,
    ``dm_iid``, ``idm_iid``, or one of ``params``' ``distill.methods``) at ``ipc`` images per class.

    ``overrides`` are DistillConfig fields (``iterations=200``, ``lambda_cc=0.03``). Class centralisation needs feature
    networks: ``pool`` (e.g. ``InMemoryPool([...])``) or ``pool_dir`` (``iid-distill pretrain``). With ``out`` the
    set and its record are also written there (and a re-run resumes from its checkpoint); without, nothing is left on
    disk.
    """
    from iid_distill.distill import DistillConfig, run_distillation
    from iid_distill.jobs import distill_job
    from iid_distill.synthetic import load_synthetic_set

    job = distill_job(dict(params or {}), dataset.spec.name, ipc, method_id, settings_source=settings, overrides=overrides, device=device)
    config = build_dataclass(DistillConfig, job["distill"], "distill")

    def run(path: Path) -> DistillResult:
        record = run_distillation(config, dataset, path, device, pool_dir=pool_dir, pool=pool, progress=progress,
                                  provenance={"method_id": method_id, "settings": settings})
        return DistillResult(load_synthetic_set(path, dataset=dataset.spec.name), record)

    if out is not None:
        return run(Path(out))
    with tempfile.TemporaryDirectory(prefix="iid-distill-") as folder:
        return run(Path(folder) / f"{method_id}.pt")


def evaluate_set(synthetic_set, dataset, seeds: Sequence[int] = (0, 1, 2, 3, 4), *, device: str = "cpu",
                 **overrides: Any) -> list[dict[str, Any]]:
    """The evaluation protocol on ``synthetic_set`` (a SyntheticSet, in memory or loaded): one record per seed, each
    with the final test accuracy (``acc``). ``overrides`` are EvalConfig fields (``epochs=300``, ``arch="AlexNet"``)."""
    from iid_distill.evaluate import EvalConfig, evaluate_synthetic_set
    from iid_distill.jobs import evaluate_job

    job = evaluate_job({}, dataset.spec.name, overrides=overrides, seeds=list(seeds), device=device)
    return evaluate_synthetic_set(synthetic_set, dataset, build_dataclass(EvalConfig, job["evaluation"], "evaluation"), job["seeds"], device)
