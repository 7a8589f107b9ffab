# Shared by the step files: params validation, the experiment grid, output paths, and the per-job settings turned
# into `iid-distill` flags. Only functions and constants live here; the rules live in one file per step.

import os
import re
import shlex
from itertools import product

import yaml
from jsonschema.exceptions import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    from iid_distill.coreset import METHODS as CORESET_METHODS
    from iid_distill.distill import METHOD_IDS, resolve_distill_settings
    from iid_distill.utils import UserError
except ImportError as import_error:
    raise WorkflowError(
        f"cannot import the iid_distill package ({import_error}); install the project first: pip install -e ."
    )


SCHEMA_FILE = "../schemas/params.schema.yaml"
# Fields that the method id and the grid's IPC decide (the CLI takes them as --method-id / --ipc).
DISTILL_IDENTITY_FIELDS = ("method", "constraints", "ipc")
# Package modules each compute step runs: editing one re-runs that step's jobs (Snakemake's mtime trigger).
STEP_MODULES = {
    "prepare": ("data",),
    "pretrain": ("pretrain", "models", "data", "evaluate"),
    "coreset": ("coreset", "models", "data", "evaluate", "synthetic"),
    "distill": (
        "distill",
        "losses",
        "augment",
        "models",
        "data",
        "pretrain",
        "synthetic",
        "evaluate",
    ),
    "evaluate": ("evaluate", "augment", "models", "data", "synthetic"),
    "report": ("report",),
}


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


def validate_params():
    """Check config against the schema, filling its defaults; any problem is one line naming the key path."""
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
    for name in enabled:
        for index, method in enumerate(config["experiments"][name]["methods"]):
            if method not in known:
                raise WorkflowError(
                    f"params key 'experiments.{name}.methods[{index}]': unknown method {method!r}; "
                    f"known: {', '.join(sorted(known))} (add new ids under distill.methods)"
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


# ------------------------------------------------------------------------------------------ paths

validate_params()

RESULTS = config["results_dir"].rstrip("/")
REPORT_DIR = config["report_dir"].rstrip("/")
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ENV_FILE = "../envs/iid-distill.yaml"

DATA_INFO = f"{RESULTS}/data/{{dataset}}.json"
POOL_MANIFEST = f"{RESULTS}/pools/{{dataset}}.json"  # copy of <pool dir>/pool.json once the pool is complete
SET_STEM = f"{RESULTS}/sets/{{dataset}}/ipc{{ipc}}/{{method}}"
EVAL_RECORDS = f"{RESULTS}/evals/{{dataset}}/ipc{{ipc}}/{{method}}.{{arch}}.json"
RUNS_TABLE = f"{RESULTS}/all_runs.csv"
REPORT_TABLES = [
    f"{REPORT_DIR}/{table}.{suffix}"
    for table in ("table1", "table2", "table6")
    for suffix in ("md", "tex")
] + [f"{REPORT_DIR}/runs_summary.md"]
REPORT_SUMMARY = f"{REPORT_DIR}/summary.json"

CELLS = grid_cells()
DISTILL_IDS = sorted(set(METHOD_IDS) | set(config["distill"]["methods"]))
THREADS = config["workflow"]["threads"]
# On the CPU no job needs a device, so the `gpu` resource (the number of GPUs: --resources gpu=N) never limits it.
GPU = 0 if config["device"] == "cpu" else 1


wildcard_constraints:
    dataset="[a-z0-9]+",
    ipc="[1-9][0-9]*",
    method="[a-z][a-z0-9_]*",
    arch="[A-Za-z][A-Za-z0-9]*",


# ------------------------------------------------------------------------------------------ target lists


def evaluation_files():
    return [
        EVAL_RECORDS.format(dataset=dataset, ipc=ipc, method=method, arch=arch)
        for dataset, ipc, method, arch in CELLS
    ]


def report_files():
    return REPORT_TABLES + [REPORT_SUMMARY]


def package_sources(step):
    """The package modules a step runs, as inputs (relative to the repository root, the working directory)."""
    return [f"src/iid_distill/{module}.py" for module in STEP_MODULES[step]]


def method_pattern(methods):
    return "|".join(re.escape(method) for method in methods) or "(?!)"


# ------------------------------------------------------------------------------------------ CLI flags


def yaml_value(value):
    """`value` as YAML text that `--set key=TEXT` reads back unchanged (PyYAML reads 1e-05 as a string, 1.0e-05 not)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("\n...").strip()


def set_flags(settings):
    """`--set key=value` for every setting, sorted, shell-quoted: the job's whole configuration on its command line."""
    return " ".join(
        f"--set {shlex.quote(f'{key}={yaml_value(value)}')}"
        for key, value in sorted(settings.items())
    )


def data_flags(wildcards):
    """Where the job reads its dataset: the merged config's source and cache, not params.yaml on disk."""
    flags = f"--cache-dir {shlex.quote(config['data']['cache_dir'])}"
    source = config["data"]["sources"].get(wildcards.dataset)
    return f"{flags} --source {shlex.quote(source)}" if source else flags


def data_source(wildcards):
    source = config["data"]["sources"].get(wildcards.dataset)
    return [source] if source else []


def download_flag(wildcards):
    return (
        "--download"
        if config["workflow"]["download"] and not data_source(wildcards)
        else ""
    )


def device_flag(wildcards):
    return f"--device {config['device']}"


def gpu_wrapper(wildcards):
    """Runs a GPU job on a device of its own (iid_distill.gpu_slots); jobs configured for the CPU need none."""
    return "" if config["device"] == "cpu" else "python -m iid_distill.gpu_slots --"


def pretrain_flags(wildcards):
    return set_flags(config["pretrain"])


def coreset_flags(wildcards):
    return set_flags(config["coreset"])


def distill_flags(wildcards):
    settings = distill_settings(wildcards.dataset, wildcards.ipc, wildcards.method)
    return set_flags(
        {
            key: value
            for key, value in settings.items()
            if key not in DISTILL_IDENTITY_FIELDS
        }
    )


def pool_input(wildcards):
    if uses_pool(wildcards.dataset, wildcards.ipc, wildcards.method):
        return [POOL_MANIFEST.format(dataset=wildcards.dataset)]
    return []


def pool_flag(wildcards, input):
    """--pool <dir of the pool manifest> for jobs with class centralisation."""
    if not input.pool:
        return ""
    return f"--pool {shlex.quote(input.pool[0].removesuffix('.json'))}"


def evaluation_flags(wildcards):
    settings = {
        key: value for key, value in config["evaluation"].items() if key != "seeds"
    }
    settings["arch"] = wildcards.arch
    return set_flags(settings)


def evaluation_seeds(wildcards):
    return " ".join(str(seed) for seed in config["evaluation"]["seeds"])


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
