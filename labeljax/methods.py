"""Config -> method: the registry above the families, and `train_and_evaluate`.

A single-stage method is a setup function `(config, data, mesh) ->
trainer.Setup` that builds the method's loader (which streams or bags a batch
holds) and its loss; the train core runs it. A pipeline runs several stages
itself: `(config, workdir) -> results`. Families register theirs here; the
core (`labeljax.train`) and the families never import this module.
"""

import ml_collections

from labeljax.distill import training as distill_training
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.recipes import bag_fixmatch
from labeljax.recipes import simclrv2
from labeljax.selfsup import training as selfsup_training
from labeljax.ssl import training as ssl_training
from labeljax.train import config_checks
from labeljax.train import trainer


METHODS = {
    "supervised": trainer.supervised_setup,
    "dllp": llp_training.dllp,
    "easyllp": llp_training.easyllp,
    "ot": llp_training.ot,
    "bag_fixmatch": bag_fixmatch.bag_fixmatch,
    "pseudo_labeling": ssl_training.pseudo_labeling,
}


PIPELINES = {
    "llp_bp": llp_bp.train_and_evaluate,
    "bag_proportion": llp_training.bag_proportion_floor,
    "distill": distill_training.train_and_evaluate,
    "simclr": selfsup_training.pretrain,
    "simclrv2": simclrv2.simclrv2,
}


def get_method(name: str):
  """The setup function of a single-stage method (pipelines run themselves)."""
  if name in PIPELINES:
    raise ValueError(f"{name!r} runs several stages: use methods.train_and_evaluate.")
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choose one of "
                     f"{sorted([*METHODS, *PIPELINES])}.")
  return METHODS[name]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, evaluates and checkpoints `config.method`; returns its final metrics.

  Rerunning with the same `workdir` resumes from the latest checkpoint (of the
  stage a pipeline was in) and ends with exactly the metrics of an
  uninterrupted run. `config.dataset` names any data set `load_dataset` knows,
  including those added with `labeljax.data.register_dataset`.
  """
  config_checks.check_config(config)  # before any data loads
  config_checks.check_workdir(config, workdir)
  if config.method in PIPELINES:
    return PIPELINES[config.method](config, workdir)
  return trainer.train_single_stage(config, workdir, get_method(config.method))
