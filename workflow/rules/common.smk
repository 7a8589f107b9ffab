# Shared by the step files: params validation, the experiment grid, output paths, and each job's configuration
# resolved once (iid_distill.jobs) and passed as `iid-distill ... --job JSON`. Only functions and constants live here; the rules live in one file per step.

import os
import re
import shlex
from itertools import product
from pathlib import Path

from jsonschema.exceptions import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    from iid_distill.coreset import coreset_methods
    from iid_distill.distill import METHOD_IDS, resolve_distill_settings
    from iid_distill.jobs import (
        continual_job,
        coreset_job,
        data_job,
        distill_job,
        evaluate_job,
        job_text,
        pretrain_job,
    )
    from iid_distill.config import check_finite, parse_yaml
    from iid_distill.utils import UserError
    from iid_distill.versions import implementation_version
except ImportError as import_error:
    raise WorkflowError(
        f"cannot import the iid_distill package ({import_error}); install the project first: pip install -e ."
    )


SCHEMA_FILE = "../schemas/params.schema.yaml"
CORESET_METHODS = coreset_methods()  # the coreset registry's ids


# ------------------------------------------------------------------------------------------ params validation


def key_path(parts):
    """['experiments', 'table1_2', 'ipc', 0] -> 'experiments.table1_2.ipc[0]'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def describe_schema_error(error):
    """One line naming the offending params key, from a jsonschema ValidationError."""
    parts = list(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        unexpected = re.findall(r"'([^']*)'", error.message.rpartition("(")[2])
        if unexpected:
            known = sorted(error.schema.get("properties", {}))
            hint = (
                f"; valid keys here: {', '.join(known)}"
                if error.validator == "additionalProperties" and known
                else ""
            )
            return f"params key '{key_path(parts + [unexpected[0]])}' is unknown{hint}"
    if "propertyNames" in error.absolute_schema_path:
        return f"params key '{key_path(parts + [error.instance])}' is not a valid name here: {error.message}"
    return f"params key '{key_path(parts)}': {error.message}"


def check_config_files():
    """What the schema cannot see: a key given twice in a configfile (Snakemake's reader keeps the last one silently)
    and NaN or infinite numbers (no schema bound refuses NaN)."""
    for path in workflow.configfiles:
        try:
            parse_yaml(Path(path).read_text())
        except Exception as error:  # yaml.YAMLError: one line naming the file
            raise WorkflowError(f"{path}: {str(error).splitlines()[0]}") from None
    try:
        check_finite(config, "")
    except UserError as error:
        raise WorkflowError(str(error)) from None


def validate_params():
    """Check config against the schema, filling its defaults; any problem is one line naming the key path."""
    check_config_files()
    try:
        validate(config, SCHEMA_FILE, set_default=True)
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        raise WorkflowError(
            f"{describe_schema_error(cause)} (schema: workflow/schemas/params.schema.yaml)"
        ) from None
    if re.fullmatch(r"cuda:[0-9]+", config["device"]):
        raise WorkflowError(
            f"params key 'device': {config['device']!r} names one GPU, but the workflow gives every job its own "
            "(iid_distill.gpu_slots); use auto or cuda"
        )
    enabled = [name for name, grid in config["experiments"].items() if grid["enabled"]]
    if not enabled:
        raise WorkflowError(
            "params key 'experiments': every grid has enabled: false; nothing to build"
        )
    known = set(CORESET_METHODS) | set(METHOD_IDS) | set(config["distill"]["methods"])
    validate_families(set(METHOD_IDS) | set(config["distill"]["methods"]), known)
    for name in enabled:
        for index, method in enumerate(config["experiments"][name]["methods"]):
            if method not in known:
                raise WorkflowError(
                    f"params key 'experiments.{name}.methods[{index}]': unknown method {method!r}; "
                    f"known: {', '.join(sorted(known))} (add new ids under distill.methods)"
                )


def is_enabled(block):
    """A family block takes part unless it says enabled: false (absent blocks are off)."""
    return bool(block) and block.get("enabled", True)


def check_methods(where, methods, allowed, what):
    for index, method in enumerate(methods):
        if method not in allowed:
            raise WorkflowError(
                f"params key '{where}[{index}]': {method!r} is not a {what}; known: {', '.join(sorted(allowed))}"
            )


def validate_families(distill_ids, known):
    """Method ids and cross-references of the sweeps, convergence, continual and figures blocks."""
    for name, sweep in config["sweeps"].items():
        if is_enabled(sweep):
            check_methods(
                f"sweeps.{name}.method",
                [sweep["method"]],
                distill_ids,
                "distill method id",
            )
    if is_enabled(config["convergence"]):
        check_methods(
            "convergence.methods",
            config["convergence"]["methods"],
            distill_ids,
            "distill method id",
        )
    if is_enabled(config["continual"]):
        check_methods(
            "continual.methods", config["continual"]["methods"], known, "method"
        )
    figures = config["figures"]
    if is_enabled(figures.get("tsne")):
        check_methods(
            "figures.tsne.methods",
            figures["tsne"]["methods"],
            distill_ids,
            "distill method id",
        )
    if is_enabled(figures.get("image_grids")):
        check_methods(
            "figures.image_grids.method",
            [figures["image_grids"]["method"]],
            known,
            "method",
        )
    if is_enabled(figures.get("tsne_sweep")):
        sweep = figures["tsne_sweep"]["sweep"]
        if not is_enabled(config["sweeps"].get(sweep)):
            raise WorkflowError(
                f"params key 'figures.tsne_sweep.sweep': {sweep!r} is not an enabled sweep; "
                f"enabled: {', '.join(sorted(name for name, block in config['sweeps'].items() if is_enabled(block))) or 'none'}"
            )


# ------------------------------------------------------------------------------------------ experiment grid


def grid_cells():
    """(dataset, ipc, method, arch) of every evaluation the enabled grids ask for, sorted, without repeats."""
    cells = set()
    for grid in config["experiments"].values():
        if not grid["enabled"]:
            continue
        for dataset, ipc, method, arch in product(
            grid["datasets"], grid["ipc"], grid["methods"], grid["archs"]
        ):
            cell = {"dataset": dataset, "ipc": ipc, "method": method, "arch": arch}
            if not any(
                all(cell[key] == value for key, value in rule.items())
                for rule in grid["exclude"]
            ):
                cells.add((dataset, ipc, method, arch))
    return sorted(cells)


def is_coreset(method):
    return method in CORESET_METHODS


def distill_settings(dataset, ipc, method):
    """The full DistillConfig dict of one job (published settings | distill.common | distill.methods[id])."""
    try:
        return resolve_distill_settings(config, dataset, int(ipc), method)
    except UserError as error:
        raise WorkflowError(
            f"distill settings for {dataset} ipc {ipc} {method}: {error}"
        ) from None


def uses_pool(dataset, ipc, method):
    """Class centralisation (constraint 'cc') needs the dataset's pre-trained feature networks."""
    if is_coreset(method):
        return False
    return "cc" in distill_settings(dataset, ipc, method)["constraints"].split("+")


def sweep_value_text(value):
    """A sweep value as it appears in file names: 0.7 -> '0.7', 0.0 -> '0', 0.0075 -> '0.0075'."""
    return f"{float(value):g}"


def enabled_sweeps():
    return {
        name: sweep for name, sweep in config["sweeps"].items() if is_enabled(sweep)
    }


def sweep_value(sweep, text):
    block = config["sweeps"][sweep]
    for value in block["values"]:
        if sweep_value_text(value) == text:
            return value
    raise WorkflowError(
        f"sweep {sweep}: no value {text!r} in params sweeps.{sweep}.values"
    )


def sweep_settings(sweep, text):
    """The settings of sweeps[sweep]'s method with its parameter set to one value."""
    block = config["sweeps"][sweep]
    settings = distill_settings(block["dataset"], block["ipc"], block["method"])
    settings[block["parameter"]] = sweep_value(sweep, text)
    return settings


def sweep_arch(sweep):
    return config["sweeps"][sweep].get("arch") or config["evaluation"]["arch"]


def convergence_cells():
    block = config["convergence"]
    if not is_enabled(block):
        return []
    return sorted(product(block["datasets"], block["ipc"], block["methods"]))


def continual_cells():
    block = config["continual"]
    if not is_enabled(block):
        return []
    return sorted(product(block["steps"], block["orders"], block["methods"]))


def whole_cells():
    block = config["whole_dataset"]
    if not is_enabled(block):
        return []
    return sorted(product(block["datasets"], block["archs"]))


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
REPORT_TABLES = [
    f"{REPORT_DIR}/{table}.{suffix}"
    for table in ("table1", "table2", "table3", "table4", "table5", "table6", "table7")
    for suffix in ("md", "tex")
] + [f"{REPORT_DIR}/runs_summary.md"]
FIGURE_SUFFIXES = ("png", "pdf")  # report.save_figure writes both
REPORT_SUMMARY = f"{REPORT_DIR}/summary.json"
REPORT_METRICS = f"{REPORT_DIR}/metrics.json"  # accuracy per cell (DVC metrics)

CELLS = grid_cells()
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
        for dataset, arch in whole_cells()
    ]


