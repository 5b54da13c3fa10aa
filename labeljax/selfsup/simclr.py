r"""SimCLR's contrastive loss, NT-Xent (Chen et al., 2020, eq. 1).

Two views of each of N examples give 2N projections z; with unit-normalised
z and similarity s_ij = z_i·z_j / τ, each view i has one positive p(i), the
other view of its example, and 2N − 2 negatives, every other view in the
batch:

    ℓ_i = −log [ exp(s_{i,p(i)}) / Σ_{k ≠ i} exp(s_ik) ],   L = (1/2N) Σ_i ℓ_i.

Under `jax.jit` with the batch sharded over devices (and processes), the
similarity matrix is computed over the global batch (XLA gathers the other
devices' projections), so the negatives are the whole global batch and the
loss is the same on 1 or many devices.
"""

import jax
import jax.numpy as jnp

from labeljax import validation


def nt_xent_loss(z1: jax.Array, z2: jax.Array,
                 temperature: float) -> tuple[jax.Array, jax.Array]:
  """NT-Xent of two views' projections, and the contrastive accuracy.

  Args:
    z1, z2: [N, D] projections of the first and second view of N examples
      (N >= 2, so that every view has a negative).
    temperature: τ > 0.

  Returns:
    (loss, accuracy): the mean loss over the 2N views, and the fraction of
    views whose positive has the highest similarity among the other 2N − 1.
  """
  validation.check_positive("temperature", temperature)
  if z1.ndim != 2 or z1.shape != z2.shape:
    raise ValueError(f"z1 and z2 must both be [N, D], got {z1.shape} and {z2.shape}.")
  n = z1.shape[0]
  if n < 2:
    raise ValueError(f"NT-Xent needs a batch of at least 2 examples (the other "
                     f"examples are the negatives), got {n}.")
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  similarity = z @ z.T / temperature
  similarity = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, similarity)
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  positive_similarity = jnp.take_along_axis(similarity, positive[:, None], -1)[:, 0]
  loss = jnp.mean(jax.nn.logsumexp(similarity, axis=-1) - positive_similarity)
  accuracy = jnp.mean(jnp.argmax(similarity, axis=-1) == positive)
  return loss, accuracy
