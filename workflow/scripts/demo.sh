#!/usr/bin/env bash
# Embedded demo (make demo): the paper's workflow on scikit-learn's digits with tiny settings, on the CPU, no download.
# Same DAG as the full run (prepare -> pool -> coresets / distillation -> evaluation -> runs table -> report);
# config/quick.yaml only shrinks the settings and points every output at results/quick/.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
snakemake --cores all --configfile config/quick.yaml --rerun-incomplete --keep-going "$@"
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "  runs table: results/quick/all_runs.csv"
echo "  report:     results/quick/report/ (runs_summary.md: every digits result; table1/2/6.md: the paper's tables; summary.json)"
echo "  sets:       results/quick/sets/digits/ipc{1,10}/*.png (image grids)"
