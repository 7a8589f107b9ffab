# Shared by the step files: params validation, the experiment grid, output paths, and each job's configuration
# resolved once (iid_distill.jobs) and passed as `iid-distill ... --job JSON`. Only functions and constants live here; the rules live in one file per step.

import os
import re
import shlex

from jsonschema.exceptions import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    from iid_distill.coreset import coreset_methods
    from iid_distill.distill import METHOD_IDS
    from iid_distill.jobs import (
        continual_job,
        coreset_job,
        data_job,
        distill_job,
        evaluate_job,
        job_text,
        needs_pool,
        pretrain_job,
    )
    from iid_distill import plan
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
    plan_call(plan.check_config_files, workflow.configfiles, config)
    try:
        validate(config, SCHEMA_FILE, set_default=True)
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        raise WorkflowError(
            f"{plan.describe_schema_error(cause)} (schema: workflow/schemas/params.schema.yaml)"
        ) from None
    plan_call(plan.check_params, config, METHOD_IDS, CORESET_METHODS)


def uses_pool(dataset, ipc, method):
    """Class centralisation needs the dataset's pre-trained feature networks (the job's settings say so)."""
    if method in CORESET_METHODS:
        return False
    return plan_call(lambda: needs_pool(distill_job(config, dataset, int(ipc), method)))


def sweep_value_text(value):
    return plan.sweep_value_text(value)


# ------------------------------------------------------------------------------------------ paths

validate_params()

RESULTS = config["results_dir"].rstrip("/")
REPORT_DIR = config["report_dir"].rstrip("/")
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ENV_FILE = "../envs/iid-distill.yaml"

DATA_INFO = f"{RESULTS}/data/{{dataset}}.json"
# <pool dir>.json: copy of <pool dir>/pool.json once the pool is complete; the pool dir is where the CLI looks by default
POOL_MANIFEST = f"{RESULTS}/pools/{{dataset}}-{config['pretrain']['arch']}.json"
SET_STEM = f"{RESULTS}/sets/{{dataset}}/ipc{{ipc}}/{{method}}"
EVAL_RECORDS = f"{RESULTS}/evals/{{dataset}}/ipc{{ipc}}/{{method}}.{{arch}}.json"
WHOLE_RECORDS = f"{RESULTS}/evals/{{dataset}}/whole.{{arch}}.json"
SWEEP_STEM = f"{RESULTS}/sweeps/{{sweep}}/{{value}}"
SWEEP_RECORDS = f"{RESULTS}/sweeps/{{sweep}}/{{value}}.{{arch}}.json"
SWEEP_TABLE = f"{RESULTS}/sweeps/{{sweep}}.csv"
CONVERGENCE_STEM = f"{RESULTS}/convergence/{{dataset}}/ipc{{ipc}}/{{method}}"
CONTINUAL_RECORD = (
    f"{RESULTS}/continual/{{dataset}}/steps{{steps}}/order{{order}}/{{method}}.json"
)
RUNS_TABLE = f"{RESULTS}/all_runs.csv"
REPORT_TABLES = [f"{REPORT_DIR}/{name}" for name in plan.report_table_files(config)]
FIGURE_SUFFIXES = ("png", "pdf")  # report.save_figure writes both
REPORT_SUMMARY = f"{REPORT_DIR}/summary.json"
REPORT_METRICS = f"{REPORT_DIR}/metrics.json"  # accuracy per cell (DVC metrics)

CELLS = plan.grid_cells(config)
DISTILL_IDS = sorted(set(METHOD_IDS) | set(config["distill"]["methods"]))
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


# ------------------------------------------------------------------------------------------ target lists


def evaluation_files():
    """Every records file of the runs table: the grids' sets and the whole-dataset references."""
    return [
        EVAL_RECORDS.format(dataset=dataset, ipc=ipc, method=method, arch=arch)
        for dataset, ipc, method, arch in CELLS
    ] + [
        WHOLE_RECORDS.format(dataset=dataset, arch=arch)
        for dataset, arch in plan.whole_cells(config)
    ]


