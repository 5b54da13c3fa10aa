"""The registry of training methods: name -> setup function.

A setup function `(config, data, mesh) -> trainer.Setup` builds the method's
loader (which streams or bags a batch holds) and its loss. Families add theirs
here.
"""

from labeljax.distill import training as distill_training
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.selfsup import training as selfsup_training
from labeljax.ssl import training as ssl_training
from labeljax.train import trainer


METHODS = {
    "supervised": trainer.supervised_setup,
    "dllp": llp_training.dllp,
    "easyllp": llp_training.easyllp,
    "ot": llp_training.ot,
    "pseudo_labeling": ssl_training.pseudo_labeling,
}


# Methods that run several training stages themselves: (config, workdir) -> results.
PIPELINES = {
    "llp_bp": llp_bp.train_and_evaluate,
    "distill": distill_training.train_and_evaluate,
    "simclr": selfsup_training.pretrain,
    "simclrv2": selfsup_training.simclrv2,
}


def get_method(name: str):
  """The setup function of a single-stage method (pipelines run themselves)."""
  if name in PIPELINES:
    raise ValueError(f"{name!r} runs several stages: use trainer.train_and_evaluate.")
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; choose one of "
                     f"{sorted([*METHODS, *PIPELINES])}.")
  return METHODS[name]
