r"""The simplest independent reference for the LLP tables: linear DLLP in numpy.

A softmax-linear model p_i = softmax(W x_i + c) fitted by L-BFGS (scipy) to
the DLLP objective with an L2 penalty,

    L(W, c) = −(1/B) Σ_b Σ_k α_{b,k} log p̄_{b,k} + (λ/2) ‖W‖²,
    p̄_b = mean_{i ∈ b} p_i,

on exactly the bags of an `experiments/configs/llp.py` run (same data, seed,
training pool and validation bags). λ is chosen per seed on the DLLP loss of
the validation bags, as `experiments/sweep.py --select` chooses for the
toolkit's methods; no instance label is read before the test score. The
features are the rows as the models see them (tabular one-hot + scaled
numeric columns; images scaled to [0, 1]), or with `--init_from` the
embedding h of a SimCLR encoder (pretrained without labels).

A toolkit method that loses to this on the same bags has a defect to fix.

  LABELJAX_RAW_DATA_DIR=../shared/data python -m experiments.llp_reference \
      --dataset=adult --bag_sizes=8,32,128,512,2048 --seeds=0,1,2 \
      --output=results/llp_reference_adult.md
"""

import sys

from absl import app
from absl import flags
import numpy as np
import scipy.optimize
import scipy.sparse

from experiments.configs import llp
from labeljax import metrics as metrics_lib
from labeljax import parallel
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.train import pretrained as pretrained_lib
from labeljax.train import trainer

_DATASET = flags.DEFINE_string("dataset", "adult", "Data set.")
_BAG_SIZES = flags.DEFINE_list("bag_sizes", ["8", "32", "128", "512", "2048"],
                               "Random bags: the bag sizes (the table's columns).")
_BAG_COLUMNS = flags.DEFINE_list("bag_columns", [],
                                 "Feature bags instead: groupings (llp.py's bag_columns, "
                                 "e.g. education.marital-status), the table's columns.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (bags and split).")
_L2 = flags.DEFINE_list("l2", ["1e-4", "1e-3", "1e-2"],
                        "λ grid, selected per seed on the validation bags.")
_INIT_FROM = flags.DEFINE_string("init_from", None,
                                 "A SimCLR pretraining workdir: fit on its embedding.")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file to write.")


def bag_means_matrix(bag_ids: np.ndarray, num_bags: int) -> scipy.sparse.csr_matrix:
  """[B, N] sparse, 1/n_b where row i is in bag b: its product with [N, C]
  predictions is the bags' mean predictions."""
  sizes = np.bincount(bag_ids, minlength=num_bags)
  return scipy.sparse.csr_matrix((1.0 / sizes[bag_ids], (bag_ids, np.arange(len(bag_ids)))),
                                 shape=(num_bags, len(bag_ids)))


