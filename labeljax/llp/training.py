"""LLP methods as trainer setups: bags over the training pool, a bag-level loss.

Only bag label counts reach the loss; instance labels ride along in batches
for monitoring and are never read by a loss.
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import models
from labeljax.data import bags as bags_lib
from labeljax.data import datasets
from labeljax.data.bag_pipeline import BagLoader
from labeljax.llp import losses
from labeljax.train.step import LossAux, apply_model, model_inputs
from labeljax.train.trainer import Data, Setup


def make_bags(config: ml_collections.ConfigDict, data: Data) -> tuple[np.ndarray, bags_lib.Bags]:
  """Bags over the training pool (train minus validation): its indices and bags."""
  pool = np.sort(np.concatenate([data.split.labeled, data.split.unlabeled]))
  train = data.dataset.train
  labels, num_classes = train.labels[pool], data.dataset.info.num_classes
  if config.bagging == "random":
    bags = bags_lib.random_bags(labels, num_classes, config.bag_size, seed=config.seed)
  elif config.bagging == "feature":
    schema = data.dataset.info.schema
    if schema is None or not schema.categorical:
      raise ValueError(f"Feature bags need categorical columns; {config.dataset} has none.")
    names = list(schema.categorical)
    unknown = [c for c in config.bag_columns if c not in names]
    if unknown:
      raise ValueError(f"Unknown bag columns {unknown}; choose from {names}.")
    bags = bags_lib.feature_bags(labels, num_classes, train.categorical[pool],
                                 tuple(names.index(c) for c in config.bag_columns),
                                 config.bag_min_size, config.bag_max_size)
  else:
    raise ValueError(f"Unknown bagging {config.bagging!r}; choose 'random' or 'feature'.")
  return pool, bags


def bag_loader(config, data: Data, mesh) -> tuple[BagLoader, bags_lib.Bags]:
  pool, bags = make_bags(config, data)
  slots = max(config.batch_size, int(bags.sizes.max()))
  slots = -(-slots // mesh.size) * mesh.size
  loader = BagLoader(data.dataset.train.take(pool), bags, mesh, batch_size=slots,
                     seed=config.seed)
  return loader, bags


def label_prior(bags: bags_lib.Bags) -> np.ndarray:
  """The overall label proportions, known in LLP from the bag counts."""
  return bags.label_counts.sum(0) / bags.sizes.sum()


def prior_output_bias(config, prior: np.ndarray) -> tuple[float, ...] | None:
  """log `prior` when `config.prior_output_bias`, else None (a zero bias).

  A network that starts at uniform predictions first pushes every prediction
  towards the prior; with few, large bags that shared push is most of the
  signal, and it moves the instances with the largest gradients (large
  feature norms) most, which can rank them last. Starting at the prior skips
  that phase.
  """
  if not config.get("prior_output_bias", False):
    return None
  # A tuple: Flax modules are hashed, so their fields must be hashable.
  return tuple(float(b) for b in np.log(np.clip(prior, 1e-6, 1.0)))


def build_model(config, info: datasets.DataInfo, prior: np.ndarray) -> nn.Module:
  """`config.model` (with `model_kwargs`) for `info`'s classes, its output bias
  at log `prior` when `config.prior_output_bias`."""
  if info.kind != "image" and config.model in models.IMAGE_MODELS:
    raise ValueError(f"{config.model} takes images; {info.name} is {info.kind} data "
                     "(use model=mlp).")
  return models.get_model(config.model, info.num_classes,
                          output_bias=prior_output_bias(config, prior),
                          **config.get("model_kwargs", {}))


def _bag_loss_setup(config, data: Data, mesh, bag_loss) -> Setup:
  loader, bags = bag_loader(config, data, mesh)
  prior = label_prior(bags)
  model = build_model(config, data.dataset.info, prior)
  prior = jnp.asarray(prior, jnp.float32)

  def loss_fn(model):
    def fn(params, state, batch, rng):
      out, model_state = apply_model(model, params, state.model_state,
                                     model_inputs(batch["inputs"]), train=True, rng=rng)
      loss = bag_loss(out.logits, batch, prior)
      return loss, LossAux(model_state, state.algo_state, {})
    return fn

  return Setup(loader, loss_fn, model=model)


def dllp(config, data: Data, mesh) -> Setup:
  """DLLP: match each bag's mean predicted distribution to its proportions."""
  return _bag_loss_setup(config, data, mesh,
                         lambda logits, batch, prior: losses.dllp_loss(logits, batch))


def easyllp(config, data: Data, mesh) -> Setup:
  """EasyLLP: instance cross-entropy with debiased soft labels k(α − p) + p."""
  return _bag_loss_setup(config, data, mesh, losses.easyllp_loss)


def ot(config, data: Data, mesh) -> Setup:
  """Optimal-transport pseudo-labels: cross-entropy with Sinkhorn labels per bag."""
  epsilon, num_iters = config.ot_epsilon, config.ot_iters
  if not epsilon > 0:
    raise ValueError(f"ot_epsilon must be > 0, got {epsilon}.")
  if num_iters < 1:
    raise ValueError(f"ot_iters must be >= 1, got {num_iters}.")

  def bag_loss(logits, batch, prior):
    del prior  # The labels come from the predictions and the bag counts alone.
    return losses.ot_loss(logits, batch, epsilon, num_iters)

  return _bag_loss_setup(config, data, mesh, bag_loss)
