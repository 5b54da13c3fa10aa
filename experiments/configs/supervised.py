r"""Supervised baseline on a label budget: the labeled examples only.

Main job on a fresh machine (Adult ships inside the package):

  python -m experiments.train --config=experiments/configs/supervised.py \
      --workdir=/tmp/labeljax/supervised_adult

MNIST with 100 labels (10 per class; needs the MNIST files, e.g.
LABELJAX_RAW_DATA_DIR=../shared/data):

  python -m experiments.train \
      --config=experiments/configs/supervised.py:dataset=mnist,num_labels=100 \
      --workdir=/tmp/labeljax/supervised_mnist100

Results on the 2-core CPU machine (seed 0, from `results.json`):

| command suffix                  | steps | test                         | wall   |
| ------------------------------- | ----- | ---------------------------- | ------ |
| (none: adult, all labels)       | 2000  | AUC 0.907, accuracy 0.854    | ~10 s  |
| :dataset=mnist,num_labels=100   | 1000  | accuracy 0.761               | ~70 s  |

Wall times include the one-time preparation of the array_record files
(about 15 s for MNIST).
"""

from experiments.configs import common

DATASET_DEFAULTS = {
    # Tabular: an MLP; every label unless a budget is given.
    "adult": dict(model="mlp", num_steps=2000, batch_size=256),
    "bank_marketing": dict(model="mlp", num_steps=2000, batch_size=256),
    "llp_bp_bank": dict(model="mlp", num_steps=2000, batch_size=256),
    # Images: the small CNN.
    "mnist": dict(model="small_cnn", num_steps=1000, batch_size=64),
    "fashion_mnist": dict(model="small_cnn", num_steps=1000, batch_size=64),
}


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="adult", num_labels=-1, seed=0,
                          num_steps=None, batch_size=None, model="")
  config = common.base_config()
  config.method = "supervised"
  config.dataset = args.dataset
  config.seed = args.seed
  config.num_labels = args.num_labels
  defaults = DATASET_DEFAULTS.get(args.dataset, dict(model="small_cnn",
                                                     num_steps=1000, batch_size=64))
  config.model = args.model or defaults["model"]
  # None: the data set's default. An explicit value, even 0, is kept (and
  # rejected by the config check).
  config.num_steps = defaults["num_steps"] if args.num_steps is None else args.num_steps
  config.batch_size = defaults["batch_size"] if args.batch_size is None else args.batch_size
  # Validation carved from train, for monitoring only.
  config.num_validation = 1000 if args.dataset != "llp_bp_bank" else 0
  config.eval_every = max(1, config.num_steps // 4)
  config.checkpoint_every = max(1, config.num_steps // 4)
  return config