def sweep_record_files(sweep):
    return [
        SWEEP_RECORDS.format(
            sweep=sweep, value=sweep_value_text(value), arch=sweep_arch(sweep)
        )
        for value in config["sweeps"][sweep]["values"]
    ]


def sweep_table_files():
    return [SWEEP_TABLE.format(sweep=sweep) for sweep in sorted(enabled_sweeps())]


def convergence_files():
    return [
        CONVERGENCE_STEM.format(dataset=dataset, ipc=ipc, method=method) + ".eval.csv"
        for dataset, ipc, method in convergence_cells()
    ]


def continual_files():
    dataset = config["continual"].get("dataset")
    return [
        CONTINUAL_RECORD.format(
            dataset=dataset, steps=steps, order=order, method=method
        )
        for steps, order, method in continual_cells()
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


def report_figure_stems():
    """The figures `iid-distill report` draws, for the families that are enabled."""
    stems = []
    parameters = {sweep["parameter"] for sweep in enabled_sweeps().values()}
    if parameters & {"lambda_cc", "lambda_cm"}:
        stems.append("figure4_lambda")
    if convergence_cells():
        stems.append("figure5_convergence")
    if grid_enabled("high_ipc"):
        stems.append("figure6_compression")
    if continual_cells():
        stems.append("figure7_continual")
    return stems


def report_figure_files():
    return [path for stem in report_figure_stems() for path in figure_files(stem)]


def figure_data_files():
    """<figure>.csv: the points each report figure draws (DVC plots read them)."""
    return [f"{REPORT_DIR}/{stem}.csv" for stem in report_figure_stems()]


def convergence_table_files():
    """convergence.md (final and best-of-run accuracy of the Figure 5 runs), where convergence runs are enabled."""
    return [f"{REPORT_DIR}/convergence.md"] if convergence_cells() else []


def set_figure_files():
    """Figures 1, 3 and 8, drawn from the synthetic sets by their own rules."""
    figures = config["figures"]
    files = []
    if is_enabled(figures.get("tsne")):
        files += figure_files("figure1_tsne")
    if is_enabled(figures.get("tsne_sweep")):
        files += figure_files("figure3_tsne_sweep")
    if is_enabled(figures.get("image_grids")):
        files += figure_files("figure8_images")
    return files


def report_files():
    return (
        REPORT_TABLES
        + [REPORT_SUMMARY, REPORT_METRICS]
        + convergence_table_files()
        + figure_data_files()
        + report_figure_files()
        + set_figure_files()
    )


def grid_enabled(name):
    grid = config["experiments"].get(name)
    return bool(grid) and grid["enabled"]


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
    value = sweep_value(wildcards.sweep, wildcards.value)
    return job_flag(
        distill_job,
        block["dataset"],
        block["ipc"],
        block["method"],
        overrides={block["parameter"]: value},
    )


def sweep_pool_input(wildcards):
    block = sweep_block(wildcards)
    if "cc" in sweep_settings(wildcards.sweep, wildcards.value)["constraints"].split(
        "+"
    ):
        return pool_of(block["dataset"])
    return []


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
    """What the report needs to know about the families: the datasets of Tables 3/4, 6 and 7 and Table 7's IPCs."""
    flags = []
    if grid_enabled("cross_arch"):
        flags.append(
            f"--cross-arch-dataset {config['experiments']['cross_arch']['datasets'][0]}"
        )
    if grid_enabled("table6"):
        flags.append(
            f"--ablation-datasets {' '.join(config['experiments']['table6']['datasets'])}"
        )
    if grid_enabled("high_ipc"):
        dataset = config["experiments"]["high_ipc"]["datasets"][0]
        ipcs = sorted(
            {ipc for cell_dataset, ipc, _, _ in CELLS if cell_dataset == dataset}
        )
        flags.append(
            f"--compression-dataset {dataset} --compression-ipcs {' '.join(map(str, ipcs))}"
        )
    return " ".join(flags)


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
