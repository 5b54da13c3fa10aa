"""Multi-class LLP-BP belief propagation against brute-force enumeration."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from labeljax.llp import bp, knn
from labeljax.llp import multiclass_bp as mbp

NO_EDGES = knn.Edges(jnp.zeros(0, jnp.int32), jnp.zeros(0, jnp.int32), jnp.zeros(0))


def exact_marginals(graph, bag_ids, counts):
  """P(y_i = c) [N, C] by enumerating all C^N labelings of the Gibbs model."""
  field = np.asarray(graph.field, np.float64)
  n, num_classes = field.shape
  ys = np.array(list(itertools.product(range(num_classes), repeat=n)))
  logp = field[np.arange(n), ys].sum(1)
  for i, j, w in zip(np.asarray(graph.senders), np.asarray(graph.receivers),
                     np.asarray(graph.weights)):
    logp -= w * (ys[:, i] != ys[:, j])
  bag_ids = np.asarray(bag_ids)
  for b, k in enumerate(np.asarray(counts, np.float64)):
    members = ys[:, bag_ids == b]
    for c in range(num_classes):
      logp -= graph.lambda_bag * ((members == c).sum(1) - k[c]) ** 2
  p = np.exp(logp - logp.max())
  return np.stack([p @ (ys == c) for c in range(num_classes)], 1) / p.sum()


def one_vs_rest_messages(field, counts, lam):
  """Exact messages L[i, c] of the factors exp(−λ (n_c − k_c)²) of one bag, by
  enumeration, with every other member at its cavity law softmax(field_j)."""
  n, num_classes = field.shape
  q = np.exp(field - field.max(1, keepdims=True))
  q /= q.sum(1, keepdims=True)
  out = np.zeros((n, num_classes))
  for i in range(n):
    others = [j for j in range(n) if j != i]
    ys = np.array(list(itertools.product(range(num_classes), repeat=n - 1)))
    prob = np.prod(q[others, ys], axis=1)
    for c in range(num_classes):
      rest = (ys == c).sum(1)
      out[i, c] = (np.log(prob @ np.exp(-lam * (rest + 1 - counts[c]) ** 2))
                   - np.log(prob @ np.exp(-lam * (rest - counts[c]) ** 2)))
  return out


def random_edges(pairs, rng):
  s, r = zip(*pairs)
  return knn.Edges(jnp.array(s), jnp.array(r),
                   jnp.asarray(rng.uniform(0, 2, len(pairs)), jnp.float32))


def test_tree_with_unary_bags_is_exact():
  """A tree of Potts edges; bags of one (unary factors), unbagged and isolated nodes."""
  rng = np.random.default_rng(0)
  bag_ids = np.array([0, -1, 1, -1, 2, -1, -1])
  counts = [[1, 0, 0], [0, 0, 1], [0, 0.5, 0.5]]  # counts need not be integers
  edges = random_edges([(0, 1), (1, 2), (1, 3), (3, 4), (4, 5)], rng)  # node 6: no edge
  graph = mbp.build_multiclass_graph(edges, bag_ids, counts, lambda_bag=0.7, lambda_sim=2.0,
                                     prior_logits=rng.normal(size=(7, 3)), allow_unbagged=True)
  result = mbp.run_multiclass_bp(graph, num_sweeps=100, damping=0.3, tol=1e-6)
  np.testing.assert_allclose(result.marginals, exact_marginals(graph, bag_ids, counts), atol=1e-5)
  assert result.num_sweeps < 100 and result.delta <= 1e-6
  np.testing.assert_allclose(result.logits[6], graph.field[6], atol=1e-6)  # prior only


def test_first_sweep_gives_exact_one_vs_rest_messages():
  """From zero messages every cavity is the prior, so one undamped sweep puts
  each factor's exact message (given that cavity) on its class."""
  rng = np.random.default_rng(1)
  field = rng.normal(0.0, 1.5, size=(7, 3))
  counts = np.array([3.0, 1.0, 3.0])
  graph = mbp.build_multiclass_graph(NO_EDGES, np.zeros(7, int), [counts], lambda_bag=0.8,
                                     prior_logits=field)
  result = mbp.run_multiclass_bp(graph, num_sweeps=1, damping=0.0)
  want = one_vs_rest_messages(field, counts, 0.8)
  np.testing.assert_allclose(np.asarray(result.logits) - field, want, atol=1e-5)


