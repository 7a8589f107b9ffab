"""The job of each workflow rule, resolved by iid_distill.jobs from the merged config and the rule's wildcards.

``workflow/rules/common.smk`` passes ``job_text(rule_job(config, rule, wildcards))`` as each job's ``--job`` and asks
:func:`rule_needs_pool` whether it takes the dataset's pool as an input; a campaign runner resolves the same jobs
through here (iid_distill.campaign). The keys of :data:`RULE_JOBS` are the workflow's rule names.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from . import jobs
from .plan import sweep_value
from .utils import UserError

Config = Mapping[str, Any]
Wildcards = Mapping[str, str]


def _data(config: Config, w: Wildcards) -> dict[str, Any]:
    download = config["workflow"]["download"] and not config["data"]["sources"].get(w["dataset"])
    return jobs.data_job(config, w["dataset"], download=download)


def _pretrain(config: Config, w: Wildcards) -> dict[str, Any]:
    return jobs.pretrain_job(config, w["dataset"])


def _pretrain_variant(config: Config, w: Wildcards) -> dict[str, Any]:
    return jobs.pool_variant_job(config, w["dataset"], w["pool"])


def _coreset(config: Config, w: Wildcards) -> dict[str, Any]:
    return jobs.coreset_job(config, w["dataset"], w["method"], int(w["ipc"]), seed=config["workflow"]["coreset_seed"])


def _distill(config: Config, w: Wildcards) -> dict[str, Any]:
    return jobs.distill_job(config, w["dataset"], int(w["ipc"]), w["method"])


def _sweep(config: Config, w: Wildcards) -> dict[str, Any]:
    block = config["sweeps"][w["sweep"]]
    value = sweep_value(config, w["sweep"], w["value"])
    return jobs.distill_job(config, block["dataset"], block["ipc"], block["method"], overrides={block["parameter"]: value})


def _sweep_evaluation(config: Config, w: Wildcards) -> dict[str, Any]:
    return jobs.evaluate_job(config, config["sweeps"][w["sweep"]]["dataset"], overrides={"arch": w["arch"]})


def _convergence(config: Config, w: Wildcards) -> dict[str, Any]:
    """The method's settings with the convergence iterations, and the periodic evaluation's settings and seeds."""
    block = config["convergence"]
    overrides = {"iterations": block["iterations"], "eval_every": block["eval_every"]}
    return jobs.distill_job(config, w["dataset"], int(w["ipc"]), w["method"], overrides=overrides, eval_seeds=block["eval_seeds"])


def _continual(config: Config, w: Wildcards) -> dict[str, Any]:
    block = config["continual"]
    return jobs.continual_job(config, w["dataset"], w["method"], steps=int(w["steps"]), order=int(w["order"]), ipc=block["ipc"],
                              models_per_step=block["models_per_step"])


def _evaluation(config: Config, w: Wildcards) -> dict[str, Any]:
    """Evaluation on ``arch``: evaluation.arch_kwargs are evaluation.arch's, others get other_arch_kwargs[arch]."""
    return jobs.evaluate_job(config, w["dataset"], overrides={"arch": w["arch"]})


def _whole_evaluation(config: Config, w: Wildcards) -> dict[str, Any]:
    overrides = {**(config["whole_dataset"].get("evaluation") or {}), "arch": w["arch"]}
    return jobs.evaluate_job(config, w["dataset"], overrides=overrides)


RULE_JOBS: dict[str, Callable[[Config, Wildcards], dict[str, Any]]] = {
    "prepare_data": _data,
    "pretrain_pool": _pretrain,
    "pretrain_pool_variant": _pretrain_variant,
    "coreset": _coreset,
    "distill": _distill,
    "distill_sweep": _sweep,
    "evaluate_sweep": _sweep_evaluation,
    "distill_convergence": _convergence,
    "continual": _continual,
    "evaluate": _evaluation,
    "evaluate_whole_dataset": _whole_evaluation,
}


def rule_job(config: Config, rule: str, wildcards: Wildcards) -> dict[str, Any]:
    """The whole configuration of ``rule``'s job for ``wildcards`` (a JSON-able job dict of iid_distill.jobs)."""
    try:
        return RULE_JOBS[rule](config, wildcards)
    except UserError as error:
        shown = " ".join(f"{key}={value}" for key, value in sorted(dict(wildcards).items()))
        raise UserError(f"{rule} job {shown}: {error}") from None


def rule_needs_pool(config: Config, rule: str, wildcards: Wildcards) -> bool:
    """Whether ``rule``'s job uses class centralisation, so that the dataset's pool is one of its inputs."""
    return jobs.needs_pool(rule_job(config, rule, wildcards))


def rule_pool_files(config: Config, rule: str, wildcards: Wildcards) -> list[str]:
    """The pool manifest ``rule``'s job reads: its method's named pool (params ``pools``), the dataset's default
    pool, or none without class centralisation."""
    from .targets import WorkflowFiles

    return WorkflowFiles(config).pool_files(rule_job(config, rule, wildcards))


__all__ = ["RULE_JOBS", "rule_job", "rule_needs_pool", "rule_pool_files"]
