#!/usr/bin/env bash
# Embedded demo (make demo): the paper's workflow on scikit-learn's digits, on the CPU, no download, about 10 minutes
# on 2 cores. Same DAG as the full run (prepare -> pool -> coresets / distillation -> evaluation -> runs table -> report);
# config/quick.yaml shrinks the settings and points every output at results/quick/.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
snakemake --cores all --configfile config/quick.yaml --rerun-incomplete --keep-going "$@"
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "  outcome:    results/quick/report/runs_summary.md (opens with which sets beat which, by how much, over 3 seeds)"
echo "  tables:     results/quick/report/table{1..7}.md (digits rows beside the paper's numbers; Table 6 from digits)"
echo "  figures:    results/quick/report/figure{1,3,4,5,6,7,8}_*.png"
echo "  runs table: results/quick/all_runs.csv; sets: results/quick/sets/digits/ipc{10,20}/*.pt (and .png image grids)"
