#!/bin/bash
# Image LLP tables (issue 18): test accuracy (%), mean ± std over 3 seeds, for
# random bags of 16..1024 over MNIST and Fashion-MNIST, every method with the
# same budget (300 steps of the CPU-sized small CNN, learning rate 1e-3, no
# tuning). LLP-BP runs one round on the kNN graph of the pixels, or of the
# SimCLR encoder pretrained without labels (results/simclr_pretrain.md; its
# runs come first and are shared by every seed and bag size); the "init_from"
# baselines fine-tune that encoder instead of training from scratch, and so
# does LLP-BP's network in the llp_bp_finetuned row; the "frozen" rows train
# only a classifier on it. The "probe" rows train on the encoder's
# representation h of every image, computed once (features_from): a linear
# model fitted by full-batch L-BFGS, as DLLP and as warm-started LLP-BP
# (round 0's graph on h, BP's prior field from the DLLP probe).
# TABLES=selected (beside the default "untuned reference") writes
# results/llp_${dataset}_selected.md: DLLP and warm-started LLP-BP, each
# choosing per seed, on its validation-bag DLLP loss (never instance labels),
# between the same two uses of the encoder: fine-tuning it, or the linear probe
# on h. Warm LLP-BP's DLLP start is then that setting's DLLP network.
# Every run is cached under $RUNS, so rerunning only fills in missing cells.
# SKIP (row@column,...) leaves cells of the untuned table out, shown as "—".
#   LABELJAX_RAW_DATA_DIR=../shared/data bash experiments/tables/llp_images.sh
set -euo pipefail
RUNS=${RUNS:-/tmp/labeljax/tables}
PARALLEL=${PARALLEL:-2}
DATASETS=${DATASETS:-fashion_mnist}  # also: mnist
# The committed tables' rows; llp_bp (the pixels' graph), ot, easyllp and
# bag_fixmatch (and their *_pretrained forms) are further rows.
ROWS=${ROWS:-dllp llp_bp_pretrained dllp_pretrained dllp_frozen llp_bp_finetuned dllp_probe llp_bp_probe}
TABLES=${TABLES:-untuned reference}  # also: selected
COLUMNS=bag_size=16,bag_size=64,bag_size=256,bag_size=1024
PROBE=hidden=linear+optimizer=lbfgs+weight_decay=0.0001
python -m experiments.sweep --config=experiments/configs/simclr.py \
    --workdir="$RUNS/simclr" --parallel="$PARALLEL" --seeds=0 \
    --rows="dataset=${DATASETS// /,dataset=}" --scale=100 \
    --metric=validation.knn_accuracy,test.knn_accuracy,test.linear_accuracy
for dataset in $DATASETS; do
  encoder="$RUNS/simclr/dataset-${dataset}__seed-0"
  rows=()
  for row in $ROWS; do
    case $row in
      llp_bp) rows+=("method=llp_bp+rounds=1") ;;
      llp_bp_pretrained) rows+=("method=llp_bp+rounds=1+graph_representation=pretrained+init_from=$encoder") ;;
      # ... and its network fine-tunes the encoder, as the *_pretrained baselines.
      llp_bp_finetuned) rows+=("method=llp_bp+rounds=1+graph_representation=pretrained+finetune_encoder=True+init_from=$encoder") ;;
      llp_bp_probe) rows+=("method=llp_bp+rounds=1+warm_start=True+features_from=$encoder+$PROBE") ;;
      *_probe) rows+=("method=${row%_probe}+features_from=$encoder+$PROBE") ;;
      *_pretrained) rows+=("method=${row%_pretrained}+init_from=$encoder") ;;
      # Only a new classifier learns, on the frozen encoder (a probe).
      *_frozen) rows+=("method=${row%_frozen}+init_from=$encoder+freeze_encoder=True") ;;
      *) rows+=("method=$row") ;;
    esac
  done
  if [[ " $TABLES " == *" untuned "* ]]; then
    python -m experiments.sweep --config=experiments/configs/llp.py \
        --workdir="$RUNS/llp_$dataset" --parallel="$PARALLEL" \
        --common="dataset=$dataset,num_steps=300" \
        --rows="$(IFS=,; echo "${rows[*]}")" \
        --columns="$COLUMNS" --skip="${SKIP:-}" \
        --seeds=0,1,2 --metric=test.accuracy --scale=100 --output="results/llp_$dataset.md"
  fi
  if [[ " $TABLES " == *" reference "* ]]; then
    # The simplest reference on the same bags: linear DLLP (numpy) on the encoder.
    python -m experiments.llp_reference --dataset="$dataset" --init_from="$encoder" \
        --bag_sizes=16,64,256,1024 --seeds=0,1,2 --output="results/llp_reference_$dataset.md"
  fi
  if [[ " $TABLES " == *" selected "* ]]; then
    parts=$(mktemp -d)
    selected() {  # $1: the row, $2: its setting that fine-tunes the encoder
      python -m experiments.sweep --config=experiments/configs/llp.py \
          --workdir="$RUNS/llp_selected_$dataset" --parallel="$PARALLEL" \
          --common="dataset=$dataset,num_steps=300" --rows="$1" \
          --columns="$COLUMNS" \
          --tune="$2,features_from=$encoder+$PROBE" --select=monitor.validation_bag_loss \
          --seeds=0,1,2 --metric=test.accuracy --scale=100 --output="$parts/${1//[=+]/_}.md"
    }
    selected method=dllp "init_from=$encoder"
    selected method=llp_bp+rounds=1+warm_start=True "finetune_encoder=True+init_from=$encoder"
    {
      echo "# LLP on $dataset: test accuracy (%), each method selected on validation bags"; echo
      echo "Grid per seed: fine-tuning the SimCLR encoder, or the linear probe on its h (L-BFGS)."
      echo "All sections: \`DATASETS=$dataset TABLES=selected bash experiments/tables/llp_images.sh\`"; echo
      cat "$parts"/method_dllp.md; echo
      cat "$parts"/method_llp_bp_rounds_1_warm_start_True.md
    } > "results/llp_${dataset}_selected.md"
    rm -r "$parts"
  fi
done
