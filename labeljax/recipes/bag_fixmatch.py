"""Bag-constrained pseudo-labels with weak/strong consistency ("bag_fixmatch").

FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with
Consistency and Confidence", NeurIPS 2020) fits a strongly augmented view of
each image to the hard pseudo-label of its weakly augmented view, where that
label is confident. In LLP there are no labeled examples, but every bag's
label counts are known; here the weak-view predictions are first projected
onto the bag's counts by entropic optimal transport (Sinkhorn), as in
Dulac-Arnold, Zeghidour, Cuturi, Beyer and Vert, "Deep Multi-Class Learning
from Label Proportions", arXiv:1905.12909 (2019), and the projected
distributions give the pseudo-labels.

For a batch of whole bags, instance i in bag b(i) with label counts n_bc
(`losses.sinkhorn_bag_labels`):

    p_i  = softmax(f(weak(x_i)))                       (no gradient)
    Q    = argmin_{Q ≥ 0} Σ_ic Q_ic (−log p_ic) − ε H(Q)
           s.t. Σ_c Q_ic = 1,  Σ_{i∈b} Q_ic = n_bc      (per bag)
    ŷ_i  = argmax_c Q_ic,   w_i = 1[max_c Q_ic ≥ τ]

    L = (1/N) Σ_i w_i · H(onehot(ŷ_i), softmax(f(strong(x_i))))
        + λ_bag · (1/K) Σ_b H(α_b, mean_{i∈b} softmax(f(weak(x_i))))

N is the number of real (non-padding) instances and K the number of bags in
the batch: the consistency term is averaged over all instances, not over the
confident ones, as in FixMatch. The second term is DLLP on the weak view
(`losses.dllp_loss`, α_b = n_b / |b|). It is what trains the network at the
start, when no projected prediction reaches τ: Q then spreads each instance
over its bag's classes (at uniform predictions Q_i = α_b), and max_c Q_ic is
about the bag's largest proportion. As the network separates the classes
inside a bag, Q sharpens and the consistency term takes over.

The projection makes the kept pseudo-labels respect the bag: a bag with no
instance of class c never yields the label c (Q_ic = 0), and the expected
class counts of the soft Q are the bag's counts. Only the bag counts reach
the loss; the instance labels that ride along in a batch feed one monitoring
metric (`pseudo_label_accuracy`), never the loss.

The weak and strong views come from `augment.make_views` (the ssl family's
views) and go through the model in one forward pass, so BatchNorm sees both,
as in `labeljax.ssl.training`; the pseudo-labels, the confidence mask and the
masked cross-entropy are `labeljax.ssl.common`'s.
"""

import jax
import jax.numpy as jnp
import ml_collections

from labeljax import augment
from labeljax.llp import losses
from labeljax.llp import training as llp_training
from labeljax.ssl import common
from labeljax.train.step import LossAux, apply_model, model_inputs
from labeljax.train.trainer import Data, Setup
from labeljax.validation import check_nonnegative


def bag_pseudo_labels(weak_logits: jax.Array, batch: dict, threshold: float,
                      epsilon: float = 1.0, num_iters: int = 50,
                      ) -> tuple[common.PseudoLabels, jax.Array]:
  """Hard pseudo-labels from the weak-view predictions projected onto the bag counts.

  Returns (PseudoLabels(one_hot(argmax Q), w), Q): w_i = 1[max_c Q_ic ≥ τ] on
  real instances (0 on padding), Q the [B, C] Sinkhorn projection (rows of
  padding 0). No gradient flows through either.
  """
  logits, _ = common.weak_probs(weak_logits)
  projected = losses.sinkhorn_bag_labels(logits, batch, epsilon, num_iters)
  weights = common.confidence_mask(projected, threshold) * batch["mask"]
  return common.PseudoLabels(common.pseudo_targets(projected), weights), projected


def bag_fixmatch_loss(weak_logits: jax.Array, strong_logits: jax.Array, batch: dict, *,
                      threshold: float, bag_loss_weight: float, epsilon: float = 1.0,
                      num_iters: int = 50,
                      ) -> tuple[jax.Array, common.PseudoLabels, dict[str, jax.Array]]:
  """The loss L of the module docstring: (L, the pseudo-labels, metrics).

  `weak_logits` and `strong_logits` [B, C] are the model's outputs on the two
  views of the batch's instances (padding rows included, `batch["mask"]` 0).
  """
  labels, _ = bag_pseudo_labels(weak_logits, batch, threshold, epsilon, num_iters)
  num_real = jnp.maximum(jnp.sum(batch["mask"]), 1.0)
  # masked_cross_entropy averages over all B rows; padding rows weigh 0, so
  # rescaling by B / N gives the mean over the N real instances.
  consistency = common.masked_cross_entropy(strong_logits, labels) * (
      batch["mask"].shape[0] / num_real)
  bag_loss = losses.dllp_loss(weak_logits, batch)
  metrics = {"consistency_loss": consistency, "dllp_loss": bag_loss,
             "mask_rate": jnp.sum(labels.weights) / num_real}
  return consistency + bag_loss_weight * bag_loss, labels, metrics


def bag_fixmatch(config: ml_collections.ConfigDict, data: Data, mesh) -> Setup:
  """Bag-constrained FixMatch: `bag_fixmatch_loss` on batches of whole bags.

  Config: `pseudo_threshold` (τ), `bag_loss_weight` (λ_bag, the DLLP term's
  weight), `ot_epsilon` and `ot_iters` (the Sinkhorn projection), and the
  views' keys of `augment.make_views` (`flip`, `randaugment_ops`, or
  `tabular_mask_prob`, `tabular_noise_std`).
  """
  threshold, weight = config.pseudo_threshold, config.bag_loss_weight
  if not 0.0 <= threshold <= 1.0:
    raise ValueError(f"pseudo_threshold must be a probability in [0, 1], got {threshold}.")
  check_nonnegative("bag_loss_weight", weight)
  epsilon, num_iters = llp_training.check_ot_settings(config)
  # The bag loader, the model (or init_from's encoder) and the validation-bag
  # monitor, as for every LLP setup.
  loader, _, model, monitor = llp_training.bag_setup_parts(config, data, mesh)
  weak, strong = augment.make_views(data.dataset.info.kind, config)

  def loss_fn(model):
    def fn(params, state, batch, rng):
      aug_w, aug_s, dropout = jax.random.split(rng, 3)
      x = model_inputs(batch["inputs"])
      views = jnp.concatenate([weak(aug_w, x), strong(aug_s, x)])
      out, model_state = apply_model(model, params, state.model_state, views,
                                     train=True, rng=dropout)
      n = x.shape[0]
      loss, labels, metrics = bag_fixmatch_loss(
          out.logits[:n], out.logits[n:], batch, threshold=threshold,
          bag_loss_weight=weight, epsilon=epsilon, num_iters=num_iters)
      # Monitoring only: how often kept pseudo-labels are right (labels hidden from the loss).
      right = jnp.argmax(labels.targets, -1) == batch["labels"]
      kept = labels.weights > 0
      metrics["pseudo_label_accuracy"] = jnp.sum(right * kept) / jnp.maximum(kept.sum(), 1)
      return loss, LossAux(model_state, state.algo_state, metrics)
    return fn

  return Setup(loader, loss_fn, model=model, monitor=monitor)
