# iid-distill: the paper's results as one Snakemake DAG (documentation: reports/README.md).
#
#   snakemake --profile workflow/profiles/default            # the paper's grid on this machine (GPUs if any)
#   snakemake --profile workflow/profiles/slurm              # the same on a SLURM cluster
#   snakemake --cores all --configfile config/quick.yaml     # the CPU demo on digits (make demo)
#
# params.yaml is the configuration (validated against workflow/schemas/params.schema.yaml); every rule calls the
# `iid-distill` command line with the job's full settings.
from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/coreset.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/convergence.smk"
include: "workflow/rules/continual.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        FILES.report_files(),
