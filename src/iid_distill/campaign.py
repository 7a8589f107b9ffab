"""A campaign: the workflow's compute jobs for one config overlay, exported as a plan that a machine without Snakemake
runs (a GPU lease), leaving every output where the workflow expects it.

``iid-distill campaign plan --configfile config/X.yaml --out plan.json`` (where the workflow runs: it merges and
validates the config with Snakemake's own functions) lists every job the workflow's default target needs that
computes: preparing data, the pool, coresets, distillations, evaluations, sweeps, convergence and continual runs. Each
job is its rule, wildcards, outputs, the files it reads, and the ``iid-distill`` commands with the job config
:mod:`iid_distill.rule_jobs` resolves, the same commands as the rule's shell (tests/test_campaign.py compares them
with Snakemake's dry run). Tables, figures and the runs table stay with Snakemake, which later finds the campaign's
outputs and skips their jobs.

``iid-distill campaign run plan.json`` (torch only) runs the plan in its order: a job starts once the files it reads
exist, up to ``--parallel`` at once; one whose outputs all exist is skipped; at ``--deadline-s`` running jobs stop
(distillations resume from their checkpoints next time) and waiting ones are left.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import plan
from .rule_jobs import rule_job
from .targets import WorkflowFiles
from .utils import UserError

PLAN_FORMAT = 1
COMMAND = [sys.executable, "-m", "iid_distill.cli"]  # what a step's argv follows: the package's CLI, no install needed


class CampaignError(UserError):
    """A campaign problem: one line naming the file or key."""


@dataclasses.dataclass
class CampaignJob:
    """One workflow job: ``steps`` run in order, each ``{"argv": [...]}`` (an ``iid-distill`` call; ``stdout`` names a
    file for its output, else it goes to ``log`` with its errors) or ``{"copy": [source, target]}``."""

    rule: str
    wildcards: dict[str, str]
    outputs: list[str]
    reads: list[str]
    steps: list[dict[str, Any]]
    log: str

    @property
    def name(self) -> str:
        return job_name(self.rule, self.wildcards)


def job_name(rule: str, wildcards: Mapping[str, str]) -> str:
    """``distill dataset=cifar10 ipc=10 method=dm``: a job's name, as the runner reports it."""
    return " ".join([rule, *(f"{key}={value}" for key, value in wildcards.items())])


# ------------------------------------------------------------------------------------------ the merged config


def workflow_config(params: str | Path, overlays: Sequence[str | Path] = ()) -> dict[str, Any]:
    """``params`` with each ``overlays`` file merged over it and the schema's defaults filled, by Snakemake's own
    functions, then the workflow's checks (:func:`iid_distill.plan.check_merged_config`, as workflow/rules/common.smk).
    Run from the repository root, where the workflow's schema is."""
    try:
        from snakemake.utils import update_config, validate
    except ImportError:
        raise CampaignError("campaign plan merges the config as the workflow does and needs snakemake (pip install -e '.[workflow]'); "
                            "`campaign run` needs only torch") from None
    from .config import parse_yaml
    from .schema import SCHEMA_PATH

    if not SCHEMA_PATH.exists():
        raise CampaignError(f"{SCHEMA_PATH} not found: run campaign plan from the repository root")
    files = [Path(params), *map(Path, overlays)]
    config: dict[str, Any] = {}
    for path in files:
        if not path.exists():
            raise CampaignError(f"{path}: file not found")
        update_config(config, parse_yaml(path.read_text()) or {})
    plan.check_merged_config(config, files, lambda data: validate(data, str(SCHEMA_PATH), set_default=True))
    return config


# ------------------------------------------------------------------------------------------ the jobs