def test_hard_symmetric_bag_is_exact():
  # Zero field, near-hard counts: the exact marginals are k_c / |b|, and so is
  # every fixed point (each belief is then its factor's own exact conditional).
  counts = [3, 4, 1]
  graph = mbp.build_multiclass_graph(NO_EDGES, np.zeros(8, int), [counts], lambda_bag=30.0)
  result = mbp.run_multiclass_bp(graph, num_sweeps=200, tol=1e-6)
  assert result.num_sweeps < 200
  np.testing.assert_allclose(result.marginals, np.broadcast_to(np.array(counts) / 8, (8, 3)),
                             atol=1e-5)


def test_loopy_cases_are_close():
  """A lone bag of 8 (its 3 class factors close loops) and a kNN graph with two
  bags: BP is approximate; measured max errors 0.012 and 0.012."""
  rng = np.random.default_rng(2)
  lone = mbp.build_multiclass_graph(NO_EDGES, np.zeros(8, int), [[3, 4, 1]],
                                    prior_logits=rng.normal(size=(8, 3)))
  x = rng.normal(size=(8, 2))
  labels = rng.integers(0, 3, 8)
  bag_ids = rng.permutation(8) % 2
  counts = np.stack([np.bincount(labels[bag_ids == b], minlength=3) for b in range(2)])
  graph = mbp.build_multiclass_graph(x, bag_ids, counts, num_neighbors=2, lambda_bag=0.5,
                                     prior_logits=0.5 * rng.normal(size=(8, 3)))
  for g, ids, k in ((lone, np.zeros(8, int), [[3, 4, 1]]), (graph, bag_ids, counts)):
    result = mbp.run_multiclass_bp(g, num_sweeps=300, tol=1e-6)
    assert result.num_sweeps < 300
    error = np.abs(np.asarray(result.marginals) - exact_marginals(g, ids, k)).max()
    assert 1e-3 < error < 0.03, error  # > 1e-3: the loops are real


