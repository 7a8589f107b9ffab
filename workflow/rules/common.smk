# Shared by the step files: schema validation, path constants and input functions. The logic lives in the package and
# is unit-tested there: iid_distill.plan (checks, grid, report outputs), iid_distill.targets (paths, target lists),
# iid_distill.rule_jobs (each rule's job, passed as `iid-distill ... --job JSON`). The rules live in one file per step.

import os
import re
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    from iid_distill.coreset import coreset_methods
    from iid_distill.distill import method_ids
    from iid_distill import plan
    from iid_distill.jobs import job_text
    from iid_distill.rule_jobs import rule_job, rule_pool_files
    from iid_distill.targets import WorkflowFiles
    from iid_distill.utils import UserError
    from iid_distill.versions import implementation_version
except ImportError as import_error:
    raise WorkflowError(
        f"cannot import the iid_distill package ({import_error}); install the project first: pip install -e ."
    )


SCHEMA_FILE = "../schemas/params.schema.yaml"
CORESET_METHODS = coreset_methods()  # the coreset registry's ids


# ------------------------------------------------------------------------------------------ params validation


def plan_call(function, *args, **kwargs):
    """A call into iid_distill.plan / jobs; its one-line error becomes Snakemake's, without a traceback."""
    try:
        return function(*args, **kwargs)
    except UserError as error:
        raise WorkflowError(str(error)) from None


def validate_params():
    """Check config against the schema (filling its defaults), then what the schema cannot see (iid_distill.plan)."""
    plan_call(
        plan.check_merged_config,
        config,
        workflow.configfiles,
        lambda data: validate(data, SCHEMA_FILE, set_default=True),
    )


# ------------------------------------------------------------------------------------------ paths

validate_params()

FILES = WorkflowFiles(
    config
)  # every path template and target list (iid_distill.targets)
LOGS, BENCHMARKS = FILES.logs, FILES.benchmarks
ENV_FILE = "../envs/iid-distill.yaml"
DATA_INFO, POOL_MANIFEST, POOL_VARIANT_MANIFEST = (
    FILES.data_info,
    FILES.pool_manifest,
    FILES.pool_variant_manifest,
)
SET_STEM, EVAL_RECORDS, WHOLE_RECORDS = (
    FILES.set_stem,
    FILES.eval_records,
    FILES.whole_records,
)
SWEEP_STEM, SWEEP_RECORDS, SWEEP_TABLE = (
    FILES.sweep_stem,
    FILES.sweep_records,
    FILES.sweep_table,
)
CONVERGENCE_STEM, CONTINUAL_RECORD = FILES.convergence_stem, FILES.continual_record
RUNS_TABLE = FILES.runs_table

DISTILL_IDS = sorted(set(method_ids()) | set(config["distill"]["methods"]))
THREADS = config["workflow"]["threads"]
# On the CPU no job needs a device, so the `gpu` resource (the number of GPUs: --resources gpu=N) never limits it.
GPU = 0 if config["device"] == "cpu" else 1


wildcard_constraints:
    dataset="[a-z0-9]+",
    ipc="[1-9][0-9]*",
    sweep="[a-z][a-z0-9_]*",
    value="[0-9][0-9.e+-]*",
    steps="[1-9][0-9]*",
    order="[0-9]+",
    method="[a-z][a-z0-9_]*",
    arch="[A-Za-z][A-Za-z0-9]*",
    pool="[A-Za-z0-9][A-Za-z0-9_]*",


# ------------------------------------------------------------------------------------------ target lists


def reported(files, category):
    """`files` marked for `snakemake --report`: tables (.md), figures (.png) and summary.json, each with its caption
    workflow/report/<stem>.rst (data, protocol, seeds); the .tex and .pdf twins stay out of the page.
    """
    marked = []
    for path in files:
        stem, suffix = os.path.splitext(os.path.basename(path))
        if suffix in (".md", ".png", ".json"):
            caption = f"../report/{stem}.rst"
            path = report(
                path, caption=caption, category=category, labels={"file": stem}
            )
        marked.append(path)
    return marked