class _Jobs:
    """The compute jobs behind a list of target files, each added once, after the jobs whose outputs it reads."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from .coreset import coreset_methods

        self.config, self.files = config, WorkflowFiles(config)
        self.coresets = set(coreset_methods())
        self.jobs: dict[str, CampaignJob] = {}  # by job name, in the order they were added

    def add(self, rule: str, wildcards: dict[str, Any]) -> str:
        """Add ``rule``'s job for ``wildcards`` (and the jobs it reads from) unless it is there; its first output."""
        wildcards = {key: str(value) for key, value in wildcards.items()}
        name = job_name(rule, wildcards)
        if name not in self.jobs:  # resolved once: a set read by several evaluations is built by one job
            self.jobs[name] = self._build(rule, wildcards)
        return self.jobs[name].outputs[0]

    def _job_config(self, rule: str, wildcards: dict[str, str]) -> tuple[str, dict[str, Any]]:
        from .jobs import job_text

        try:
            job = rule_job(self.config, rule, wildcards)
        except UserError as error:
            raise CampaignError(str(error)) from None
        return job_text(job), job

    def _data(self, dataset: str) -> str:
        return self.add("prepare_data", {"dataset": dataset})

    def _pool(self, job: dict[str, Any]) -> list[str]:
        """The pool manifest a job reads (its method's named pool or the dataset's), made by its own job."""
        if not self.files.pool_files(job):
            return []
        dataset = job["data"]["dataset"]
        if job.get("pool"):
            return [self.add("pretrain_pool_variant", {"dataset": dataset, "pool": job["pool"]})]
        return [self.add("pretrain_pool", {"dataset": dataset})]

    def _build(self, rule: str, w: dict[str, str]) -> CampaignJob:
        files, config = self.files, self.config
        logs = files.logs
        text, job = self._job_config(rule, w)
        if rule == "prepare_data":
            source = config["data"]["sources"].get(w["dataset"])
            info = files.data_info.format(**w)
            return CampaignJob(rule, w, [info], [source] if source else [],
                               [{"argv": ["data", "prepare", "--job", text]}, {"argv": ["data", "info", "--job", text], "stdout": info}],
                               f"{logs}/prepare_data/{w['dataset']}.log")
        if rule in ("pretrain_pool", "pretrain_pool_variant"):
            named = rule == "pretrain_pool_variant"
            manifest = (files.pool_variant_manifest if named else files.pool_manifest).format(**w)
            pool = manifest.removesuffix(".json")
            return CampaignJob(rule, w, [manifest], [self._data(w["dataset"])],
                               [{"argv": ["pretrain", "--job", text, "--out", pool]}, {"copy": [f"{pool}/pool.json", manifest]}],
                               f"{logs}/pretrain_pool/{w['dataset']}{'-' + w['pool'] if named else ''}.log")
        if rule == "coreset":
            stem = files.set_stem.format(**w)
            return CampaignJob(rule, w, [f"{stem}.pt", f"{stem}.png"], [self._data(w["dataset"])],
                               [{"argv": ["coreset", "--job", text, "--out", f"{stem}.pt", "--grid", f"{stem}.png"]}],
                               f"{logs}/coreset/{w['dataset']}_ipc{w['ipc']}_{w['method']}.log")
        if rule in ("distill", "distill_sweep", "distill_convergence"):
            return self._distill(rule, w, text, job)
        if rule in ("evaluate", "evaluate_sweep"):
            return self._evaluation(rule, w, text)
        if rule == "evaluate_whole_dataset":
            records = files.whole_records.format(**w)
            return CampaignJob(rule, w, [records], [self._data(w["dataset"])],
                               [{"argv": ["evaluate", "--whole-dataset", w["dataset"], "--job", text, "--out", records]}],
                               f"{logs}/evaluate/{w['dataset']}_whole_{w['arch']}.log")
        if rule == "continual":
            record = files.continual_record.format(**w)
            pool = self._pool(job)
            return CampaignJob(rule, w, [record], [self._data(w["dataset"]), *pool],
                               [{"argv": ["continual", "--job", text, "--work-dir", record.removesuffix(".json") + ".steps", "--out", record,
                                          "--restart-if-stale", *_pool_flag(pool)]}],
                               f"{logs}/continual/{w['dataset']}_steps{w['steps']}_order{w['order']}_{w['method']}.log")
        raise CampaignError(f"campaign: no job for rule {rule!r}")

    def _distill(self, rule: str, w: dict[str, str], text: str, job: dict[str, Any]) -> CampaignJob:
        files = self.files
        if rule == "distill_sweep":
            stem, log = files.sweep_stem.format(**w), f"{files.logs}/sweeps/{w['sweep']}_{w['value']}.log"
        else:
            folder = "distill" if rule == "distill" else "convergence"
            stem = (files.set_stem if rule == "distill" else files.convergence_stem).format(**w)
            log = f"{files.logs}/{folder}/{w['dataset']}_ipc{w['ipc']}_{w['method']}.log"
        outputs = [f"{stem}.pt", f"{stem}.json", f"{stem}.png"] + ([f"{stem}.eval.csv"] if rule == "distill_convergence" else [])
        pool = self._pool(job)
        return CampaignJob(rule, w, outputs, [self._data(job["data"]["dataset"]), *pool],
                           [{"argv": ["distill", "--job", text, "--out", f"{stem}.pt", "--restart-if-stale", *_pool_flag(pool)]}], log)

    def _evaluation(self, rule: str, w: dict[str, str], text: str) -> CampaignJob:
        files = self.files
        if rule == "evaluate_sweep":
            block = self.config["sweeps"][w["sweep"]]
            synthetic = self.add("distill_sweep", {"sweep": w["sweep"], "value": w["value"]})
            records, dataset = files.sweep_records.format(**w), block["dataset"]
            log = f"{files.logs}/sweeps/{w['sweep']}_{w['value']}_{w['arch']}.log"
        else:
            cell = {key: w[key] for key in ("dataset", "ipc", "method")}
            synthetic = self.add("coreset" if w["method"] in self.coresets else "distill", cell)
            records, dataset = files.eval_records.format(**w), w["dataset"]
            log = f"{files.logs}/evaluate/{w['dataset']}_ipc{w['ipc']}_{w['method']}_{w['arch']}.log"
        return CampaignJob(rule, w, [records], [synthetic, self._data(dataset)],
                           [{"argv": ["evaluate", synthetic, "--job", text, "--out", records]}], log)

    def add_set(self, path: str) -> None:
        """The job that makes the synthetic set ``path`` (a figure's input)."""
        for rule, template in (("distill_sweep", self.files.sweep_stem), ("distill", self.files.set_stem)):
            wildcards = _match(template + ".pt", path)
            if wildcards is not None:
                if rule == "distill" and wildcards["method"] in self.coresets:
                    rule = "coreset"
                self.add(rule, wildcards)
                return
        raise CampaignError(f"campaign: no rule makes {path}")


