"""The pseudo-labeling train step, end to end through the trainer."""

import numpy as np
import pytest

from experiments.configs import ssl
from labeljax import parallel
from labeljax.ssl import get_algorithm
from labeljax.ssl import training as ssl_training
from labeljax.train import trainer
from labeljax.methods import train_and_evaluate


def _config(algorithm, **overrides):
  config = ssl.get_config(f"dataset=adult,algorithm={algorithm},num_labels=200,"
                          "num_steps=30,batch_size=32,uratio=2")
  config.log_every = config.eval_every = config.checkpoint_every = 30
  config.optimizer.learning_rate = 0.01
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.mark.parametrize("algorithm", ["fixmatch", "flexmatch", "freematch",
                                       "softmatch", "mean_teacher", "pseudo_label",
                                       "shrinkmatch"])
def test_every_algorithm_trains_on_tabular_data(algorithm, tmp_path):
  config = _config(algorithm)
  if algorithm in ("fixmatch", "flexmatch", "pseudo_label", "shrinkmatch"):
    # Low thresholds so the unlabeled term is active within 30 steps.
    config.algorithm_kwargs = {"threshold": 0.6}
  results = train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 30
  assert np.isfinite(results["test"]["loss"]) and results["test"]["auc"] > 0.6


def test_lambda_u_argument_overrides_the_unlabeled_weight():
  # The defaults are spelled out (so flags can set them): Mean Teacher's 50.
  assert ssl.get_config("algorithm=mean_teacher").algorithm_kwargs.lambda_u == 50.0
  config = ssl.get_config("algorithm=mean_teacher,lambda_u=1.0")
  algorithm = get_algorithm(config.algorithm, **config.algorithm_kwargs)
  assert float(algorithm.unlabeled_weight(1000, 1000)) == 1.0  # after the warm-up


def test_bad_ssl_inputs_have_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="Unknown semi-supervised algorithm 'fixmach'"):
    train_and_evaluate(_config("fixmach"), str(tmp_path))
  with pytest.raises(ValueError, match=r"must be a probability threshold in \(0, 1\]"):
    train_and_evaluate(_config("fixmatch", algorithm_kwargs={"threshold": 1.5}), str(tmp_path))
  with pytest.raises(ValueError, match="uratio"):
    train_and_evaluate(_config("fixmatch", uratio=0), str(tmp_path))
  config = _config("fixmatch")
  data = trainer.load_data(config)
  only_zeros = data.split.labeled[data.dataset.train.labels[data.split.labeled] == 0]
  data = data._replace(split=data.split._replace(labeled=only_zeros))
  with pytest.raises(ValueError, match=r"no example of classes \[1\]"):
    ssl_training.pseudo_labeling(config, data, parallel.make_mesh())
