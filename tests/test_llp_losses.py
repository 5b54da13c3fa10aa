"""Bag batches and the LLP baseline losses (DLLP, EasyLLP, OT pseudo-labels)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labeljax import parallel
from labeljax.data import Examples, feature_bags, random_bags
from labeljax.data.bag_pipeline import BagLoader
from labeljax.llp import losses


def _examples(n, seed=0):
  rng = np.random.default_rng(seed)
  return Examples(rng.normal(size=(n, 3)).astype(np.float32),
                  rng.integers(0, 2, n).astype(np.int32),
                  rng.integers(0, 4, (n, 1)))


def test_bag_batches_hold_whole_bags_with_their_counts():
  ex = _examples(1000)
  bags = feature_bags(ex.labels, 2, ex.categorical, (0,), min_size=1, max_size=1000)
  loader = BagLoader(ex, bags, parallel.make_mesh(), batch_size=400, seed=0)
  seen = []
  for step in range(6):
    b = loader.global_batch_host(step)
    real = b["mask"] > 0
    for slot in np.flatnonzero(b["bag_mask"]):
      members = b["index"][real & (b["bag"] == slot)]
      assert len(members) == b["bag_sizes"][slot]
      assert ex.labels[members].sum() == b["bag_counts"][slot, 1]
      assert len(np.unique(bags.bag_ids[members])) == 1  # a whole, single bag
    seen.append(b["index"][real])
  # Random bags: every instance once per epoch.
  rb = random_bags(ex.labels, 2, bag_size=10)
  rl = BagLoader(ex, rb, parallel.make_mesh(), batch_size=40, seed=1)
  epoch = np.concatenate([rl.global_batch_host(t)["index"] for t in range(25)])
  assert sorted(epoch) == list(range(1000))


def test_bag_larger_than_batch_is_rejected():
  ex = _examples(100)
  with pytest.raises(ValueError, match="does not fit a batch of 32"):
    BagLoader(ex, random_bags(ex.labels, 2, 50), parallel.make_mesh(), batch_size=32, seed=0)


def _batch():
  # Two bags: {0, 1, 2} with 1 positive, {3, 4} with 2 positives; one padded slot.
  return {"bag": jnp.array([0, 0, 0, 1, 1, 0]),
          "mask": jnp.array([1, 1, 1, 1, 1, 0.0]),
          "bag_counts": jnp.array([[2.0, 1.0], [0.0, 2.0], [0, 0], [0, 0]]),
          "bag_sizes": jnp.array([3.0, 2.0, 1.0, 1.0]),
          "bag_mask": jnp.array([1.0, 1.0, 0.0, 0.0])}


def test_dllp_loss_by_hand():
  logits = jnp.array([[0.0, 1.0], [0.0, -1.0], [0.0, 0.5], [0.0, 2.0], [0.0, 0.0],
                      [0.0, 9.0]])
  p = jax.nn.sigmoid(logits[:, 1])
  mean0, mean1 = p[:3].mean(), p[3:5].mean()
  bce0 = -(1 / 3 * jnp.log(mean0) + 2 / 3 * jnp.log(1 - mean0))
  bce1 = -jnp.log(mean1)
  np.testing.assert_allclose(losses.dllp_loss(logits, _batch()), (bce0 + bce1) / 2,
                             rtol=1e-5)


def test_easyllp_soft_labels_and_loss_by_hand():
  prior = jnp.array([0.4, 0.6])
  targets = losses.easyllp_soft_labels(_batch(), prior)
  # Bag 0: k=3, alpha=1/3 -> positive target 3(1/3 - 0.6) + 0.6 = -0.2.
  np.testing.assert_allclose(targets[0], [1.2, -0.2], rtol=1e-6)
  # Bag 1: k=2, alpha=1 -> 2(1 - 0.6) + 0.6 = 1.4.
  np.testing.assert_allclose(targets[3], [-0.4, 1.4], rtol=1e-6)
  logits = jnp.zeros((6, 2))
  np.testing.assert_allclose(losses.easyllp_loss(logits, _batch(), prior),
                             np.log(2.0), rtol=1e-6)  # targets sum to 1


def test_easyllp_soft_labels_are_unbiased_over_random_bags():
  rng = np.random.default_rng(0)
  labels = (rng.random(4000) < 0.3).astype(np.int32)
  prior = labels.mean()
  estimate = np.zeros(len(labels))
  for seed in range(300):
    bags = random_bags(labels, 2, bag_size=8, seed=seed)
    alpha = bags.proportions[bags.bag_ids, 1]
    estimate += 8 * (alpha - prior) + prior
  # E[ỹ_i] = y_i + (k - 1)(E[y | other members] - p): ≈ y_i for bags drawn i.i.d.
  estimate /= 300
  assert abs(estimate[labels == 1].mean() - 1.0) < 0.03
  assert abs(estimate[labels == 0].mean()) < 0.03


def test_sinkhorn_labels_meet_the_bag_counts():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)), jnp.float32)
  labels = losses.sinkhorn_bag_labels(logits, _batch())
  np.testing.assert_allclose(labels.sum(1), [1, 1, 1, 1, 1, 0], atol=1e-6)
  np.testing.assert_allclose(jax.ops.segment_sum(labels, _batch()["bag"], 4),
                             _batch()["bag_counts"], atol=1e-4)
  np.testing.assert_array_equal(labels[3:5, 0], 0.0)  # class 0 is absent from bag 1


def test_sinkhorn_labels_with_three_classes_and_a_small_epsilon():
  rng = np.random.default_rng(2)
  bag = jnp.asarray(rng.integers(0, 3, 40))
  # Counts drawn independently of the logits, so the plan has to move mass.
  counts = jnp.stack([jnp.bincount(jnp.asarray(rng.integers(0, 3, int((bag == b).sum()))),
                                   length=3) for b in range(3)]).astype(jnp.float32)
  batch = {"bag": bag, "mask": jnp.ones(40), "bag_counts": counts}
  logits = jnp.asarray(3 * rng.normal(size=(40, 3)), jnp.float32)
  labels = losses.sinkhorn_bag_labels(logits, batch, epsilon=0.2, num_iters=2000)
  np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
  np.testing.assert_allclose(jax.ops.segment_sum(labels, bag, 3), counts, atol=1e-3)
  assert float(jnp.mean(jnp.max(labels, 1))) > 0.9  # small ε: nearly hard labels


@pytest.mark.parametrize("epsilon", [1.0, 0.5])
def test_sinkhorn_labels_of_a_bag_of_two_in_closed_form(epsilon):
  # One positive among two: Q = [[1 − a, a], [a, 1 − a]], a = P(instance 1 is
  # positive), and diagonal scalings keep the cross-ratio of the kernel p^(1/ε):
  # (a / (1 − a))² = (p1 (1 − p2) / ((1 − p1) p2))^(1/ε), p_i the positive
  # probabilities.
  p1, p2 = 0.8, 0.3
  logits = jnp.log(jnp.array([[1 - p1, p1], [1 - p2, p2]]))
  batch = {"bag": jnp.array([0, 0]), "mask": jnp.ones(2),
           "bag_counts": jnp.array([[1.0, 1.0]])}
  ratio = np.sqrt((p1 * (1 - p2) / ((1 - p1) * p2)) ** (1 / epsilon))
  a = ratio / (1 + ratio)
  np.testing.assert_allclose(losses.sinkhorn_bag_labels(logits, batch, epsilon),
                             [[1 - a, a], [a, 1 - a]], rtol=1e-5)


def test_ot_loss_treats_the_labels_as_constants():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32)
  labels = losses.sinkhorn_bag_labels(logits, _batch())
  grad = jax.grad(losses.ot_loss)(logits, _batch())
  # d/dz of mean_i CE(Q_i, softmax(z_i)) over the 5 real instances, Q fixed.
  expected = (jax.nn.softmax(logits) - labels) * _batch()["mask"][:, None] / 5
  np.testing.assert_allclose(grad, expected, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"bag": jnp.array([0, 0, 0, 1, 4, 0])}, r"batch\['bag'\] must index the 4 bag slots"),
    ({"bag_counts": jnp.array([[4.0, -1.0], [0.0, 2.0], [0, 0], [0, 0]])},
     r"must lie in \[0, bag size\]"),
    ({"bag_counts": jnp.array([[-1.0, 4.0], [0.0, 2.0], [0, 0], [0, 0]])},
     r"must lie in \[0, bag size\]"),
    ({"bag_counts": jnp.array([[2.0, 0.0], [0.0, 2.0], [0, 0], [0, 0]])}, "rows must sum to"),
])
def test_direct_calls_reject_bag_batches_that_give_wrong_losses(change, message):
  batch = {**_batch(), **change}
  prior = jnp.array([0.5, 0.5])
  for loss in (losses.dllp_loss, lambda l, b: losses.easyllp_loss(l, b, prior),
               losses.ot_loss):
    with pytest.raises(ValueError, match=message):
      loss(jnp.zeros((6, 2)), batch)
  # Inside jit the loader's checked bags are trusted: no host round trip.
  assert np.isfinite(jax.jit(losses.dllp_loss)(jnp.zeros((6, 2)), _batch()))


def test_ot_rejects_epsilon_zero():
  with pytest.raises(ValueError, match="epsilon must be > 0, got 0"):
    losses.ot_loss(jnp.zeros((6, 2)), _batch(), epsilon=0.0)
