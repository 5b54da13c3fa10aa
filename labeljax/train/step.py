"""The pure train step and the pieces algorithms build their losses from.

An algorithm supplies a `LossFn`:

    loss_fn(params, state, batch, rng) -> (loss, LossAux)

It runs the model through `apply_model` (so BatchNorm statistics update), may
read and update `state.algo_state`, and returns scalar metrics. `make_train_step`
turns it into `train_step(state, batch, rng) -> (state, metrics)`: gradients,
optimizer update, EMA, and a guard that skips non-finite updates.
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from labeljax.train.state import TrainState


class LossAux(NamedTuple):
  model_state: Any              # updated non-trainable collections
  algo_state: Any               # updated algorithm state
  metrics: dict[str, jax.Array]  # scalars, averaged over logging steps


LossFn = Callable[[Any, TrainState, dict, jax.Array], tuple[jax.Array, LossAux]]


def model_inputs(x: jax.Array) -> jax.Array:
  """uint8 images become float32 in [0, 1]; floats pass through."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def apply_model(model: nn.Module, params, model_state, inputs: jax.Array, *,
                train: bool, rng: jax.Array | None = None, method=None,
                **kwargs) -> tuple[Any, Any]:
  """Runs `model` (or its `method`); in training mode also returns the
  updated model state (BatchNorm statistics)."""
  variables = {"params": params, **model_state}
  if not train:
    return model.apply(variables, inputs, train=False, method=method, **kwargs), model_state
  out, new_state = model.apply(variables, inputs, train=True, method=method,
                               rngs={"dropout": rng}, mutable=list(model_state), **kwargs)
  return out, {**model_state, **new_state}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def supervised_loss(model: nn.Module,
                    view: Callable[[jax.Array, jax.Array], jax.Array] | None = None
                    ) -> LossFn:
  """Cross-entropy on the `labeled` stream (`view(rng, inputs)` of it, if
  given, e.g. the weak augmentation): the supervised baseline."""

  def loss_fn(params, state, batch, rng):
    labeled = batch["labeled"]
    inputs = model_inputs(labeled["inputs"])
    if view is not None:
      view_rng, rng = jax.random.split(rng)
      inputs = view(view_rng, inputs)
    out, model_state = apply_model(model, params, state.model_state, inputs,
                                   train=True, rng=rng)
    loss = cross_entropy(out.logits, labeled["labels"]).mean()
    accuracy = jnp.mean(out.logits.argmax(-1) == labeled["labels"])
    return loss, LossAux(model_state, state.algo_state, {"train_accuracy": accuracy})

  return loss_fn


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                    ema_decay: float = 0.0, line_search: bool = False):
  """Builds the pure `train_step(state, batch, rng) -> (state, metrics)`.

  `rng` is the run's base key; the step folds in `state.step`, so each step
  draws fresh randomness and a resumed run draws exactly the same.
  The EMA decay at step t is min(ema_decay, (1 + t) / (10 + t)) (the warm-up
  of TF's ExponentialMovingAverage), so short runs do not average in the
  initial weights.
  If the loss or any gradient is NaN/inf the update is skipped (the state
  only counts the step) and `metrics["nonfinite"]` is 1; the trainer stops.
  With `line_search` (L-BFGS, `optim.uses_line_search`) `tx` also gets the
  loss value and the loss as a function of the parameters (this step's batch
  and rng fixed), which its line search evaluates.
  """
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}.")

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(state.params, state, batch, rng)
    if line_search:
      objective = lambda params: loss_fn(params, state, batch, rng)[0]
      updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss,
                                     grad=grads, value_fn=objective)
    else:
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Warm-up: the average starts over the first steps instead of at the init.
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    updated = state.replace(params=params, opt_state=opt_state, ema_params=ema_params,
                            model_state=aux.model_state, algo_state=aux.algo_state)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                             updated, state).replace(step=state.step + 1)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "nonfinite": 1.0 - finite.astype(jnp.float32), **aux.metrics}
    return new_state, metrics

  return train_step
