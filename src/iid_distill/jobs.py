"""Job configs: params resolved once into everything one job computes with.

A job config is a JSON-able dict with a ``kind`` (one of :data:`JOB_KINDS`) and every setting resolved and validated:
whole dataclass dicts, not overrides. The workflow builds each job's config here from its merged config (params.yaml +
``--configfile`` overlays + ``--config``) and passes it as ``iid-distill <command> --job JSON``; in that form the
command reads no params file. By hand, the CLI builds the same config here from ``--params``, ``--set`` and its named
flags. Paths (``--out``, ``--pool``, ``--work-dir``) are not configuration: they stay flags.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .config import ConfigError, build_dataclass, check_keyword_options, check_seeds, section

# every kind of job and the fields its config has (read_job checks them)
JOB_FIELDS = {
    "data": ("kind", "data", "download"),
    "coreset": ("kind", "data", "device", "method", "ipc", "seed", "options"),
    "evaluate": ("kind", "data", "device", "evaluation", "seeds"),
    "distill": ("kind", "data", "device", "plugins", "method_id", "settings_source", "distill", "evaluation", "eval_seeds"),
    "pretrain": ("kind", "data", "device", "pretrain"),
    "continual": ("kind", "data", "device", "plugins", "method", "steps", "order", "ipc", "models_per_step", "seed", "distill",
                  "coreset", "evaluation"),
}
# fields a job has only when set (so the jobs of configs without them keep their text, the workflow's rerun trigger)
OPTIONAL_JOB_FIELDS = {"distill": ("pool",), "continual": ("pool",)}
JOB_KINDS = tuple(JOB_FIELDS)
DEFAULT_EVAL_SEEDS = [0, 1, 2, 3, 4]  # the paper's five evaluation networks
DEFAULT_CACHE_DIR = "resources/data"


# ------------------------------------------------------------------------------------------ parts shared by jobs


def data_config(params: dict[str, Any], dataset: str, *, source: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Where ``dataset`` is read from: params ``data.sources`` / ``data.cache_dir`` unless given (``source=''`` says
    "the official layout" explicitly, whatever the params file says)."""
    block = section(params, "data")
    sources = block.get("sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError(f"params key 'data.sources': expected a mapping of dataset -> source path, got {sources!r}")
    if not isinstance(block.get("cache_dir", DEFAULT_CACHE_DIR), str):
        raise ConfigError(f"params key 'data.cache_dir': expected a folder path (text), got {block.get('cache_dir')!r}")
    chosen = (source or None) if source is not None else sources.get(dataset)
    return {"dataset": dataset, "source": chosen, "cache_dir": cache_dir or block.get("cache_dir", DEFAULT_CACHE_DIR)}


def device_setting(params: dict[str, Any], device: str | None = None) -> str:
    return device or params.get("device", "auto")


def plugins_of(params: dict[str, Any]) -> list[str]:
    """The user's host modules (params ``plugins``), imported: a job carries them so that its process imports them too."""
    from .distill import import_plugins

    plugins = params.get("plugins") or []
    import_plugins(plugins)
    return list(plugins)


def settings_source_of(params: dict[str, Any], given: str | None = None) -> str:
    """Which published IID objective: ``given``, else params ``distill.settings``, else the authors' code's."""
    return given or section(params, "distill").get("settings", "code")


def _placed(*, kind: str, params: dict[str, Any], dataset: str, source: str | None, cache_dir: str | None,
            device: str | None) -> dict[str, Any]:
    """The fields every compute job has: its kind, where its data is read from, and its device."""
    return {"kind": kind, "data": data_config(params, dataset, source=source, cache_dir=cache_dir),
            "device": device_setting(params, device)}


def evaluation_config(params: dict[str, Any], overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[int]]:
    """(every :class:`EvalConfig` field, seeds) from params ``evaluation`` (seeds default to the paper's five), then
    ``overrides``. ``arch_kwargs`` belong to ``evaluation.arch``; another architecture gets
    ``other_arch_kwargs[arch]`` unless the overrides name ``arch_kwargs`` themselves."""
    from .evaluate import EvalConfig, evaluation_arch_kwargs

    values = dict(section(params, "evaluation"))
    seeds = check_seeds(values.pop("seeds", DEFAULT_EVAL_SEEDS), "evaluation.seeds")
    overrides = dict(overrides or {})
    if "arch_kwargs" not in overrides:
        overrides["arch_kwargs"] = evaluation_arch_kwargs(values, overrides.get("arch", values.get("arch", EvalConfig.arch)))
    values.pop("other_arch_kwargs", None)
    values.update(overrides)
    return dataclasses.asdict(build_dataclass(EvalConfig, values, "evaluation")), seeds


# ------------------------------------------------------------------------------------------ one builder per kind


def data_job(params: dict[str, Any], dataset: str, *, source: str | None = None, cache_dir: str | None = None,
             download: bool = False) -> dict[str, Any]:
    return {"kind": "data", "data": data_config(params, dataset, source=source, cache_dir=cache_dir), "download": download}


def coreset_job(params: dict[str, Any], dataset: str, method: str, ipc: int, *, seed: int | None = None,
                overrides: dict[str, Any] | None = None, source: str | None = None, cache_dir: str | None = None,
                device: str | None = None) -> dict[str, Any]:
    from .coreset import check_coreset_method, select_coreset

    check_coreset_method(method)
    options = check_keyword_options(select_coreset, {**section(params, "coreset"), **(overrides or {})}, "coreset")
    return {**_placed(kind="coreset", params=params, dataset=dataset, source=source, cache_dir=cache_dir, device=device),
            "method": method, "ipc": ipc, "seed": 0 if seed is None else seed,
            "options": options}


def evaluate_job(params: dict[str, Any], dataset: str, *, overrides: dict[str, Any] | None = None, seeds: list[int] | None = None,
                 source: str | None = None, cache_dir: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Evaluation of a set (or of the whole training split) of ``dataset``."""
    evaluation, default_seeds = evaluation_config(params, overrides)
    return {**_placed(kind="evaluate", params=params, dataset=dataset, source=source, cache_dir=cache_dir, device=device),
            "evaluation": evaluation,
            "seeds": check_seeds(seeds, "--seeds") if seeds is not None else default_seeds}


def distill_job(params: dict[str, Any], dataset: str, ipc: int, method_id: str, *, settings_source: str | None = None,
                overrides: dict[str, Any] | None = None, eval_overrides: dict[str, Any] | None = None,
                eval_seeds: list[int] | None = None, source: str | None = None, cache_dir: str | None = None,
                device: str | None = None) -> dict[str, Any]:
    """``method_id``'s settings (published | distill.common | distill.methods[id] | ``overrides``), with the periodic
    evaluation's settings and seeds when ``eval_every`` > 0."""
    from .distill import DistillConfig, resolve_distill_settings
    from .distill.settings import merge_settings

    plugins = plugins_of(params)  # first: a plugin's host is known before the id resolves
    chosen_source = settings_source_of(params, settings_source)
    settings = merge_settings(resolve_distill_settings(params, dataset, ipc, method_id, source=chosen_source), overrides or {})
    settings["ipc"] = ipc
    config = build_dataclass(DistillConfig, settings, "distill")
    evaluation, seeds = None, []
    if config.eval_every > 0:
        evaluation, seeds = evaluation_config(params, eval_overrides)
        seeds = check_seeds(eval_seeds, "--eval-seeds") if eval_seeds is not None else seeds
    elif eval_overrides or eval_seeds is not None:
        raise ConfigError("--eval-set / --eval-seeds configure the periodic evaluation, which is off (eval_every 0); "
                          "add --eval-every N or drop them")
    return {**_placed(kind="distill", params=params, dataset=dataset, source=source, cache_dir=cache_dir, device=device),
            "plugins": plugins, "method_id": method_id, "settings_source": chosen_source, "distill": config.to_dict(), "evaluation": evaluation,
            "eval_seeds": seeds, **_pool_field(params, method_id, config.uses_cc)}


def _pool_field(params: dict[str, Any], method_id: str, uses_cc: bool) -> dict[str, Any]:
    """``{"pool": NAME}`` for a method id that reads a named pool (params ``pools``) and uses CC, else nothing."""
    from .distill.settings import method_pool

    pool = method_pool(params, method_id)
    return {"pool": pool} if pool is not None and uses_cc else {}


def pretrain_job(params: dict[str, Any], dataset: str, *, overrides: dict[str, Any] | None = None, source: str | None = None,
                 cache_dir: str | None = None, device: str | None = None, where: str = "pretrain") -> dict[str, Any]:
    """The pool's pretraining: params ``pretrain`` with ``overrides`` over it (``where`` names them in errors)."""
    from .pretrain import PretrainConfig

    config = build_dataclass(PretrainConfig, {**section(params, "pretrain"), **(overrides or {})}, where)
    return {**_placed(kind="pretrain", params=params, dataset=dataset, source=source, cache_dir=cache_dir, device=device),
            "pretrain": dataclasses.asdict(config)}


def pool_variant_job(params: dict[str, Any], dataset: str, pool: str, **placement: Any) -> dict[str, Any]:
    """The pretraining of the named pool ``pool``: params ``pretrain`` with ``pools[pool]`` over it."""
    pools = params.get("pools") or {}
    if pool not in pools:
        raise ConfigError(f"params key 'pools': no pool named {pool!r} ({', '.join(sorted(pools)) or 'none defined'})")
    return pretrain_job(params, dataset, overrides=pools[pool] or {}, where=f"pools.{pool}", **placement)


def continual_job(params: dict[str, Any], dataset: str, method: str, *, steps: int, order: int, ipc: int,
                  models_per_step: int | None = None, seed: int | None = None, overrides: dict[str, Any] | None = None,
                  eval_overrides: dict[str, Any] | None = None, settings_source: str | None = None, source: str | None = None,
                  cache_dir: str | None = None, device: str | None = None) -> dict[str, Any]:
    """One class order of the continual-learning protocol: the step synthesiser's settings (a coreset's options or a
    distill method id's settings at ``ipc``) and the memory models' evaluation settings."""
    from .coreset import coreset_methods, select_coreset
    from .distill import DistillConfig, resolve_distill_settings
    from .distill.settings import merge_settings

    plugins = plugins_of(params)
    overrides = dict(overrides or {})
    distill_settings = coreset_options = None
    if method in coreset_methods():
        coreset_options = check_keyword_options(select_coreset, {**section(params, "coreset"), **overrides}, "coreset")
        seed = 0 if seed is None else seed
    else:
        chosen_source = settings_source_of(params, settings_source)
        distill_settings = merge_settings(resolve_distill_settings(params, dataset, ipc, method, source=chosen_source), overrides)
        seed = int(distill_settings.get("seed", 0)) if seed is None else seed
        distill_settings = build_dataclass(DistillConfig, {**distill_settings, "ipc": ipc, "seed": seed}, "distill").to_dict()
    evaluation, _ = evaluation_config(params, eval_overrides)
    pool = _pool_field(params, method, distill_settings is not None and build_dataclass(DistillConfig, distill_settings, "distill").uses_cc)
    return {**_placed(kind="continual", params=params, dataset=dataset, source=source, cache_dir=cache_dir, device=device),
            "plugins": plugins, "method": method, "steps": steps, "order": order, "ipc": ipc,
            "models_per_step": 3 if models_per_step is None else models_per_step, "seed": seed,
            "distill": distill_settings, "coreset": coreset_options, "evaluation": evaluation, **pool}


def needs_pool(job: dict[str, Any]) -> bool:
    """Whether a job's settings use class centralisation, so that it needs the dataset's pre-trained pool."""
    from .distill import DistillConfig

    settings = job.get("distill")
    return settings is not None and build_dataclass(DistillConfig, settings, "distill").uses_cc


# ------------------------------------------------------------------------------------------ the JSON form


def job_text(job: dict[str, Any]) -> str:
    """The job as one line of JSON, keys sorted: the same config gives the same text (the workflow's rerun trigger)."""
    return json.dumps(job, sort_keys=True, separators=(",", ":"))


def read_job(text: str, kind: str) -> dict[str, Any]:
    """A job config from ``--job`` (JSON text, or @FILE), checked to be of ``kind``."""
    if text.startswith("@"):
        from pathlib import Path

        path = Path(text[1:])
        if not path.exists():
            raise ConfigError(f"--job {text}: file not found")
        text = path.read_text()
    try:
        job = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--job: not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(job, dict) or job.get("kind") not in JOB_KINDS:
        raise ConfigError(f"--job: expected a JSON object with kind one of {', '.join(JOB_KINDS)} (as iid_distill.jobs writes)")
    if job["kind"] != kind:
        raise ConfigError(f"--job: a {job['kind']} job given to `iid-distill {kind}`")
    for key in JOB_FIELDS[kind]:
        if key not in job:
            raise ConfigError(f"--job: the {kind} job has no '{key}'; its fields are {', '.join(JOB_FIELDS[kind])}")
    unknown = sorted(set(job) - set(JOB_FIELDS[kind]) - set(OPTIONAL_JOB_FIELDS.get(kind, ())))
    if unknown:
        raise ConfigError(f"--job: '{unknown[0]}' is not a field of a {kind} job; its fields are {', '.join(JOB_FIELDS[kind])}")
    if "plugins" in job:
        from .distill import import_plugins

        import_plugins(job["plugins"], "--job plugins")
    _check_job_values(job)
    return job


def _check_job_values(job: dict[str, Any]) -> None:
    """Every value of a job as deeply as params are checked: whole dataclass sections (a partial one would fill the
    rest from defaults the workflow never chose), seeds as integer lists, counts as integers in range."""
    from .coreset import coreset_methods, select_coreset
    from .distill import DistillConfig
    from .evaluate import EvalConfig
    from .pretrain import PretrainConfig

    kind = job["kind"]
    data = job["data"]
    if not isinstance(data, dict) or set(data) != {"dataset", "source", "cache_dir"}:
        raise ConfigError("--job: 'data' needs exactly dataset, source and cache_dir")
    if not isinstance(data["dataset"], str) or not isinstance(data["cache_dir"], str) or not isinstance(data["source"], (str, type(None))):
        raise ConfigError("--job: 'data' dataset and cache_dir must be text, source text or null")
    if kind == "data":
        _job_value(job, "download", lambda value: isinstance(value, bool), "true or false")
        return
    _job_value(job, "device", lambda value: isinstance(value, str), "text (auto, cpu, cuda[:N])")
    sections = {"evaluation": EvalConfig, "distill": DistillConfig, "pretrain": PretrainConfig}
    optional = {"distill": ("distill", "evaluation"), "continual": ("distill",)}.get(kind, ())
    for name, cls in sections.items():
        if name in job and not (job[name] is None and name in optional):
            _whole_section(job[name], cls, name)
    for name in ("seeds", "eval_seeds"):
        if name in job and not (name == "eval_seeds" and job.get("evaluation") is None and job[name] == []):
            check_seeds(job[name], f"--job {name}")
    bounds = {"ipc": 1, "seed": 0, "steps": 1, "order": 0, "models_per_step": 1}
    for name, low in bounds.items():
        if name in job:
            _job_value(job, name, lambda value, low=low: isinstance(value, int) and not isinstance(value, bool) and value >= low,
                       f"an integer >= {low}")
    for name in ("method", "method_id", "pool"):
        if name in job:
            _job_value(job, name, lambda value: isinstance(value, str) and value != "", "a pool name (text)" if name == "pool" else "a method id (text)")
    if kind == "coreset":
        _job_value(job, "method", lambda value: value in coreset_methods(), f"one of {', '.join(coreset_methods())}")
    for name in ("options", "coreset"):
        if job.get(name) is not None:
            _job_value(job, name, lambda value: isinstance(value, dict), "a mapping of select_coreset options")
            check_keyword_options(select_coreset, job[name], "coreset")


def _job_value(job: dict[str, Any], name: str, valid, expected: str) -> None:
    if not valid(job[name]):
        raise ConfigError(f"--job: '{name}' = {job[name]!r}: expected {expected}")


def _whole_section(values: Any, cls: type, where: str) -> None:
    """``values`` is every field of ``cls`` (as jobs write them) and builds it."""
    if not isinstance(values, dict):
        raise ConfigError(f"--job: '{where}' must be a mapping of every {cls.__name__} field, got {type(values).__name__}")
    missing = [field.name for field in dataclasses.fields(cls) if field.name not in values]
    if missing:
        raise ConfigError(f"--job: '{where}' lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: a job carries "
                          "every field (as iid_distill.jobs writes it), never a partial section")
    build_dataclass(cls, values, where)