@pytest.mark.parametrize("num_sweeps", [1, 3, 100])
def test_two_classes_without_bags_match_binary_bp(num_sweeps):
  """Potts messages for C = 2 are the binary ones; damping in log space is linear."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  prior = rng.normal(size=40)
  unbagged = -np.ones(40, int)
  binary = bp.build_llp_graph(x, unbagged, np.zeros(0), num_neighbors=4, length_scale=2.0,
                              lambda_sim=1.5, prior_log_odds=prior, allow_unbagged=True)
  multi = mbp.build_multiclass_graph(x, unbagged, np.zeros((0, 2)), num_neighbors=4,
                                     length_scale=2.0, lambda_sim=1.5, allow_unbagged=True,
                                     prior_logits=np.stack([np.zeros(40), prior], 1))
  want = bp.run_bp(binary, num_sweeps).marginals
  got = mbp.run_multiclass_bp(multi, num_sweeps).marginals
  np.testing.assert_allclose(got[:, 1], want, atol=2e-6)


def test_two_classes_with_bags_near_binary_bp_with_double_lambda():
  """For C = 2 the two class factors of a bag are one factor with 2 λ_b, which BP
  counts twice around a loop: close to, not equal to, the binary BP."""
  rng = np.random.default_rng(0)
  n = 2000
  labels = rng.random(n) < 0.3
  x = rng.normal(size=(n, 16)).astype(np.float32)
  x[:, 0] += 1.5 * labels
  bag_ids = rng.permutation(n) // 64
  k = np.bincount(bag_ids, weights=labels)
  edges = knn.knn_graph(x, 10)
  binary = bp.run_bp(bp.build_llp_graph(edges, bag_ids, k, lambda_bag=2.0), 300, tol=1e-6)
  multi = mbp.run_multiclass_bp(mbp.build_multiclass_graph(
      edges, bag_ids, np.stack([np.bincount(bag_ids) - k, k], 1), lambda_bag=1.0), 300, tol=1e-6)
  assert binary.num_sweeps < 300 and multi.num_sweeps < 300
  diff = np.abs(np.asarray(multi.marginals)[:, 1] - np.asarray(binary.marginals))
  # Measured: max 0.0024, mean 0.0005.
  assert diff.max() < 0.005 and diff.mean() < 0.001, (diff.max(), diff.mean())


def test_saddlepoint_is_close_on_a_large_bag():
  """One bag of 300, C = 3, one sweep: the exact messages against both cheap forms."""
  rng = np.random.default_rng(4)
  field = rng.normal(0.0, 1.0, size=(300, 3))
  graph = mbp.build_multiclass_graph(NO_EDGES, np.zeros(300, int), [[150, 100, 50]],
                                     prior_logits=field, lambda_bag=0.5)
  exact, saddle, gauss = (np.asarray(mbp.run_multiclass_bp(graph, 1, 0.0, bag_factor=f).marginals)
                          for f in ("cardinality", "saddlepoint", "gaussian"))
  # Counts far from what the priors expect: the Gaussian form is evaluated in
  # the tail of the count's law, the saddle point at its centre. Measured max
  # errors: 0.0017 and 0.032.
  saddle_error, gauss_error = np.abs(saddle - exact).max(), np.abs(gauss - exact).max()
  assert saddle_error < 0.003 and saddle_error < gauss_error / 5, (saddle_error, gauss_error)


@pytest.mark.parametrize("kwargs,match", [
    (dict(bag_counts=[2, 2]), r"bag_counts must be \[num_bags, C\]"),
    (dict(bag_counts=[[3], [3]]), "Need C >= 2 classes"),
    (dict(bag_counts=[[4, -1], [1, 2]]), r"class counts must be >= 0; bags \[0\]"),
    (dict(bag_counts=[[1, 2], [np.nan, 2]]), "NaN or inf"),
    (dict(bag_counts=[[1, 2], [2, 2]]), r"must sum to its size; bags \[1\] sum to \[4.0\] "
                                        r"and have sizes \[3\]"),
    (dict(bag_ids=[0, 0, 0, 1, 1, 2]), r"bag ids out of range \[0, 2\)"),
    (dict(bag_ids=[0, 0, -1, 1, 1, 1]), "pass allow_unbagged=True"),
    (dict(prior_logits=np.zeros((6, 3))), r"prior_logits must have shape \(N, C\) = \(6, 2\)"),
    (dict(prior_logits=np.full((6, 2), np.inf)), "prior_logits contain NaN or inf"),
    (dict(lambda_bag=-1.0), "lambda_bag must be a finite number > 0"),
    (dict(lambda_sim=0.0), "lambda_sim must be a finite number > 0"),
    (dict(features=knn.Edges(jnp.array([0]), jnp.array([1]), jnp.array([0.5])),
          lambda_sim=100.0, kernel="constant"), r"Potts weights .* must be <= 80"),
    (dict(features=np.zeros((5, 2))), r"features must be \[N=6, d\]"),
    (dict(num_neighbors=6), "num_neighbors < N = 6"),
])
def test_build_rejects_bad_inputs(kwargs, match):
  args = dict(features=np.random.default_rng(0).normal(size=(6, 2)), bag_ids=[0, 0, 0, 1, 1, 1],
              bag_counts=[[1, 2], [3, 0]], num_neighbors=2)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    mbp.build_multiclass_graph(args.pop("features"), args.pop("bag_ids"), args.pop("bag_counts"),
                               **args)


def test_run_rejects_bad_options():
  graph = mbp.build_multiclass_graph(NO_EDGES, [0, 0], [[1, 1]])
  with pytest.raises(ValueError, match=r"Unknown bag_factor 'pairwise'; choose one of "
                                       r"\('cardinality', 'saddlepoint', 'gaussian'\)"):
    mbp.run_multiclass_bp(graph, bag_factor="pairwise")
  with pytest.raises(ValueError, match="damping"):
    mbp.run_multiclass_bp(graph, damping=-0.1)
  with pytest.raises(ValueError, match="num_sweeps"):
    mbp.run_multiclass_bp(graph, num_sweeps=0)
  with pytest.raises(ValueError, match="tol"):
    mbp.run_multiclass_bp(graph, tol=float("nan"))
