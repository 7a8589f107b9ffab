#!/usr/bin/env bash
# Does the fast mode change accuracy? DM+IID on CIFAR-10 (JPEG copy), IPC 10, distilled twice with the same seed and
# iterations, in fp32 and in bf16 autocast, each set evaluated by the same fp32 protocol with the same seeds.
#   bash benchmarks/fast_mode_accuracy.sh [ITERATIONS] [EPOCHS] [OUT]     (defaults: 500, 300, results/fast_mode)
# Settings: the published code's DM+IID objective (--settings code), batch_real 256, distillation seed 0; the CC pool is
# one ResNet18 trained 2 epochs on 500 images per class (a stand-in: the comparison needs the same pool on both sides,
# not a good one). Evaluation: ConvNet, DSA, EPOCHS epochs (protocol: 1000), seeds 0 1 2, final-epoch test accuracy.
# Every step resumes or keeps what a previous call finished.
set -euo pipefail
ITERATIONS=${1:-500}
EPOCHS=${2:-300}
OUT=${3:-results/fast_mode}
SOURCE=${SOURCE:-../shared/data/cifar10-jpeg.tar.gz}
POOL=${POOL:-$OUT/pool-cifar10}
common=(--source "$SOURCE" --device cpu)
mkdir -p "$OUT"
[ -f "$POOL/pool.json" ] || iid-distill pretrain --dataset cifar10 "${common[@]}" --out "$POOL" --num-models 1 --epochs 2 --set subset_per_class=500
for precision in fp32 bf16; do
  set_file="$OUT/dm_iid_ipc10_${precision}.pt"
  [ -f "$set_file" ] || iid-distill distill --dataset cifar10 --ipc 10 --method-id dm_iid --settings code --iterations "$ITERATIONS" \
      --seed 0 --precision "$precision" --set batch_real=256 --set checkpoint_every=50 --pool "$POOL" "${common[@]}" --out "$set_file"
done
for precision in fp32 bf16; do
  record="$OUT/dm_iid_ipc10_${precision}_eval${EPOCHS}.json"
  [ -f "$record" ] || iid-distill evaluate "$OUT/dm_iid_ipc10_${precision}.pt" --epochs "$EPOCHS" --seeds 0 1 2 "${common[@]}" --out "$record"
done