def _pool_flag(pool: list[str]) -> list[str]:
    return ["--pool", pool[0].removesuffix(".json")] if pool else []


def _match(template: str, path: str) -> dict[str, str] | None:
    """The wildcards of ``template`` (``{name}`` fields) that give ``path``, or None."""
    import re

    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+?)", re.escape(template))
    found = re.fullmatch(pattern, path)
    return None if found is None else found.groupdict()


def campaign_jobs(config: Mapping[str, Any]) -> list[CampaignJob]:
    """Every compute job of the workflow's default target for ``config`` (merged, defaults filled), each after the
    jobs it reads from, then ordered by ``campaign.order`` (:func:`in_value_order`)."""
    jobs = _Jobs(config)
    for dataset, ipc, method, arch in plan.grid_cells(config):
        jobs.add("evaluate", {"dataset": dataset, "ipc": ipc, "method": method, "arch": arch})
    for dataset, arch in plan.whole_cells(config):
        jobs.add("evaluate_whole_dataset", {"dataset": dataset, "arch": arch})
    for sweep in sorted(plan.enabled_sweeps(config)):
        for value in config["sweeps"][sweep]["values"]:
            jobs.add("evaluate_sweep", {"sweep": sweep, "value": plan.sweep_value_text(value), "arch": plan.sweep_arch(config, sweep)})
    for dataset, ipc, method in plan.convergence_cells(config):
        jobs.add("distill_convergence", {"dataset": dataset, "ipc": ipc, "method": method})
    for steps, order, method in plan.continual_cells(config):
        jobs.add("continual", {"dataset": config["continual"]["dataset"], "steps": steps, "order": order, "method": method})
    _add_figure_inputs(jobs, config)
    return in_value_order(list(jobs.jobs.values()), config.get("campaign", {}).get("order", []))


def _add_figure_inputs(jobs: _Jobs, config: Mapping[str, Any]) -> None:
    """The sets (and pools) the enabled set figures draw from."""
    stems = set(plan.set_figure_stems(config))
    files = jobs.files
    sets = ((files.tsne_sets() if "figure1_tsne" in stems else []) + (files.tsne_sweep_sets() if "figure3_tsne_sweep" in stems else [])
            + (files.image_grid_sets() if "figure8_images" in stems else []))
    for path in sets:
        jobs.add_set(path)
    for stem, dataset in (("figure1_tsne", lambda: config["figures"]["tsne"]["dataset"]), ("figure3_tsne_sweep", lambda: files.tsne_sweep()["dataset"])):
        if stem in stems:
            jobs.add("pretrain_pool", {"dataset": dataset()})


