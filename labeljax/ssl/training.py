"""Semi-supervised pseudo-labeling as a trainer setup.

One loss for every algorithm (see `common` for the algorithm interface):

    L = (1/B_l) Σ H(y, f(weak(x_l)))  +  λ_u(t)·L_u(f(student view of u), targets(weak(u)))  [+ regularizer]

The labeled batch, the weak view and the student's view of the unlabeled batch
go through the model in one forward pass, so BatchNorm sees all of them, as in
FixMatch. Algorithms whose targets come from the teacher (Mean Teacher) take
them from the EMA parameters in inference mode instead.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import augment
from labeljax.data.pipeline import Stream, TrainLoader
from labeljax.ssl import common
from labeljax.ssl import get_algorithm
from labeljax.train.step import LossAux, apply_model, cross_entropy, model_inputs
from labeljax.train.trainer import Data, Setup


def pseudo_labeling(config: ml_collections.ConfigDict, data: Data, mesh) -> Setup:
  """Labeled cross-entropy plus the unlabeled term of `config.algorithm`."""
  algorithm = get_algorithm(config.algorithm, **config.get("algorithm_kwargs", {}))
  info = data.dataset.info
  if config.uratio < 1:
    raise ValueError(f"uratio (μ, unlabeled per labeled example) must be >= 1, "
                     f"got {config.uratio}.")
  train = data.dataset.train
  missing = sorted(set(range(info.num_classes))
                   - set(np.unique(train.labels[data.split.labeled]).tolist()))
  if missing:
    raise ValueError(f"The labeled set has no example of classes {missing}; "
                     "every class needs at least one label.")
  if algorithm.targets_from == "teacher" and config.ema_decay <= 0:
    raise ValueError(f"{algorithm.name} takes targets from the EMA teacher; "
                     "set ema_decay > 0.")
  unlabeled = train.take(data.split.unlabeled)
  loader = TrainLoader(
      {"labeled": Stream(train.take(data.split.labeled), config.batch_size),
       "unlabeled": Stream(unlabeled, config.batch_size * config.uratio)},
      mesh, seed=config.seed, num_shards=config.get("num_data_shards"))
  weak, strong = augment.make_views(info.kind, config)
  algo_state = algorithm.init(info.num_classes, len(unlabeled))

  def loss_fn(model):
    def fn(params, state, batch, rng):
      aug_l, aug_w, aug_s, dropout = jax.random.split(rng, 4)
      labeled, unlabeled_batch = batch["labeled"], batch["unlabeled"]
      x_l = weak(aug_l, model_inputs(labeled["inputs"]))
      x_u = model_inputs(unlabeled_batch["inputs"])
      x_w = weak(aug_w, x_u)
      views = [x_l, x_w] if algorithm.targets_from == "student" else [x_l]
      if algorithm.student_view == "strong":
        views.append(strong(aug_s, x_u))
      elif algorithm.student_view == "weak":
        views.append(weak(aug_s, x_u))
      out, model_state = apply_model(model, params, state.model_state,
                                     jnp.concatenate(views), train=True, rng=dropout)
      n_l, n_u = x_l.shape[0], x_u.shape[0]
      logits_l = out.logits[:n_l]
      if algorithm.targets_from == "student":
        weak_logits = out.logits[n_l:n_l + n_u]
      else:
        weak_logits = apply_model(model, state.ema_params, state.model_state, x_w,
                                  train=False)[0].logits
      # "same": the loss is on the very logits the targets came from.
      student_logits = weak_logits if algorithm.student_view == "same" else out.logits[-n_u:]
      labels, algo_state, algo_metrics = algorithm.pseudo_label(
          state.algo_state, jax.lax.stop_gradient(weak_logits), unlabeled_batch["index"])
      loss_l = cross_entropy(logits_l, labeled["labels"]).mean()
      loss_u, u_metrics = common.unlabeled_objective(
          algorithm, student_logits, labels, algo_state, state.step, config.num_steps)
      # Monitoring only: how often kept pseudo-labels are right (labels hidden from the loss).
      right = jnp.argmax(labels.targets, -1) == unlabeled_batch["labels"]
      kept = labels.weights > 0
      metrics = {"labeled_loss": loss_l, **u_metrics, **algo_metrics,
                 "pseudo_label_accuracy": jnp.sum(right * kept) / jnp.maximum(kept.sum(), 1)}
      return loss_l + loss_u, LossAux(model_state, algo_state, metrics)
    return fn

  return Setup(loader, loss_fn, algo_state)
