r"""Evaluation of a frozen embedding by its labeled neighbours or a linear model.

* `knn_predict`: weighted kNN (Wu et al., 2018): the k most cosine-similar
  labeled examples vote for their class with weight exp(s / T).
* `linear_probe`: multinomial logistic regression on standardized
  embeddings, L2 penalty λ/2·‖W‖², fitted by a fixed number of L-BFGS
  iterations (200 by default), as SimCLR's linear evaluation (there by SGD on
  the full training set).

Both see only the labeled examples they are given; the queries' labels score
the predictions and nothing else.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
  if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
    raise ValueError(f"Labels must be in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}].")


def _unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_chunk(bank, bank_labels, queries, k, num_classes, temperature):
  similarity, index = jax.lax.top_k(_unit(queries) @ bank.T, k)
  votes = jax.nn.one_hot(bank_labels[index], num_classes) * jnp.exp(
      similarity / temperature)[..., None]
  return jnp.argmax(votes.sum(1), -1)


def knn_predict(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray,
                num_classes: int, k: int = 20, temperature: float = 0.1,
                chunk: int = 512) -> np.ndarray:
  """The weighted-kNN class of each query row, [Q], from the labeled `bank`.

  Memory is O(chunk · len(bank)): queries are scored a chunk at a time.
  """
  if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1]:
    raise ValueError(f"bank and queries must be [N, D] and [Q, D], got {bank.shape} "
                     f"and {queries.shape}.")
  if len(bank_labels) != len(bank):
    raise ValueError(f"{len(bank_labels)} bank labels for {len(bank)} bank rows.")
  _check_labels(bank_labels, num_classes)
  k = min(k, len(bank))
  unit_bank = _unit(jnp.asarray(bank, jnp.float32))
  labels = jnp.asarray(bank_labels, jnp.int32)
  return np.concatenate([
      np.asarray(_knn_chunk(unit_bank, labels, jnp.asarray(queries[i:i + chunk], jnp.float32),
                            k, num_classes, temperature))
      for i in range(0, len(queries), chunk)])


@functools.partial(jax.jit, static_argnames=("num_classes", "iterations"))
def _fit_logistic(x, y, num_classes, l2, iterations):
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros(num_classes))

  def loss(p):
    w, b = p
    nll = optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y).mean()
    return nll + 0.5 * l2 * jnp.sum(w * w)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(_, carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(p, updates), state

  return jax.lax.fori_loop(0, iterations, step, (params, solver.init(params)))[0]


def linear_probe(train: np.ndarray, train_labels: np.ndarray, queries: np.ndarray,
                 num_classes: int, l2: float = 1e-3,
                 iterations: int = 200) -> np.ndarray:
  """Logits [Q, C] of a logistic regression fitted on (train, train_labels)."""
  if train.ndim != 2 or queries.ndim != 2 or train.shape[1] != queries.shape[1]:
    raise ValueError(f"train and queries must be [N, D] and [Q, D], got {train.shape} "
                     f"and {queries.shape}.")
  _check_labels(train_labels, num_classes)
  mean, std = train.mean(0), train.std(0) + 1e-6
  standardize = lambda x: jnp.asarray((x - mean) / std, jnp.float32)
  w, b = _fit_logistic(standardize(train), jnp.asarray(train_labels, jnp.int32),
                       num_classes, l2, iterations)
  return np.asarray(standardize(queries) @ w + b)