def in_value_order(jobs: list[CampaignJob], order: Sequence[str]) -> list[CampaignJob]:
    """``jobs`` with those of the cells ``order`` names first (a method id, or a rule name, matches a job), each
    preceded by the jobs it reads from; the others after them, in the workflow's order."""
    rank = {name: index for index, name in enumerate(order)}
    by_output = {path: job for job in jobs for path in job.outputs}

    def rank_of(job: CampaignJob) -> int:
        method = job.wildcards.get("method", "")
        return min(rank.get(method, len(rank)), rank.get(job.rule, len(rank)))

    ordered: dict[str, CampaignJob] = {}

    def place(job: CampaignJob) -> None:
        for path in job.reads:
            if path in by_output and by_output[path].name not in ordered:
                place(by_output[path])
        ordered.setdefault(job.name, job)

    for job in sorted(jobs, key=rank_of):  # stable: the workflow's order within a rank
        place(job)
    return list(ordered.values())


# ------------------------------------------------------------------------------------------ the plan file


def write_plan(jobs: list[CampaignJob], path: str | Path, *, sources: Sequence[str], force: bool = False) -> Path:
    from .outputs import guard_outputs
    from .utils import atomic_write_text

    with guard_outputs([path], force=force) as (out,):
        atomic_write_text(json.dumps({"format": PLAN_FORMAT, "configfiles": list(sources),
                                      "jobs": [dataclasses.asdict(job) for job in jobs]}, indent=1) + "\n", out)
    return out


