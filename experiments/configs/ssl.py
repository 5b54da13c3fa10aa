r"""Semi-supervised pseudo-labeling on a label budget.

  python -m experiments.train \
      --config=experiments/configs/ssl.py:dataset=mnist,num_labels=100,algorithm=fixmatch \
      --workdir=/tmp/labeljax/fixmatch_mnist100

Algorithms: pseudo_label, fixmatch, flexmatch, freematch, softmatch,
mean_teacher, shrinkmatch (see labeljax/ssl); `supervised` trains on the
labels alone with the same model, optimizer, EMA and steps. Images use the small CNN,
weak = translate (no flips for digits), strong = RandAugment + Cutout; tabular
data sets use the MLP and feature masking + noise as the strong view.
Evaluation uses the EMA parameters (decay 0.999), at the last step.
`init_from=WORKDIR` starts from a SimCLR encoder (experiments/configs/simclr.py)
instead of a random initialisation. `lambda_u=` overrides the algorithm's unlabeled weight (Mean Teacher's λ_u
probe: results/ssl_mean_teacher_lambda_probe.md).

Expected on the 2-core CPU, seed 0 (results/ssl_mnist_target.md): with
`dataset=mnist,num_labels=100,num_steps=5000,batch_size=32`, FixMatch 98.3% and
FreeMatch 98.0% test accuracy, 15.8 and 16.6 minutes.
"""

from experiments.configs import common
from labeljax import ssl as ssl_family


def get_config(arg=None):
  args = common.parse_arg(arg, dataset="mnist", algorithm="fixmatch", num_labels=100,
                          num_labels_per_class=None, num_validation=1000, seed=0,
                          num_steps=3000, batch_size=64, uratio=7, model="",
                          lambda_u=None, init_from="")
  config = common.base_config()
  config.method = "supervised" if args.algorithm == "supervised" else "pseudo_labeling"
  config.algorithm = args.algorithm
  # The algorithm's hyper-parameters at their defaults, spelled out so a flag
  # such as --config.algorithm_kwargs.threshold=0.9 can set them; lambda_u=
  # None keeps each algorithm's own unlabeled weight (e.g. Mean Teacher's 50).
  config.algorithm_kwargs = ssl_family.default_hyperparameters(args.algorithm)
  if args.lambda_u is not None:
    config.algorithm_kwargs["lambda_u"] = args.lambda_u
  config.dataset = args.dataset
  config.seed = args.seed
  config.num_labels = args.num_labels
  config.num_labels_per_class = args.num_labels_per_class  # overrides num_labels
  config.num_validation = args.num_validation
  tabular = args.dataset in ("adult", "bank_marketing", "llp_bp_bank")
  # A SimCLR pretraining workdir (simclr.py): the model is then its encoder,
  # its first projection-head layer and a new classifier.
  config.init_from = args.init_from or None
  config.model = args.model or ("mlp" if tabular else "small_cnn")
  if config.model == "small_cnn":
    config.model_kwargs = dict(widths=(16, 32, 64), embedding_dim=128)  # CPU-sized
  config.batch_size = args.batch_size
  config.uratio = args.uratio
  config.num_steps = args.num_steps
  config.optimizer = dict(name="sgd", learning_rate=0.03, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, schedule="fixmatch_cosine", warmup_steps=0)
  config.ema_decay = 0.999
  config.eval_with_ema = True
  config.flip = False          # digits and clothing are not mirror-symmetric classes
  config.randaugment_ops = 2
  config.tabular_mask_prob = 0.2
  config.tabular_noise_std = 0.1
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  return config
