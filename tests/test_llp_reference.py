"""The numpy linear DLLP reference (experiments/llp_reference.py)."""

import numpy as np
import pytest
import scipy.optimize

from conftest import requires_raw_data
from experiments import llp_reference
from experiments.configs import llp
from labeljax import methods, metrics


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


@pytest.mark.slow  # a full Adult fit both ways: about a minute on 2 cores
@requires_raw_data
def test_the_toolkits_lbfgs_dllp_lands_on_the_reference_fit(tmp_path):
  """Linear DLLP fitted by the toolkit (`optimizer=lbfgs`: every bag in every
  step, the L2 term in the loss) and by the numpy reference on the same Adult
  bags of 512 reach the same model. At this bag size the fit decides the
  ranking: AdamW's minibatch path lands near test AUC 0.85, the reference's
  near 0.88 (benchmarks/llp_linear_fit.py)."""
  config = llp.get_config("dataset=adult,bag_size=512,method=dllp,optimizer=lbfgs,"
                          "hidden=linear,weight_decay=0.001,num_steps=200")
  toolkit = methods.train_and_evaluate(config, str(tmp_path))
  reference = llp_reference.reference_run("dataset=adult,bag_size=512", 0, [1e-3], None)
  assert abs(toolkit["monitor"]["validation_bag_loss"]
             - reference["validation_bag_loss"]) < 2e-4
  assert abs(toolkit["test"]["auc"] - reference["auc"]) < 0.003