def read_plan(path: str | Path) -> list[CampaignJob]:
    path = Path(path)
    if not path.exists():
        raise CampaignError(f"{path}: plan file not found (iid-distill campaign plan writes one)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CampaignError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT or not isinstance(data.get("jobs"), list):
        raise CampaignError(f"{path}: not a campaign plan of format {PLAN_FORMAT} (iid-distill campaign plan writes one)")
    fields = {field.name for field in dataclasses.fields(CampaignJob)}
    jobs = []
    for index, entry in enumerate(data["jobs"]):
        if not isinstance(entry, dict) or set(entry) != fields:
            raise CampaignError(f"{path}: jobs[{index}] needs exactly the fields {', '.join(sorted(fields))}")
        for step in entry["steps"]:
            if not (isinstance(step, dict) and (set(step) in ({"argv"}, {"argv", "stdout"}, {"copy"}))):
                raise CampaignError(f"{path}: jobs[{index}] has a step that is neither an iid-distill call nor a copy: {step!r}")
        jobs.append(CampaignJob(**entry))
    return jobs


# ------------------------------------------------------------------------------------------ running a plan


@dataclasses.dataclass(eq=False)  # hashable by identity: the workers are keyed by run
class _Run:
    job: CampaignJob
    status: str = "waiting"  # waiting | found | running | ok | failed | partial | stopped | not reached
    wall_s: float | None = None
    process: subprocess.Popen | None = None


def _status_before(job: CampaignJob, root: Path) -> str:
    present = [(root / path).exists() for path in job.outputs]
    if all(present):
        return "found"
    # a job that left some outputs is not re-run over them (the commands refuse to replace finished files)
    return "partial" if any(present) else "waiting"


def _child_env(threads: int) -> dict[str, str]:
    package_root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": str(threads), "IID_DISTILL_NO_PROGRESS": "1"}


class _Ended(Exception):
    """A step that did not succeed; its message is the job's status (failed | stopped)."""


def _execute(run: _Run, root: Path, env: dict[str, str], stop: threading.Event) -> None:
    """Run the job's steps in order (in a worker thread); the first failing step ends it."""
    started = time.time()
    log = root / run.job.log
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        try:
            run.status = _steps(run, root, env, stop, handle)
        except (OSError, UserError) as error:  # a copy or an output that cannot be made: the job fails, the campaign goes on
            handle.write(f"iid-distill: campaign: {error}\n")
            run.status = "failed"
        missing = [path for path in run.job.outputs if not (root / path).exists()]
        if run.status == "ok" and missing:
            handle.write(f"iid-distill: campaign: the job ended without {', '.join(missing)}\n")
            run.status = "failed"
    run.wall_s = round(time.time() - started, 1)


def _steps(run: _Run, root: Path, env: dict[str, str], stop: threading.Event, log) -> str:
    """Each step in turn: a copy, or an iid-distill call whose stdout file (if any) appears only when it succeeds."""
    from .utils import atomic_path

    try:
        for step in run.job.steps:
            if "copy" in step:
                source, target = (root / path for path in step["copy"])
                with atomic_path(target) as temporary:
                    shutil.copyfile(source, temporary)
            elif step.get("stdout"):
                with atomic_path(root / step["stdout"]) as temporary, open(temporary, "w") as stdout:
                    _call(run, step["argv"], root, env, stop, stdout, log)
            else:
                _call(run, step["argv"], root, env, stop, log, log)
    except _Ended as ended:
        return str(ended)
    return "ok"


def _call(run: _Run, argv: list[str], root: Path, env: dict[str, str], stop: threading.Event, stdout, log) -> None:
    """One ``iid-distill`` call; :class:`_Ended` when it fails or the deadline stops it."""
    run.process = subprocess.Popen([*COMMAND, *argv], cwd=root, env=env, stdout=stdout, stderr=log)
    while run.process.poll() is None and not stop.wait(0.2):
        pass
    if run.process.poll() is None:  # the deadline
        run.process.terminate()
        run.process.wait()
        raise _Ended("stopped")
    if run.process.returncode != 0:
        raise _Ended("failed")


def run_plan(jobs: list[CampaignJob], *, root: str | Path = ".", parallel: int = 1, threads: int = 2,
             deadline_s: float | None = None, on_change=None) -> list[dict[str, Any]]:
    """Run ``jobs`` in their order from ``root`` (the repository root: plan paths are relative to it); returns each
    job's name, status and wall time. A job starts once every file it reads exists, or is being made by a job that
    finished; one whose outputs all exist is 'found' and not run; a job after a failed one it reads from is never
    started ('not reached'); at ``deadline_s`` from now running jobs are stopped and waiting ones not reached."""
    if parallel < 1 or threads < 1:
        raise CampaignError("campaign run: --parallel and --threads take an integer >= 1")
    if deadline_s is not None and not (math.isfinite(deadline_s) and deadline_s > 0):
        raise CampaignError(f"campaign run: --deadline-s {deadline_s}: give a finite number of seconds > 0")
    root = Path(root)
    deadline = None if deadline_s is None else time.time() + deadline_s
    runs = [_Run(job, _status_before(job, root)) for job in jobs]
    by_output = {path: run for run in runs for path in run.job.outputs}
    stop, env, workers = threading.Event(), _child_env(threads), {}

    def ready(run: _Run) -> bool | None:
        """True: every input is there; False: wait; None: an input will never come."""
        for path in run.job.reads:
            maker = by_output.get(path)
            if maker is None:
                if not (root / path).exists():
                    return None
            elif maker.status in ("failed", "partial", "stopped", "not reached"):
                return None
            elif maker.status not in ("found", "ok"):
                return False
        return True

    while True:
        for run, worker in list(workers.items()):
            if not worker.is_alive():
                del workers[run]
                if on_change is not None:
                    on_change(run.job.name, run.status, run.wall_s)
        if deadline is not None and time.time() > deadline:
            stop.set()
        for run in runs:
            if run.status != "waiting":
                continue
            state = None if stop.is_set() else ready(run)
            if state is None:
                run.status = "not reached"
            elif state and len(workers) < parallel:
                run.status = "running"
                worker = threading.Thread(target=_execute, args=(run, root, env, stop), daemon=True)
                workers[run] = worker
                worker.start()
        if not workers and not any(run.status == "waiting" for run in runs):
            break
        time.sleep(0.2)
    return [{"job": run.job.name, "status": run.status, "wall_s": run.wall_s, "outputs": run.job.outputs} for run in runs]


__all__ = ["CampaignError", "CampaignJob", "campaign_jobs", "in_value_order", "read_plan", "run_plan", "workflow_config", "write_plan"]
