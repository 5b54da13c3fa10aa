#!/bin/bash
# SimCLR / SimCLRv2 tables (issue 17): test accuracy (%), mean ± std over
# $SEEDS. Pretraining runs once per data set (seed 0); every seed of the
# downstream runs starts from that encoder and draws its own labels. Every run
# is cached under $RUNS, so rerunning fills in missing cells only.
#   LABELJAX_RAW_DATA_DIR=../shared/data bash experiments/tables/simclr.sh
set -euo pipefail
RUNS=${RUNS:-/tmp/labeljax/tables}
PARALLEL=${PARALLEL:-2}
SEEDS=${SEEDS:-0,1,2}
DATASETS=${DATASETS:-mnist fashion_mnist}
LABELS=${LABELS:-40 100 250}
rows=$(printf "dataset=%s," $DATASETS)
PRETRAIN=(--config=experiments/configs/simclr.py --workdir="$RUNS/simclr"
    --parallel="$PARALLEL" --seeds=0 --rows="${rows%,}")
python -m experiments.sweep "${PRETRAIN[@]}" --scale=100 \
    --metric=validation.knn_accuracy,test.knn_accuracy,test.linear_accuracy \
    --output=results/simclr_pretrain.md
python -m experiments.sweep "${PRETRAIN[@]}" --metric=sweep.wall_minutes,images_per_second \
    --output=results/simclr_pretrain_speed.md
columns=$(printf "num_labels=%s," $LABELS)
for dataset in $DATASETS; do
  init="$RUNS/simclr/dataset-${dataset}__seed-0"
  # Probes, fine-tuning and distillation: one pipeline run per cell.
  python -m experiments.sweep --config=experiments/configs/simclrv2.py \
      --workdir="$RUNS/simclrv2_$dataset" --parallel="$PARALLEL" --seeds="$SEEDS" \
      --common="dataset=$dataset,init_from=$init" --columns="${columns%,}" \
      --metric=linear_test.accuracy,knn_test.accuracy,finetune_test.accuracy,self_distill_test.accuracy,distill_small_test.accuracy \
      --scale=100 --output="results/simclrv2_$dataset.md"
  # FixMatch from the SimCLR initialisation, with ssl.sh's settings (its
  # from-scratch rows are results/ssl_$dataset.md).
  python -m experiments.sweep --config=experiments/configs/ssl.py \
      --workdir="$RUNS/ssl_simclr_$dataset" --parallel="$PARALLEL" --seeds="$SEEDS" \
      --common="dataset=$dataset,num_steps=1000,batch_size=32,init_from=$init" \
      --rows=algorithm=fixmatch --columns="${columns%,}" \
      --metric=test.accuracy --scale=100 --output="results/simclr_fixmatch_$dataset.md"
done
# The simplest reference: the same probes on raw pixels, same labeled draws.
python -m experiments.pixel_probes --datasets="${DATASETS// /,}" --seeds="$SEEDS" \
    --labels="$(printf "%s," $LABELS)-1" --output=results/simclr_pixel_reference.md
