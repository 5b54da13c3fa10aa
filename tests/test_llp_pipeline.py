"""LLP methods end to end through the trainer: DLLP, EasyLLP, OT, LLP-BP rounds."""

import json

import jax
import numpy as np
import pytest

from experiments.configs import llp
from labeljax import models, parallel
from labeljax.data import random_bags
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.train import trainer
from labeljax.methods import train_and_evaluate


def _config(method, **overrides):
  config = llp.get_config(f"dataset=adult,method={method},bag_size=16,num_steps=60")
  config.log_every = config.eval_every = config.checkpoint_every = 30
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.mark.parametrize("method, prior_output_bias",
                         [("dllp", False), ("easyllp", False), ("ot", False), ("dllp", True)])
def test_bag_loss_baselines_learn_from_proportions(method, prior_output_bias, tmp_path):
  config = _config(method, prior_output_bias=prior_output_bias)
  results = train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 60 and results["test"]["auc"] > 0.75


def test_ot_rejects_bad_sinkhorn_settings(tmp_path):
  with pytest.raises(ValueError, match="ot_epsilon must be > 0, got 0.0"):
    train_and_evaluate(_config("ot", ot_epsilon=0.0), str(tmp_path))
  with pytest.raises(ValueError, match=r"ot_iters must be >= 1 \(an integer\), got 0"):
    train_and_evaluate(_config("ot", ot_iters=0), str(tmp_path))


def test_prior_output_bias_starts_predictions_at_the_bag_prior():
  config = _config("dllp", prior_output_bias=True)
  data = trainer.load_data(config)
  mesh = parallel.make_mesh()
  setup = llp_training.dllp(config, data, mesh)
  bags = setup.loader.bags
  prior = bags.label_counts.sum(0) / bags.sizes.sum()  # Adult: 24% positives
  params = setup.model.init(jax.random.key(0), data.dataset.train.inputs[:1])
  output_layer = max((k for k in params["params"] if k.startswith("Dense_")),
                     key=lambda k: int(k.split("_")[1]))
  np.testing.assert_allclose(params["params"][output_layer]["bias"], np.log(prior), rtol=1e-6)
  probs = jax.nn.softmax(setup.model.apply(params, data.dataset.train.inputs[:2000]).logits)
  assert abs(float(probs[:, 1].mean()) - prior[1]) < 0.05
  with pytest.raises(ValueError, match=r"output_bias needs 2 values, got shape \(3,\)"):
    models.MLP(2, output_bias=(0.1, 0.2, 0.3)).init(jax.random.key(0), np.zeros((1, 4)))


def test_llp_bp_rounds_select_on_validation_bags_only(tmp_path):
  results = train_and_evaluate(_config("llp_bp", num_rounds=2, bp_sweeps=30), str(tmp_path))
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  rounds = [l for l in lines if l["split"] == "round"]
  assert len(rounds) == 2 and len([l for l in lines if l["split"] == "bp"]) == 2
  losses = [r["validation_bag_loss"] for r in rounds]
  assert results["selected_round"] == int(np.argmin(losses))
  assert results["test"]["auc"] == rounds[results["selected_round"]]["test_auc"]
  assert results["test"]["auc"] > 0.75
  # Killed in each round and resumed: test_faults.py.


def test_validation_bag_loss_is_dllp_on_bags():
  labels = np.array([0, 1, 1, 0])
  bags = random_bags(labels, 2, bag_size=2, seed=0)
  logits = np.zeros((4, 2))  # p = 1/2 everywhere
  expected = -np.mean([(bags.proportions[b] * np.log(0.5)).sum() for b in range(2)])
  assert llp_bp.validation_bag_loss(logits, bags) == pytest.approx(expected)


def test_llp_bp_rejects_multiclass_and_bad_pseudo_label_mode():
  with pytest.raises(ValueError, match="binary labels; mnist has 10 classes"):
    train_and_evaluate(_config("llp_bp", dataset="mnist"), "/tmp/unused")
  with pytest.raises(ValueError, match="Unknown pseudo_labels 'fuzzy'"):
    llp_bp.pseudo_label_targets(np.zeros(3), _config("llp_bp", pseudo_labels="fuzzy"))