def dllp_objective(params: np.ndarray, x: np.ndarray, membership: scipy.sparse.csr_matrix,
                   proportions: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
  """L(W, c) and its gradient, with params = [W (d×C); c (1×C)] flattened and
  `membership` from `bag_means_matrix`."""
  num_bags, num_classes = proportions.shape
  weights = params.reshape(x.shape[1] + 1, num_classes)
  logits = x @ weights[:-1] + weights[-1]
  logits -= logits.max(1, keepdims=True)
  probs = np.exp(logits)
  probs /= probs.sum(1, keepdims=True)
  mean = np.clip(membership @ probs, 1e-12, None)
  loss = -(proportions * np.log(mean)).sum() / num_bags
  # dL/dp_i = −α_b / (B n_b p̄_b); through the softmax: p ⊙ (g − <g, p>).
  grad_probs = membership.T @ (-proportions / (num_bags * mean))
  grad_logits = probs * (grad_probs - (grad_probs * probs).sum(1, keepdims=True))
  grad = np.concatenate([x.T @ grad_logits + l2 * weights[:-1],
                         grad_logits.sum(0, keepdims=True)])
  loss += 0.5 * l2 * (weights[:-1] ** 2).sum()
  return loss, grad.ravel()


def fit_linear_dllp(x: np.ndarray, bag_ids: np.ndarray, proportions: np.ndarray,
                    l2: float, max_iter: int = 500) -> np.ndarray:
  """[d + 1, C] weights minimising `dllp_objective` (rows outside bags ignored)."""
  bagged = bag_ids >= 0
  start = np.zeros((x.shape[1] + 1) * proportions.shape[1])
  result = scipy.optimize.minimize(dllp_objective, start, jac=True, method="L-BFGS-B",
                                   args=(x[bagged], bag_means_matrix(bag_ids[bagged],
                                                                     len(proportions)),
                                         proportions, l2),
                                   options=dict(maxiter=max_iter))
  return result.x.reshape(x.shape[1] + 1, proportions.shape[1])


_FEATURES = {}  # (dataset, init_from) -> per split: every seed shares one pass


def features(config, data, pool, init_from: str | None):
  """(pool, validation, test) features: the model inputs or the encoder's h."""
  key = (config.dataset, init_from)
  if key not in _FEATURES:
    splits = {"train": data.dataset.train, "test": data.dataset.test}
    if data.dataset.validation is not None:
      splits["validation"] = data.dataset.validation
    if init_from:
      pretrained = pretrained_lib.load(init_from, dataset=config.dataset)
      featurize = lambda examples: pretrained.embed(examples, config.eval_batch_size,
                                                    parallel.make_mesh())
    else:
      featurize = llp_bp.flat_inputs
    _FEATURES[key] = {name: featurize(examples) for name, examples in splits.items()}
  split = _FEATURES[key]
  validation = (split["validation"] if "validation" in split
                else split["train"][data.split.validation])
  return split["train"][pool], validation, split["test"]


def reference_run(bags_arg: str, seed: int, l2_grid: list[float],
                  init_from: str | None) -> dict:
  """The λ selected on validation bags and its test metrics, for one cell;
  `bags_arg` is llp.py's arguments for the data and bags, e.g.
  "dataset=adult,bag_size=512"."""
  config = llp.get_config(f"{bags_arg},seed={seed},method=dllp")
  data = trainer.load_data(config)
  pool, bags = llp_training.make_bags(config, data)
  val_bags = llp_training.validation_bags(config, data, len(pool))
  x_pool, x_val, x_test = features(config, data, pool, init_from)
  best = None
  for l2 in l2_grid:
    weights = fit_linear_dllp(x_pool, bags.bag_ids, bags.proportions, l2)
    logits = lambda x: x @ weights[:-1] + weights[-1]
    loss = llp_training.validation_bag_loss(logits(x_val), val_bags)
    if best is None or loss < best["validation_bag_loss"]:
      best = {"l2": l2, "validation_bag_loss": loss, "test_logits": logits(x_test)}
  scores, labels = best.pop("test_logits"), data.dataset.test.labels
  best["accuracy"] = metrics_lib.accuracy(scores, labels)
  if scores.shape[1] == 2:
    best["auc"] = metrics_lib.roc_auc(scores[:, 1] - scores[:, 0], labels)
  return best


def main(argv):
  del argv
  l2_grid = [float(v) for v in _L2.value]
  dataset = f"dataset={_DATASET.value}"
  if _BAG_COLUMNS.value:
    cells = {f"bag_columns={c}": f"{dataset},bagging=feature,bag_columns={c}"
             for c in _BAG_COLUMNS.value}
  else:
    cells = {f"bag {size}": f"{dataset},bag_size={size}" for size in _BAG_SIZES.value}
  header = ["method", *cells]
  means, chosen = [], []
  for column, bags_arg in cells.items():
    runs = [reference_run(bags_arg, int(seed), l2_grid, _INIT_FROM.value)
            for seed in _SEEDS.value]
    # As the tables: AUC (of 1) for binary labels, accuracy in % otherwise.
    metric, scale = ("auc", 1.0) if "auc" in runs[0] else ("accuracy", 100.0)
    values = scale * np.array([run[metric] for run in runs])
    means.append(f"{values.mean():.{1 if scale > 1 else 3}f} ± "
                 f"{values.std():.{1 if scale > 1 else 3}f}")
    chosen.append("/".join(f"{run['l2']:g}" for run in runs))
    print(f"{column}: {metric} {means[-1]} (λ per seed {chosen[-1]})", flush=True)
  features_name = f"SimCLR embedding ({_INIT_FROM.value})" if _INIT_FROM.value else "inputs"
  lines = [f"## Linear DLLP reference (numpy + L-BFGS), {_DATASET.value}: test {metric}",
           "", f"Features: {features_name}; λ from {{{', '.join(_L2.value)}}} selected per "
           "seed on validation bags.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
           "| linear DLLP | " + " | ".join(means) + " |",
           "| selected λ (per seed) | " + " | ".join(chosen) + " |", "",
           "    python -m experiments.llp_reference " + " ".join(sys.argv[1:]), ""]
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write("\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
