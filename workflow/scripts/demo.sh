#!/usr/bin/env bash
# Embedded demo on scikit-learn's digits (no download): select a Random coreset, evaluate it, draw it.
set -euo pipefail
out=results/quick
mkdir -p "$out"
iid-distill data info digits
iid-distill coreset --dataset digits --method random --ipc 10 --seed 0 --out "$out/digits_random_ipc10.pt" --grid "$out/digits_random_ipc10.png"
iid-distill evaluate "$out/digits_random_ipc10.pt" --out "$out/digits_random_ipc10_eval.json" --epochs 100 --seeds 0 1
