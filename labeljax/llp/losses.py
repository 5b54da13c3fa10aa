"""Bag-level losses for learning from label proportions, as pure functions.

Batches hold whole bags (see `labeljax.data.bag_pipeline`): per instance its
bag slot `bag` in [0, K) and a padding `mask`; per bag slot the label counts
`bag_counts` [K, C], `bag_sizes` [K] and `bag_mask` [K]. Bag sums are segment
sums over `bag`, so bags of any size mix in one batch without padding math.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def bag_means(values: jax.Array, bag: jax.Array, mask: jax.Array,
              num_bags: int) -> jax.Array:
  """Mean of `values` [B, ...] over each bag's real instances -> [K, ...]."""
  weights = mask.reshape(mask.shape + (1,) * (values.ndim - 1))
  sums = jax.ops.segment_sum(values * weights, bag, num_segments=num_bags)
  counts = jax.ops.segment_sum(mask, bag, num_segments=num_bags)
  return sums / jnp.maximum(counts, 1.0).reshape((-1,) + (1,) * (values.ndim - 1))


def check_bag_batch(logits: jax.Array, batch: dict) -> None:
  """Raises ValueError on a bag batch that would give a silently wrong loss:
  an instance in no bag slot, counts < 0 or above the bag size, or a count
  row that does not sum to its size. Checks concrete arrays only (a direct
  call); inside `jit` the loader's bags are already checked (`make_bags`)."""
  arrays = (logits, batch["bag"], batch["mask"], batch["bag_counts"],
            batch.get("bag_sizes"))
  if any(isinstance(a, jax.core.Tracer) for a in arrays):
    return
  num_bags = batch["bag_counts"].shape[0]
  real = np.asarray(batch["mask"]) > 0
  bag = np.asarray(batch["bag"])[real]
  if ((bag < 0) | (bag >= num_bags)).any():
    raise ValueError(f"batch['bag'] must index the {num_bags} bag slots, got values "
                     f"in [{bag.min()}, {bag.max()}].")
  counts = np.asarray(batch["bag_counts"])
  # Without sizes (OT needs none), a bag's size is its count total.
  sizes = np.asarray(batch.get("bag_sizes", counts.sum(1)))
  if (counts < 0).any() or (counts > sizes[:, None]).any():
    raise ValueError("batch['bag_counts'] must lie in [0, bag size]; got counts in "
                     f"[{counts.min()}, {counts.max()}] for bag sizes up to {sizes.max()}.")
  used = np.asarray(batch.get("bag_mask", np.ones(num_bags))) > 0
  if not np.allclose(counts.sum(1)[used], sizes[used]):
    raise ValueError("batch['bag_counts'] rows must sum to batch['bag_sizes'].")
  if logits.shape[0] != batch["bag"].shape[0]:
    raise ValueError(f"logits have {logits.shape[0]} rows, batch['bag'] "
                     f"{batch['bag'].shape[0]}.")


def bag_proportions(batch: dict) -> jax.Array:
  """Label proportions [K, C] of the bags in a batch."""
  return batch["bag_counts"] / batch["bag_sizes"][:, None]


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def proportion_cross_entropy(proportions: jax.Array,
                             predicted: jax.Array) -> jax.Array:
  """−Σ_c α_c log ᾱ_c per bag, with predicted proportions ᾱ clipped away from 0."""
  return -jnp.sum(proportions * jnp.log(jnp.clip(predicted, 1e-7, 1.0)), axis=-1)


def dllp_loss(logits: jax.Array, batch: dict) -> jax.Array:
  """DLLP (Ardehaly & Culotta 2017): cross-entropy between each bag's label
  proportion α_b and its mean predicted distribution ᾱ_b = mean_{i∈b} softmax(f(x_i)),
  averaged over the bags of the batch. For two classes it is the BCE of the
  positive proportion."""
  check_bag_batch(logits, batch)
  num_bags = batch["bag_counts"].shape[0]
  mean_probs = bag_means(jax.nn.softmax(logits), batch["bag"], batch["mask"], num_bags)
  per_bag = proportion_cross_entropy(bag_proportions(batch), mean_probs)
  return _masked_mean(per_bag, batch["bag_mask"])


def easyllp_soft_labels(batch: dict, prior: jax.Array) -> jax.Array:
  """EasyLLP's debiased instance targets ỹ_i = k_b(α_b − p) + p  -> [B, C].

  k_b is the bag size, α_b the bag's label proportions and p the label prior
  (overall proportions, known in LLP from all bag counts). E[ỹ_i | x_i] equals
  the instance's label distribution for bags drawn i.i.d., so the loss below is
  an unbiased estimate of the instance-level loss (Busa-Fekete et al., "Easy
  Learning from Label Proportions", NeurIPS 2023). ỹ may leave [0, 1]; that is
  what makes it unbiased.
  """
  proportions = bag_proportions(batch)[batch["bag"]]
  sizes = batch["bag_sizes"][batch["bag"]][:, None]
  return sizes * (proportions - prior) + prior


