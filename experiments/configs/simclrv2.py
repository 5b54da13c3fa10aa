r"""SimCLRv2 (Chen et al., 2020b): pretrain -> fine-tune -> distill.

  python -m experiments.train \
      --config=experiments/configs/simclrv2.py:dataset=fashion_mnist,num_labels=100,init_from=/tmp/labeljax/simclr_fashion_mnist \
      --workdir=/tmp/labeljax/simclrv2_fashion_mnist100

Stages (labeljax/selfsup/training.py), each resumable in its own directory:
1. `pretrain/`: SimCLR as experiments/configs/simclr.py (`pretrain_steps`),
   skipped with `init_from=` a finished simclr.py workdir;
2. linear and kNN probes of the frozen encoder on the labeled examples;
3. `finetune/`: the encoder and the first projection-head layer, a new linear
   classifier, on the labels (weak view: translations; Adam, cosine);
4. `self_distill/`, `distill_small/`: students of the teacher's architecture
   and a narrower one (widths 8/16/32, head 128: about 4x fewer parameters),
   from random initialisation, trained on the unlabeled pool with the
   teacher's soft labels at temperature `distill_temperature` (SimCLRv2 eq. 2; the
   teacher labels the same weak view the student sees) and, with weight
   `labeled_weight`, the labels.

`results.json`: `linear_test`, `knn_test`, `finetune_test`,
`self_distill_test`, `distill_small_test`, `test` (= self-distilled), and the
parameter counts.

Results on the 2-core CPU, 100 labels, mean of seeds 0-2 from the encoder of
experiments/tables/simclr.sh (results/simclrv2_*.md), test accuracy %:

| data set      | linear | kNN  | fine-tuned | self-distilled | narrow student |
| ------------- | ------ | ---- | ---------- | -------------- | -------------- |
| fashion_mnist | 70.1   | 64.3 | 72.1       | 72.8           | 72.3           |
| mnist         | 91.0   | 80.2 | 93.1       | 93.8           | 93.7           |

About 9 minutes a run with two runs side by side (1 minute fine-tuning, 4
minutes per student).
"""

from experiments.configs import common
from experiments.configs import simclr


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="fashion_mnist", num_labels=100, seed=0,
                          init_from="", pretrain_steps=6000, finetune_steps=500,
                          distill_steps=1500, distill_temperature=1.0,
                          labeled_weight=0.0)
  config = common.base_config()
  config.method = "simclrv2"
  config.dataset = args.dataset
  config.seed = args.seed
  config.num_labels = args.num_labels
  config.num_validation = 1000
  config.init_from = args.init_from or None
  config.pretrain = simclr.get_config(f"dataset={args.dataset},seed={args.seed},"
                                      f"num_steps={args.pretrain_steps}")
  config.knn_k = 20  # probes of the frozen encoder
  # Fine-tuning: every labeled example in each batch of 64 (fewer repeat).
  config.finetune = dict(
      num_steps=args.finetune_steps, batch_size=64, augment_labeled=True,
      optimizer=dict(name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=0),
      log_every=100, eval_every=args.finetune_steps, checkpoint_every=500)
  # Distillation: 64 labeled + 192 unlabeled images a step.
  config.distill = dict(
      num_steps=args.distill_steps, batch_size=64, uratio=3,
      optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=1e-4,
                     schedule="cosine", warmup_steps=0),
      log_every=100, eval_every=500, checkpoint_every=500)
  config.distill_temperature = args.distill_temperature
  config.distill_labeled_weight = args.labeled_weight
  config.student_model_kwargs = dict(widths=(8, 16, 32), embedding_dim=64)
  config.student_head_width = 128
  # Views (labeljax.augment.make_views): translations, no flips for digits
  # and clothing; the distill students see the weak view, the teacher labels it.
  config.flip = False
  config.randaugment_ops = 2
  config.noisy_student_view = False
  config.tabular_mask_prob = 0.2
  config.tabular_noise_std = 0.1
  return config