def figure_stem(wildcards, output):
    """The stem `iid-distill tsne|grids --out` takes: the figure's .png output without its suffix."""
    return output[0].removesuffix(".png")


def implementation(*steps):
    """The implementation versions (iid_distill.versions) a rule's jobs compute with, as a param: bumping one re-runs
    exactly those jobs, while editing source files re-runs nothing (`snakemake --forcerun RULE` forces a re-run).
    """
    return " ".join(implementation_version(step) for step in steps)


def method_pattern(methods):
    return "|".join(re.escape(method) for method in methods) or "(?!)"


# ------------------------------------------------------------------------------------------ job configs


def job_flag(rule):
    """`--job JSON` of `rule`'s jobs: the whole configuration, resolved once from the merged config by
    iid_distill.rule_jobs (so the job reads no params.yaml). It is a param: a change in any resolved setting re-runs
    the job.
    """

    def flag(wildcards):
        job = plan_call(rule_job, config, rule, dict(wildcards))
        return f"--job {shlex.quote(job_text(job))}"

    return flag


def pool_input(rule):
    """The pool manifest `rule`'s jobs read when their settings use class centralisation: the method's named pool
    (params pools) or the dataset's default one (iid_distill.rule_jobs)."""

    def inputs(wildcards):
        return plan_call(rule_pool_files, config, rule, dict(wildcards))

    return inputs


def data_source(wildcards):
    source = config["data"]["sources"].get(wildcards.dataset)
    return [source] if source else []


def device_flag(wildcards):
    """--device of the figure jobs (t-SNE features), which take flags, not a job config."""
    return f"--device {config['device']}"


def runtime_of(kind):
    """Minutes one job of `kind` asks of a cluster (params workflow.resources; Slurm's --time)."""
    return config["workflow"]["resources"][kind]["runtime"]


def memory_of(kind):
    """MB one job of `kind` asks of a cluster (params workflow.resources; Slurm's --mem)."""
    return config["workflow"]["resources"][kind]["mem_mb"]


def gpu_wrapper(wildcards):
    """Runs a GPU job on a device of its own (iid_distill.gpu_slots), failing when it finds none (device auto or
    cuda asks for GPUs: a CPU-only torch must not turn the grid into a silent CPU run); device cpu needs no wrapper.
    """
    return (
        ""
        if config["device"] == "cpu"
        else "python -m iid_distill.gpu_slots --require-gpu --"
    )


def pool_of(dataset):
    return [POOL_MANIFEST.format(dataset=dataset)]


def sweep_block(wildcards):
    return config["sweeps"][wildcards.sweep]


def sweep_data_info(wildcards):
    return DATA_INFO.format(dataset=sweep_block(wildcards)["dataset"])


def pool_flag(wildcards, input):
    """--pool <dir of the pool manifest> for jobs with class centralisation."""
    if not input.pool:
        return ""
    return f"--pool {shlex.quote(input.pool[0].removesuffix('.json'))}"


def expect_seeds_flag(wildcards):
    """--expect-seeds N checks seeds 0..N-1 for every group; other seed lists are checked by the evaluate jobs only."""
    seeds = sorted(config["evaluation"]["seeds"])
    return f"--expect-seeds {len(seeds)}" if seeds == list(range(len(seeds))) else ""


def report_label_flags(wildcards):
    """--data-label NAME=LABEL for datasets read from a non-official copy (e.g. CIFAR-10 (JPEG copy))."""
    return " ".join(
        f"--data-label {shlex.quote(f'{dataset}={label}')}"
        for dataset, label in sorted(config["report_labels"].items())
    )


def report_family_flags(wildcards):
    return " ".join(plan.report_family_options(config))


def files_flag(flag, files):
    return f"{flag} {' '.join(shlex.quote(path) for path in files)}" if files else ""


def tsne_sweep_titles(wildcards):
    block = FILES.tsne_sweep()
    return " ".join(
        shlex.quote(f"{block['parameter']} = {plan.sweep_value_text(value)}")
        for value in block["values"]
    )
