#!/usr/bin/env bash
# Runs once in the new conda environment, from the repository root (Snakemake's working directory).
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