def sweep_record_files(sweep):
    return [
        SWEEP_RECORDS.format(
            sweep=sweep,
            value=sweep_value_text(value),
            arch=plan.sweep_arch(config, sweep),
        )
        for value in config["sweeps"][sweep]["values"]
    ]


def sweep_table_files():
    return [
        SWEEP_TABLE.format(sweep=sweep) for sweep in sorted(plan.enabled_sweeps(config))
    ]


def convergence_files():
    return [
        CONVERGENCE_STEM.format(dataset=dataset, ipc=ipc, method=method) + ".eval.csv"
        for dataset, ipc, method in plan.convergence_cells(config)
    ]


def continual_files():
    dataset = config["continual"].get("dataset")
    return [
        CONTINUAL_RECORD.format(
            dataset=dataset, steps=steps, order=order, method=method
        )
        for steps, order, method in plan.continual_cells(config)
    ]


def figure_files(stem):
    return [f"{REPORT_DIR}/{stem}.{suffix}" for suffix in FIGURE_SUFFIXES]


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


def report_figure_files():
    return [
        path for stem in plan.report_figure_stems(config) for path in figure_files(stem)
    ]


def figure_data_files():
    """<figure>.csv: the points each report figure draws (DVC plots read them)."""
    return [f"{REPORT_DIR}/{stem}.csv" for stem in plan.report_figure_stems(config)]


def convergence_table_files():
    """convergence.md (final and best-of-run accuracy of the Figure 5 runs), where convergence runs are enabled."""
    return [f"{REPORT_DIR}/convergence.md"] if plan.convergence_cells(config) else []


def report_files():
    return (
        REPORT_TABLES
        + [REPORT_SUMMARY, REPORT_METRICS]
        + convergence_table_files()
        + figure_data_files()
        + report_figure_files()
        + [
            path
            for stem in plan.set_figure_stems(config)
            for path in figure_files(stem)
        ]
    )


def implementation(*steps):
    """The implementation versions (iid_distill.versions) a rule's jobs compute with, as a param: bumping one re-runs
    exactly those jobs, while editing source files re-runs nothing (`snakemake --forcerun RULE` forces a re-run).
    """
    return " ".join(implementation_version(step) for step in steps)


def method_pattern(methods):
    return "|".join(re.escape(method) for method in methods) or "(?!)"


# ------------------------------------------------------------------------------------------ job configs


def job_flag(build, *args, **kwargs):
    """`--job JSON`: the job's whole configuration, resolved once here from the merged config by iid_distill.jobs
    (so the job reads no params.yaml). It is a param: a change in any resolved setting re-runs the job.
    """
    try:
        job = build(config, *args, **kwargs)
    except UserError as error:
        raise WorkflowError(
            f"{build.__name__} {' '.join(map(str, args))}: {error}"
        ) from None
    return f"--job {shlex.quote(job_text(job))}"


def data_job_flag(wildcards):
    download = config["workflow"]["download"] and not data_source(wildcards)
    return job_flag(data_job, wildcards.dataset, download=download)


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


def pretrain_job_flag(wildcards):
    return job_flag(pretrain_job, wildcards.dataset)


def coreset_job_flag(wildcards):
    return job_flag(
        coreset_job,
        wildcards.dataset,
        wildcards.method,
        int(wildcards.ipc),
        seed=config["workflow"]["coreset_seed"],
    )


def distill_job_flag(wildcards):
    return job_flag(
        distill_job, wildcards.dataset, int(wildcards.ipc), wildcards.method
    )


def pool_input(wildcards):
    if uses_pool(wildcards.dataset, wildcards.ipc, wildcards.method):
        return [POOL_MANIFEST.format(dataset=wildcards.dataset)]
    return []


def pool_of(dataset):
    return [POOL_MANIFEST.format(dataset=dataset)]


def sweep_block(wildcards):
    return config["sweeps"][wildcards.sweep]


