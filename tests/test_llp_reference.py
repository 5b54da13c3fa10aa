"""The numpy linear DLLP reference (experiments/llp_reference.py)."""

import numpy as np
import scipy.optimize

from experiments import llp_reference
from labeljax import metrics


def _planted(num_rows=2000, dim=5, bag_size=8, seed=0):
  """Rows, labels from a planted linear rule, and random bags of their counts."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_rows, dim))
  labels = (x @ rng.normal(size=dim) + 0.3 * rng.normal(size=num_rows) > 0).astype(int)
  bag_ids = rng.permutation(num_rows) // bag_size
  counts = np.zeros((bag_ids.max() + 1, 2))
  np.add.at(counts, (bag_ids, labels), 1)
  return x, labels, bag_ids, counts / counts.sum(1, keepdims=True)


def test_dllp_objective_gradient_matches_finite_differences():
  x, _, bag_ids, proportions = _planted(num_rows=60, dim=3, bag_size=6)
  membership = llp_reference.bag_means_matrix(bag_ids, len(proportions))
  objective = lambda w: llp_reference.dllp_objective(w, x, membership, proportions, 0.1)
  start = np.random.default_rng(1).normal(size=8)
  assert scipy.optimize.check_grad(lambda w: objective(w)[0], lambda w: objective(w)[1],
                                   start) < 1e-5


def test_linear_dllp_recovers_a_planted_rule_from_bag_counts():
  x, labels, bag_ids, proportions = _planted()
  weights = llp_reference.fit_linear_dllp(x, bag_ids, proportions, l2=1e-3)
  scores = x @ weights[:-1] + weights[-1]
  assert metrics.roc_auc(scores[:, 1] - scores[:, 0], labels) > 0.95
  # The bag means it fits match the counts it was given.
  membership = llp_reference.bag_means_matrix(bag_ids, len(proportions))
  probs = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
  assert np.abs(membership @ probs - proportions).mean() < 0.1
