#!/bin/bash
# Distillation results tables (issue 5): student test accuracy (%), mean ± std
# over $SEEDS, a small-CNN teacher trained on 1000 labels and a weaker one on
# 250, a narrower CNN student (2000 steps); then student accuracy against the
# number of teacher queries for RAD, margin and random selection (1000 steps;
# the teacher labels each selected point once); and weighted distillation with
# its paper's agreement score (a first, unweighted student). Teachers are trained
# once per (data set, labels, seed) and shared; every run is cached under $RUNS.
#   LABELJAX_RAW_DATA_DIR=../shared/data bash experiments/tables/distill.sh
set -euo pipefail
RUNS=${RUNS:-/tmp/labeljax/tables}
PARALLEL=${PARALLEL:-2}
SEEDS=${SEEDS:-0,1,2}
DATASETS=${DATASETS:-fashion_mnist mnist}
# The teacher labels each unlabeled example once, on the clean image
# (teacher_labels=precomputed), as in the weighted-distillation and SLaM papers:
# their estimates, fitted on the teacher's clean validation logits, then apply
# to the same kind of logits.
STEPS="num_steps=2000,teacher_steps=1000,teacher_cache=$RUNS/distill_teachers"
STEPS="$STEPS,teacher_labels=precomputed"
for dataset in $DATASETS; do
  for metric in teacher_test.accuracy test.accuracy; do
    rows=method=supervised,method=kd,method=noisy_student,method=weighted,method=slam
    [ "$metric" = teacher_test.accuracy ] && rows=method=kd
    python -m experiments.sweep --config=experiments/configs/distill.py \
        --workdir="$RUNS/distill_$dataset" --parallel="$PARALLEL" --seeds="$SEEDS" \
        --common="dataset=$dataset,$STEPS" --rows="$rows" \
        --columns=num_labels=1000,num_labels=250 \
        --metric="$metric" --scale=100 --output="results/distill_${dataset}_${metric%%.*}.md"
  done
  # Weighted distillation with the paper's signal, the teacher's agreement with
  # a first, unweighted student, instead of the teacher's confidence.
  python -m experiments.sweep --config=experiments/configs/distill.py \
      --workdir="$RUNS/distill_${dataset}_agreement" --parallel="$PARALLEL" \
      --seeds="$SEEDS" --common="dataset=$dataset,$STEPS,score=agreement" \
      --rows=method=weighted --columns=num_labels=1000,num_labels=250 \
      --metric=test.accuracy --scale=100 \
      --output="results/distill_${dataset}_weighted_agreement.md"
  python -m experiments.sweep --config=experiments/configs/distill.py \
      --workdir="$RUNS/distill_$dataset" --parallel="$PARALLEL" --seeds="$SEEDS" \
      --common="dataset=$dataset,num_labels=250,${STEPS/num_steps=2000/num_steps=1000}" \
      --rows=method=rad,method=margin,method=random \
      --columns=budget=100,budget=250,budget=500,budget=1000,budget=2000,budget=5000 \
      --metric=test.accuracy --scale=100 --output="results/distill_${dataset}_active.md"
done
