r"""Semi-supervised distillation: a teacher trained on few labels teaches a
smaller student on unlabeled data.

  python -m experiments.train \
      --config=experiments/configs/distill.py:dataset=fashion_mnist,num_labels=1000,method=slam \
      --workdir=/tmp/labeljax/distill_fmnist_slam

Methods: kd, noisy_student, weighted, slam, rad, margin, random (see
labeljax/distill), and `supervised`: the student on the labels alone, same
steps. With `teacher_cache=DIR` runs that share the data set, labels, seed and
steps train the teacher (and the active methods' label-only student) once
(experiments/tables/distill.sh). The teacher is the small CNN trained on the labels; the
student a narrower CNN (an MLP on tabular data). Results report both test
accuracies (`teacher_test`, `test` = the last student).

`teacher_labels=consistent` has the teacher label every step's augmented
view, the one the student sees (the default, but for the active methods);
`teacher_labels=precomputed` has it label each clean unlabeled example once.
The active methods (rad, margin, random) need the latter, since their budget
counts teacher queries.

`init_from=WORKDIR` fine-tunes the teacher from a SimCLR encoder
(experiments/configs/simclr.py): the encoder, its first projection-head layer
and a new classifier.

`method=weighted,score=agreement` weights by the teacher's agreement with a
first student distilled without weights (the paper's signal) instead of by
the teacher's confidence; it trains that reference student first.
"""

import hashlib
import os

from experiments.configs import common
from labeljax import distill as distill_family


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="fashion_mnist", method="kd", num_labels=1000,
                          seed=0, num_steps=1000, teacher_steps=1000, budget=2000,
                          generations=1, teacher_cache="", rounds=1,
                          labeled_weight=0.5, teacher_labels=None, score="confidence",
                          init_from="")
  config = common.base_config()
  config.method = "supervised" if args.method == "supervised" else "distill"
  config.distill_method = args.method
  # α·CE(labels) + (1 − α)·L_distill: the student also learns from the labels.
  # The method's hyper-parameters at their defaults, spelled out so a flag such
  # as --config.method_kwargs.temperature=2.0 can set them.
  config.method_kwargs = {**distill_family.default_hyperparameters(args.method),
                          "labeled_weight": args.labeled_weight}
  if args.method == "weighted":
    # What the weights are a function of: the teacher's confidence, or its
    # agreement with a first, unweighted student (the paper's signal).
    config.method_kwargs["score"] = args.score
  elif args.score != "confidence":
    raise ValueError(f"score={args.score!r} is a setting of method=weighted only.")
  active = args.method in ("rad", "margin", "random")  # select teacher queries
  if active:
    config.method_kwargs["budget"] = args.budget
  # RAD's m, the teacher mistakes it hedges against among the not yet queried
  # points, defaults to (1 − teacher validation accuracy) × their number, in
  # every query round; method_kwargs.num_mistakes fixes it instead.
  config.dataset = args.dataset
  config.seed = args.seed
  config.num_labels = args.num_labels
  config.num_validation = 1000
  tabular = args.dataset in ("adult", "bank_marketing", "llp_bp_bank")
  config.teacher_model = "mlp" if tabular else "small_cnn"
  config.teacher_model_kwargs = {}
  config.model = "mlp" if tabular else "small_cnn"
  config.model_kwargs = {} if tabular else {"widths": (8, 16, 32), "embedding_dim": 64}
  config.teacher_steps = args.teacher_steps
  # A SimCLR pretraining workdir: the teacher is then fine-tuned from it.
  config.init_from = args.init_from or None
  config.teacher_dir = config.labels_only_student_dir = None
  if args.teacher_cache:  # Also shares the active methods' label-only student.
    key = f"{args.teacher_cache}/{args.dataset}_labels{args.num_labels}_seed{args.seed}"
    if args.init_from:  # one cache entry per pretrained encoder
      key += "_from_" + hashlib.sha1(os.path.abspath(args.init_from).encode()).hexdigest()[:12]
    config.teacher_dir = f"{key}_steps{args.teacher_steps}"
    config.labels_only_student_dir = f"{key}_student_steps{args.num_steps}"
  config.num_steps = args.num_steps
  config.num_generations = args.generations
  config.query_rounds = args.rounds  # active methods: query, train, re-select
  config.batch_size = 64
  config.uratio = 3
  config.noisy_student_view = args.method == "noisy_student"
  config.teacher_labels = args.teacher_labels or ("precomputed" if active else "consistent")
  config.flip = False
  config.randaugment_ops = 2
  config.tabular_mask_prob = 0.2
  config.tabular_noise_std = 0.1
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  return config
