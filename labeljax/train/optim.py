"""Optimizers and learning-rate schedules from a config."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "lars", "lbfgs")
SCHEDULES = ("constant", "cosine", "fixmatch_cosine")


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           num_steps: int) -> optax.Schedule:
  """Linear warm-up then the named decay.

  `fixmatch_cosine` is FixMatch's lr·cos(7πk / 16K), which ends at 0.2·lr.
  """
  base, warmup = config.learning_rate, config.get("warmup_steps", 0)
  name = config.get("schedule", "constant")
  decay_steps = max(num_steps - warmup, 1)
  if name == "constant":
    decay = optax.constant_schedule(base)
  elif name == "cosine":
    decay = optax.cosine_decay_schedule(base, decay_steps)
  elif name == "fixmatch_cosine":
    decay = lambda k: base * jnp.cos(7 * jnp.pi * k / (16 * decay_steps))
  else:
    raise ValueError(f"Unknown schedule {name!r}; choose one of {SCHEDULES}.")
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, base, warmup), decay], [warmup])
  return decay


def make_optimizer(config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """SGD with Nesterov momentum and L2 weight decay on kernels, Adam (no weight
  decay), AdamW (decoupled weight decay on kernels), or LARS (You et al.,
  2017), SimCLR's optimizer: momentum SGD whose update of each kernel is scaled
  by the trust ratio η‖w‖ / ‖g + λw‖ (η = `trust_coefficient`, default
  0.001). As in SimCLR, biases and normalisation parameters get neither
  weight decay nor the trust ratio.

  Or L-BFGS (`lbfgs`: `memory_size` curvature pairs, a zoom line search of at
  most `max_linesearch_steps` evaluations instead of a learning rate), for
  full-batch fits of small models, where the optimiser's path decides what a
  flat objective returns (benchmarks/llp_linear_fit.py: linear DLLP on Adult
  bags of 512, test AUC 0.88 from L-BFGS, 0.84 from Adam at the same loss).
  Its line search needs the objective itself, so its weight decay is an L2
  term of the loss that the caller adds (`with_l2_penalty`, as `trainer.fit`
  does; the transformation itself ignores `weight_decay`), and
  `make_train_step` must be built
  with `line_search=True` (see `uses_line_search`)."""
  lr = learning_rate_schedule(config, num_steps)
  name = config.name
  if name == "sgd":
    # Weight decay as an L2 gradient term on kernels only, as FixMatch does.
    return optax.chain(
        optax.add_decayed_weights(config.get("weight_decay", 0.0),
                                  mask=_kernels_only),
        optax.sgd(lr, momentum=config.get("momentum", 0.9),
                  nesterov=config.get("nesterov", True)))
  if name == "adam":
    return optax.adam(lr)
  if name == "adamw":
    return optax.adamw(lr, weight_decay=config.get("weight_decay", 1e-4),
                       mask=_kernels_only)
  if name == "lars":
    return optax.lars(lr, weight_decay=config.get("weight_decay", 0.0),
                      weight_decay_mask=_kernels_only, trust_ratio_mask=_kernels_only,
                      trust_coefficient=config.get("trust_coefficient", 0.001),
                      momentum=config.get("momentum", 0.9))
  if name == "lbfgs":
    linesearch = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=config.get("max_linesearch_steps", 20))
    return optax.lbfgs(memory_size=config.get("memory_size", 10), linesearch=linesearch)
  raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def uses_line_search(config: ml_collections.ConfigDict) -> bool:
  """Whether `config`'s optimizer evaluates the loss itself (L-BFGS): its
  train step passes the loss function, and the loss must be deterministic
  given (params, batch, rng) and the same at every step (one full batch)."""
  return config.name == "lbfgs"


def with_l2_penalty(loss_fn, weight_decay: float):
  """`loss_fn` plus (`weight_decay` / 2)·Σ‖W‖² over kernels: weight decay as a
  term of the objective, which a line search sees (decay applied to the
  update instead would make the search minimise another function). The
  penalty is also reported as metric `l2_penalty`."""
  if not weight_decay:
    return loss_fn

  def penalized(params, state, batch, rng):
    loss, aux = loss_fn(params, state, batch, rng)
    kernels = [p for p, kernel in zip(jax.tree.leaves(params),
                                      jax.tree.leaves(_kernels_only(params))) if kernel]
    penalty = 0.5 * weight_decay * sum(jnp.sum(jnp.square(k)) for k in kernels)
    return loss + penalty, aux._replace(metrics={**aux.metrics, "l2_penalty": penalty})

  return penalized


def freeze(tx: optax.GradientTransformation, labels) -> optax.GradientTransformation:
  """`tx` on the parameters labelled "train", no update at all (weight decay
  included) on those labelled "frozen"; `labels` a pytree or function of params."""
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _kernels_only(params):
  """True for weight matrices/kernels, False for biases and norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)