def easyllp_loss(logits: jax.Array, batch: dict, prior: jax.Array) -> jax.Array:
  """EasyLLP: Σ_c ỹ_c · ℓ(f(x), c) with ℓ the cross-entropy, mean over instances."""
  check_bag_batch(logits, batch)
  targets = easyllp_soft_labels(batch, prior)
  per_instance = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  return _masked_mean(per_instance, batch["mask"])


def _segment_logsumexp(values: jax.Array, segments: jax.Array,
                       num_segments: int) -> jax.Array:
  """log Σ_{i in segment} exp(values_i) -> [K, ...]; −inf for empty segments."""
  peak = jax.ops.segment_max(values, segments, num_segments=num_segments)
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  total = jax.ops.segment_sum(jnp.exp(values - peak[segments]), segments,
                              num_segments=num_segments)
  return jnp.log(total) + peak


def sinkhorn_bag_labels(logits: jax.Array, batch: dict, epsilon: float = 1.0,
                        num_iters: int = 50) -> jax.Array:
  """Optimal-transport pseudo-labels: each bag's instances sent to its label counts.

  For a bag b with instances i and label counts n_bc, the labels Q solve the
  entropic optimal-transport problem

      min_Q  Σ_ic Q_ic (−log p_ic) − ε H(Q)   s.t.  Σ_c Q_ic = 1,  Σ_i Q_ic = n_bc,

  p = softmax(f(x)) the current predictions. Its solution is
  Q_ic = u_i p_ic^{1/ε} v_bc, found by Sinkhorn's alternating scalings (here in
  log space, all bags at once with segment sums). With ε = 1, Q is the KL
  projection of the predictions onto the labelings that match the bag's
  counts; smaller ε sharpens Q towards the hard transport plan. Rows sum to 1
  exactly, the bag's columns to its counts only as the iterations converge,
  which takes more of them as ε shrinks (50 reach 1e-3 on a bag of 2048 at
  ε = 1, not at ε = 0.1). A class absent from a bag gets Q = 0 there.
  Dulac-Arnold, Zeghidour, Cuturi, Beyer and Vert, "Deep Multi-Class Learning
  from Label Proportions", arXiv:1905.12909 (2019).
  No gradient flows through Q. Returns [B, C]; rows of padding are 0.
  """
  if not epsilon > 0:  # ε = 0 divides by zero: NaN labels
    raise ValueError(f"epsilon must be > 0, got {epsilon}.")
  check_bag_batch(logits, batch)
  num_bags = batch["bag_counts"].shape[0]
  bag, real = batch["bag"], batch["mask"] > 0
  log_kernel = jax.nn.log_softmax(jax.lax.stop_gradient(logits)) / epsilon
  counts = batch["bag_counts"]
  log_counts = jnp.log(jnp.where(counts > 0, counts, 1.0))
  # Padding takes no mass: −inf in the column sums, 0 in its own row scaling.
  padding = jnp.where(real, 0.0, -jnp.inf)[:, None]

  def row_scaling(log_cols):  # log u_i: every instance's labels sum to 1.
    log_u = -jax.nn.logsumexp(log_kernel + log_cols[bag], axis=1)
    return jnp.where(real, log_u, 0.0)

  def iterate(_, log_cols):  # log v_bc: every bag's columns sum to its counts.
    log_u = row_scaling(log_cols)
    column_sums = _segment_logsumexp(log_kernel + log_u[:, None] + padding, bag, num_bags)
    return jnp.where(counts > 0, log_counts - column_sums, -jnp.inf)

  log_cols = jax.lax.fori_loop(0, num_iters, iterate, jnp.where(counts > 0, 0.0, -jnp.inf))
  labels = jnp.exp(log_kernel + row_scaling(log_cols)[:, None] + log_cols[bag])
  return jnp.where(real[:, None], labels, 0.0)


def ot_loss(logits: jax.Array, batch: dict, epsilon: float = 1.0,
            num_iters: int = 50) -> jax.Array:
  """Cross-entropy with the bag's optimal-transport pseudo-labels (above)."""
  return instance_cross_entropy(
      logits, sinkhorn_bag_labels(logits, batch, epsilon, num_iters), batch["mask"])


def instance_cross_entropy(logits: jax.Array, targets: jax.Array,
                           mask: jax.Array) -> jax.Array:
  """Cross-entropy with (soft) target distributions, mean over real instances."""
  return _masked_mean(optax.softmax_cross_entropy(logits, targets), mask)