def sweep_data_info(wildcards):
    return DATA_INFO.format(dataset=sweep_block(wildcards)["dataset"])


def sweep_job_flag(wildcards):
    block = sweep_block(wildcards)
    value = plan_call(plan.sweep_value, config, wildcards.sweep, wildcards.value)
    return job_flag(
        distill_job,
        block["dataset"],
        block["ipc"],
        block["method"],
        overrides={block["parameter"]: value},
    )


def sweep_pool_input(wildcards):
    block = sweep_block(wildcards)
    value = plan_call(plan.sweep_value, config, wildcards.sweep, wildcards.value)
    job = plan_call(
        distill_job,
        config,
        block["dataset"],
        block["ipc"],
        block["method"],
        overrides={block["parameter"]: value},
    )
    return pool_of(block["dataset"]) if needs_pool(job) else []


def sweep_evaluation_job_flag(wildcards):
    return job_flag(
        evaluate_job,
        sweep_block(wildcards)["dataset"],
        overrides={"arch": wildcards.arch},
    )


def convergence_job_flag(wildcards):
    """The method's settings with the convergence iterations, and the periodic evaluation's settings and seeds."""
    block = config["convergence"]
    overrides = {"iterations": block["iterations"], "eval_every": block["eval_every"]}
    return job_flag(
        distill_job,
        wildcards.dataset,
        int(wildcards.ipc),
        wildcards.method,
        overrides=overrides,
        eval_seeds=block["eval_seeds"],
    )


def continual_pool_input(wildcards):
    method = wildcards.method
    if uses_pool(wildcards.dataset, config["continual"]["ipc"], method):
        return pool_of(wildcards.dataset)
    return []


def continual_job_flag(wildcards):
    """The step synthesiser's settings (distill or coreset options) and the memory models' evaluation settings."""
    block = config["continual"]
    return job_flag(
        continual_job,
        wildcards.dataset,
        wildcards.method,
        steps=int(wildcards.steps),
        order=int(wildcards.order),
        ipc=block["ipc"],
        models_per_step=block["models_per_step"],
    )


def pool_flag(wildcards, input):
    """--pool <dir of the pool manifest> for jobs with class centralisation."""
    if not input.pool:
        return ""
    return f"--pool {shlex.quote(input.pool[0].removesuffix('.json'))}"


def evaluation_job_flag(wildcards):
    """Evaluation on `arch`: evaluation.arch_kwargs are evaluation.arch's, others get other_arch_kwargs[arch]."""
    return job_flag(evaluate_job, wildcards.dataset, overrides={"arch": wildcards.arch})


def whole_evaluation_job_flag(wildcards):
    overrides = dict(config["whole_dataset"].get("evaluation") or {})
    overrides["arch"] = wildcards.arch
    return job_flag(evaluate_job, wildcards.dataset, overrides=overrides)


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


def set_file(dataset, ipc, method):
    return SET_STEM.format(dataset=dataset, ipc=ipc, method=method) + ".pt"


def tsne_sets(wildcards):
    block = config["figures"]["tsne"]
    return [
        set_file(block["dataset"], ipc, method)
        for ipc in block["ipc"]
        for method in block["methods"]
    ]


def tsne_sweep_block():
    return config["sweeps"][config["figures"]["tsne_sweep"]["sweep"]]


def tsne_sweep_sets(wildcards):
    sweep = config["figures"]["tsne_sweep"]["sweep"]
    return [
        SWEEP_STEM.format(sweep=sweep, value=sweep_value_text(value)) + ".pt"
        for value in config["sweeps"][sweep]["values"]
    ]


def tsne_sweep_titles(wildcards):
    block = tsne_sweep_block()
    return " ".join(
        shlex.quote(f"{block['parameter']} = {sweep_value_text(value)}")
        for value in block["values"]
    )


def image_grid_sets(wildcards):
    block = config["figures"]["image_grids"]
    return [
        set_file(dataset, block["ipc"], block["method"])
        for dataset in block["datasets"]
    ]
