#!/bin/bash
# Tabular LLP tables (issues 3 and 16): instance-level test AUC, mean ± std over
# 3 seeds, random bags of 8..2048, into results/llp_$dataset.md, or with
# BAGGING=feature LLP-Bench feature bags (two groupings of categorical columns
# per data set) into results/llp_${dataset}_feature_bags.md. Every learning
# method gets the same tuning budget: each seed runs 5 settings and keeps the
# one with the lowest DLLP loss on its validation bags; instance labels never
# select (sweep.py --select). Every learning run starts its output bias at the
# log label prior, which the bag counts give (prior_bias=True): from a zero
# bias the first steps push every prediction down to the prior, and with few
# large bags that shared push can rank the positives last (llp_bp_bank, bags
# of 512: selected DLLP 0.589 without it, 0.740 with it). The first 3
# settings (the MLP's capacity and learning rate, AdamW on minibatches of
# bags) are shared; the last 2 are full-batch L-BFGS fits for the methods
# whose objective has a minimum to fit (DLLP and LLP-BP: $TUNE), and 2 more
# AdamW settings (lower learning rate, 10x weight decay) for EasyLLP and OT,
# whose objectives have none ($TUNE_MINIBATCH).
# Rows: DLLP, LLP-BP warm-started (round 0 on the DLLP row's network: its
# embedding and logits; that network also competes) and as in the paper
# (round 0 on the inputs' kNN graph), EasyLLP, OT pseudo-labels; then,
# untuned, the floor the bag counts alone give, the linear DLLP reference
# (numpy + L-BFGS, its L2 chosen on the same validation bags) and the
# supervised ceiling.
# SELECT_PAIRED=monitor.validation_bag_losses adds, from the same runs, the
# choice of sweep.py --select_paired: each seed's first setting (linear,
# AdamW) unless the lowest loss beats it on the same validation bags by a
# paired t-test; it needs runs that record per-bag losses (made after Dec 7).
# Every run is cached under $RUNS, so rerunning only fills in missing cells;
# SKIP (row@column,...) leaves cells out, shown as "—".
#   LABELJAX_RAW_DATA_DIR=../shared/data bash experiments/tables/llp.sh
#   BAGGING=feature DATASETS="adult bank_marketing" bash experiments/tables/llp.sh
set -euo pipefail
RUNS=${RUNS:-/tmp/labeljax/tables}
PARALLEL=${PARALLEL:-2}
SKIP=${SKIP:-}
SELECT_PAIRED=${SELECT_PAIRED:-}
BAGGING=${BAGGING:-random}
if [ "$BAGGING" = feature ]; then DATASETS=${DATASETS:-adult bank_marketing}; fi
DATASETS=${DATASETS:-adult llp_bp_bank}
ROWS=${ROWS:-method=dllp,method=llp_bp+warm_start=True,method=llp_bp}
ROWS_MINIBATCH=${ROWS_MINIBATCH:-method=easyllp,method=ot}
SHARED_TUNE=hidden=linear+learning_rate=0.01,hidden=100+learning_rate=0.003,hidden=256x256+learning_rate=0.001
TUNE=${TUNE:-$SHARED_TUNE,optimizer=lbfgs+hidden=linear+weight_decay=0.0001+num_steps=300,optimizer=lbfgs+hidden=100+weight_decay=0.001+num_steps=300}
TUNE_MINIBATCH=${TUNE_MINIBATCH:-$SHARED_TUNE,hidden=linear+learning_rate=0.003+weight_decay=0.001,hidden=100+learning_rate=0.001+weight_decay=0.001}
parts=$(mktemp -d)
for dataset in $DATASETS; do
  if [ "$BAGGING" = feature ]; then
    case $dataset in  # pairs covering most rows, and LLP-Bench-style education pairs
      adult) groupings=education.marital-status,occupation.relationship ;;
      bank_marketing) groupings=education.month,job.month ;;
      *) echo "no feature-bag groupings for $dataset" >&2; exit 1 ;;
    esac
    COLUMNS=bag_columns=${groupings//,/,bag_columns=}
    common="dataset=$dataset,bagging=feature" runs="${dataset}_feature"
    title="feature bags" output="results/llp_${dataset}_feature_bags.md"
    reference_cells="--bag_columns=$groupings"
    floor="each test row scored by the label proportions of the training bag it would join"
  else
    COLUMNS=bag_size=8,bag_size=32,bag_size=128,bag_size=512,bag_size=2048
    common="dataset=$dataset" runs=$dataset title="random bags" output="results/llp_$dataset.md"
    reference_cells="--bag_sizes=8,32,128,512,2048"
    floor="each test row scored by the label prior (what random bags' counts give)"
  fi
  for group in full_batch minibatch; do
    if [ $group = full_batch ]; then rows=$ROWS tune=$TUNE; else rows=$ROWS_MINIBATCH tune=$TUNE_MINIBATCH; fi
    skip=()  # this group's cells of SKIP (a sweep refuses rows outside its grid)
    for cell in ${SKIP//,/ }; do
      case ",$rows," in *",${cell%@*},"*) skip+=("$cell") ;; esac
    done
    tuned() {
      python -m experiments.sweep --config=experiments/configs/llp.py \
          --workdir="$RUNS/llp_tuned_prior_bias_$runs" --parallel="$PARALLEL" \
          --common="$common,num_steps=1000,prior_bias=True" --rows="$rows" --columns="$COLUMNS" \
          --tune="$tune" --select=monitor.validation_bag_loss --skip="$(IFS=,; echo "${skip[*]}")" \
          --seeds=0,1,2 --metric=test.auc "$@"
    }
    tuned --output="$parts/selected_$group.md"
    if [ -n "$SELECT_PAIRED" ]; then
      tuned --select_paired="$SELECT_PAIRED" --output="$parts/paired_$group.md"
    fi
  done
  python -m experiments.sweep --config=experiments/configs/llp.py \
      --workdir="$RUNS/llp_floor_$runs" --parallel="$PARALLEL" \
      --common="$common" --rows=method=bag_proportion --columns="$COLUMNS" \
      --seeds=0,1,2 --metric=test.auc --output="$parts/floor.md"
  python -m experiments.llp_reference --dataset="$dataset" $reference_cells \
      --seeds=0,1,2 --output="$parts/reference.md"
  python -m experiments.sweep --config=experiments/configs/supervised.py \
      --workdir="$RUNS/llp_supervised" --parallel="$PARALLEL" --rows="dataset=$dataset" \
      --common=num_steps=1000 --seeds=0,1,2 --metric=test.auc --output="$parts/ceiling.md"
  {
    echo "# LLP on $dataset: instance test AUC, $title"; echo
    echo "All sections: \`BAGGING=$BAGGING DATASETS=$dataset SKIP=${SKIP:-} SELECT_PAIRED=$SELECT_PAIRED bash experiments/tables/llp.sh\`"
    echo "(runs cached under \$RUNS; each section's own command is below it)."; echo
    echo "## ${ROWS//,/, }: selected on validation bags (grid: $TUNE)"; echo
    cat "$parts/selected_full_batch.md"; echo
    echo "## ${ROWS_MINIBATCH//,/, }: selected on validation bags (grid: $TUNE_MINIBATCH)"; echo
    cat "$parts/selected_minibatch.md"; echo
    if [ -n "$SELECT_PAIRED" ]; then
      echo "## For comparison: the same runs, each seed's first setting unless the lowest loss is lower by a paired test"; echo
      cat "$parts/paired_full_batch.md"; echo; cat "$parts/paired_minibatch.md"; echo
    fi
    echo "## Floor: $floor"; echo
    cat "$parts/floor.md"; echo
    cat "$parts/reference.md"; echo
    echo "## Ceiling: the supervised MLP on every training label"; echo
    cat "$parts/ceiling.md"
  } > "$output"
done
rm -r "$parts"
