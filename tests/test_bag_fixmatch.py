"""Bag-constrained FixMatch (labeljax/recipes/bag_fixmatch.py): the loss against a
numpy reference, pseudo-labels that respect the bag counts, instance labels
never read, and a short run through the llp.py config."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import quadrant_images
from experiments.configs import llp
from labeljax import data as data_lib
from labeljax import methods, parallel
from labeljax.llp import losses
from labeljax.recipes import bag_fixmatch
from labeljax.ssl import common
from labeljax.train import state as state_lib
from labeljax.train import trainer


def _batch(bag_sizes, counts, num_slots):
  """A bag batch: instances of bag k in consecutive rows, then padding."""
  bag = np.concatenate([np.full(s, k) for k, s in enumerate(bag_sizes)])
  num_real = len(bag)
  bag = np.concatenate([bag, np.zeros(num_slots - num_real, int)])
  mask = (np.arange(num_slots) < num_real).astype(np.float32)
  return {"bag": jnp.asarray(bag, jnp.int32), "mask": jnp.asarray(mask),
          "bag_counts": jnp.asarray(counts, jnp.float32),
          "bag_sizes": jnp.asarray(bag_sizes, jnp.float32),
          "bag_mask": jnp.ones(len(bag_sizes), jnp.float32)}


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _numpy_sinkhorn(logits, bag, counts, epsilon, num_iters):
  """Q = diag(u) K diag(v) per bag with K = p^(1/ε), scaled as the JAX loop."""
  q = np.zeros_like(logits, np.float64)
  for k, n in enumerate(counts):
    kernel = _softmax(logits[bag == k].astype(np.float64)) ** (1.0 / epsilon)
    v = (n > 0).astype(np.float64)
    for _ in range(num_iters):
      u = 1.0 / (kernel @ v)
      v = np.where(n > 0, n / np.maximum((kernel * u[:, None]).sum(0), 1e-300), 0.0)
    u = 1.0 / (kernel @ v)
    q[bag == k] = kernel * u[:, None] * v
  return q


def _numpy_loss(weak, strong, bag_sizes, counts, threshold, weight, epsilon, num_iters):
  bag = np.concatenate([np.full(s, k) for k, s in enumerate(bag_sizes)])
  n = len(bag)
  q = _numpy_sinkhorn(weak[:n], bag, np.asarray(counts, np.float64), epsilon, num_iters)
  keep = q.max(1) >= threshold
  log_strong = np.log(_softmax(strong[:n].astype(np.float64)))
  consistency_term = -(keep * log_strong[np.arange(n), q.argmax(1)]).sum() / n
  probs = _softmax(weak[:n].astype(np.float64))
  dllp = np.mean([-(np.asarray(counts[k]) / s
                    * np.log(probs[bag == k].mean(0))).sum()
                  for k, s in enumerate(bag_sizes)])
  return consistency_term + weight * dllp, keep


BAG_SIZES, COUNTS = (3, 5), ((2, 1, 0), (1, 1, 3))  # class 2 absent from bag 0


def test_loss_matches_a_numpy_reference_and_its_gradients_the_pieces():
  rng = np.random.default_rng(0)
  weak = rng.normal(size=(10, 3)).astype(np.float32) * 3  # 8 real rows, 2 padding
  strong = rng.normal(size=(10, 3)).astype(np.float32) * 3
  batch = _batch(BAG_SIZES, COUNTS, 10)
  epsilon, num_iters, weight = 0.5, 7, 0.3
  # τ between the projected confidences, so some labels are kept and some not.
  bag = np.repeat(np.arange(2), BAG_SIZES)
  confidence = _numpy_sinkhorn(weak[:8], bag, np.asarray(COUNTS, float), epsilon,
                               num_iters).max(1)
  threshold = float(np.median(confidence))
  expected, keep = _numpy_loss(weak, strong, BAG_SIZES, COUNTS, threshold, weight,
                               epsilon, num_iters)
  assert 0 < keep.sum() < 8

  def loss(w, s):
    return bag_fixmatch.bag_fixmatch_loss(w, s, batch, threshold=threshold,
                                         bag_loss_weight=weight, epsilon=epsilon,
                                         num_iters=num_iters)

  value, labels, metrics = loss(jnp.asarray(weak), jnp.asarray(strong))
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(labels.weights[:8]) > 0, keep)
  assert float(metrics["mask_rate"]) == pytest.approx(keep.mean())
  # Padding rows keep nothing, whatever their logits.
  np.testing.assert_array_equal(labels.weights[8:], 0.0)
  # Gradients: the weak view only through DLLP (the targets carry none), the
  # strong view only through the masked cross-entropy.
  grad_weak, grad_strong = jax.grad(lambda w, s: loss(w, s)[0], argnums=(0, 1))(
      jnp.asarray(weak), jnp.asarray(strong))
  np.testing.assert_allclose(
      grad_weak, weight * jax.grad(losses.dllp_loss)(jnp.asarray(weak), batch), atol=1e-6)
  np.testing.assert_allclose(
      grad_strong, jax.grad(common.masked_cross_entropy)(jnp.asarray(strong), labels)
      * 10 / 8, atol=1e-6)


def test_pseudo_labels_respect_the_bag_counts():
  rng = np.random.default_rng(1)
  sizes = (16, 24, 8)
  counts = np.zeros((3, 4))
  for k, s in enumerate(sizes):  # class 3 absent from bag 0
    counts[k] = np.bincount(rng.integers(0, 4 if k else 3, s), minlength=4)
  batch = _batch(sizes, counts, 64)
  logits = jnp.asarray(rng.normal(size=(64, 4)) * 2, jnp.float32)
  labels, projected = bag_fixmatch.bag_pseudo_labels(logits, batch, threshold=0.5,
                                                    epsilon=1.0, num_iters=300)
  projected = np.asarray(projected)
  bag, real = np.asarray(batch["bag"]), np.asarray(batch["mask"]) > 0
  for k in range(3):
    np.testing.assert_allclose(projected[real & (bag == k)].sum(0), counts[k], atol=1e-3)
  np.testing.assert_allclose(projected[real].sum(1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(projected[~real], 0.0)
  targets, weights = np.asarray(labels.targets), np.asarray(labels.weights)
  np.testing.assert_array_equal(targets.argmax(1), projected.argmax(1))
  np.testing.assert_array_equal(weights, real & (projected.max(1) >= 0.5))
  # A kept label is always a class its bag holds.
  kept = weights > 0
  assert kept.any()
  assert (counts[bag[kept], targets[kept].argmax(1)] > 0).all()


TOY = "toy_images_bag_fixmatch"


@pytest.fixture(scope="module", autouse=True)
def toy_images():
  data_lib.register_dataset(TOY, data_lib.from_arrays(
      TOY, train=quadrant_images(512, 0), test=quadrant_images(256, 1)))


def _config(num_steps=60, **overrides):
  config = llp.get_config(f"dataset={TOY},method=bag_fixmatch,bag_size=16,"
                          f"num_steps={num_steps}")
  config.model_kwargs = dict(widths=(8, 16, 16), embedding_dim=32)
  config.batch_size = 64
  config.log_every = config.eval_every = config.checkpoint_every = num_steps
  for key, value in overrides.items():
    config[key] = value
  return config


def test_the_loss_never_reads_instance_labels():
  # Labels kept at initialisation; RandAugment's ops off, for a faster compile.
  config = _config(pseudo_threshold=0.3, randaugment_ops=0)
  setup = methods.get_method("bag_fixmatch")(config, trainer.load_data(config),
                                             parallel.make_mesh())
  batch = jax.tree.map(np.asarray, next(iter(setup.loader.batches(0))))
  state = state_lib.create_train_state(setup.model, optax.sgd(0.1),
                                       jnp.zeros((1, 16, 16, 1)), jax.random.key(0))
  loss_fn = jax.jit(setup.loss_fn(setup.model))
  rng = jax.random.key(3)
  loss, aux = loss_fn(state.params, state, batch, rng)
  assert float(aux.metrics["mask_rate"]) > 0
  # The labels permuted within each bag: counts unchanged, instances relabelled.
  permuted = dict(batch, labels=batch["labels"].copy())
  shuffle = np.random.default_rng(0)
  real = batch["mask"] > 0
  moved = 0
  for k in np.unique(batch["bag"][real]):
    rows = np.flatnonzero(real & (batch["bag"] == k))
    permuted["labels"][rows] = shuffle.permutation(batch["labels"][rows])
    moved += (permuted["labels"][rows] != batch["labels"][rows]).sum()
  assert moved > 0
  loss_permuted, _ = loss_fn(state.params, state, permuted, rng)
  assert float(loss_permuted) == float(loss)


@pytest.mark.slow  # slow: keeps the default suite well under 20 minutes on 2 cores
def test_bag_fixmatch_trains_through_the_config(tmp_path):
  config = _config()
  assert (config.pseudo_threshold, config.bag_loss_weight, config.ot_epsilon,
          config.randaugment_ops) == (0.95, 1.0, 1.0, 2)
  # A sharper projection than the default, so labels pass τ within 60 steps.
  config.ot_epsilon = 0.1
  results = methods.train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 60
  assert results["test"]["accuracy"] > 0.45  # chance: 0.25; measured 0.60
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["split"] == "train"][-1]
  # The consistency term is live, and the kept labels are mostly the true ones
  # (the row averages steps 1-60: measured 0.77; from step 40 on, all right).
  assert train["mask_rate"] > 0.05 and train["consistency_loss"] > 0
  assert train["pseudo_label_accuracy"] > 0.5  # chance: 0.25


@pytest.mark.parametrize("key, value, match", [
    ("pseudo_threshold", 1.5, r"config.pseudo_threshold must be in \[0, 1\], got 1.5"),
    ("bag_loss_weight", -1.0, r"config.bag_loss_weight must be >= 0, got -1.0"),
    ("ot_epsilon", 0.0, r"config.ot_epsilon must be > 0, got 0.0"),
])
def test_bad_settings_are_named_before_training(key, value, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    methods.train_and_evaluate(_config(**{key: value}), str(tmp_path))
