"""Semi-supervised pseudo-labeling algorithms as pure functions.

    algorithm = get_algorithm("fixmatch", threshold=0.95)
    algo_state = algorithm.init(num_classes, num_unlabeled)

See `common` for how a train step drives an `Algorithm`.
"""

from labeljax.ssl import fixmatch
from labeljax.ssl import flexmatch
from labeljax.ssl import freematch
from labeljax.ssl import mean_teacher
from labeljax.ssl import pseudo_label
from labeljax.ssl import shrinkmatch
from labeljax.ssl import softmatch
from labeljax.ssl.common import Algorithm
from labeljax.ssl.common import PseudoLabels
from labeljax.ssl.common import unlabeled_objective
from labeljax.validation import build_from_registry, default_hparams

# Submodules keep their names; each defines a factory of the same name.
_FACTORIES = {
    "pseudo_label": pseudo_label.pseudo_label,
    "mean_teacher": mean_teacher.mean_teacher,
    "fixmatch": fixmatch.fixmatch,
    "flexmatch": flexmatch.flexmatch,
    "freematch": freematch.freematch,
    "softmatch": softmatch.softmatch,
    "shrinkmatch": shrinkmatch.shrinkmatch,
}
ALGORITHMS = tuple(_FACTORIES)


def default_hyperparameters(name: str) -> dict:
  """`name`'s scalar hyper-parameters and their defaults ({} for unknown names)."""
  return default_hparams(_FACTORIES, name)


def get_algorithm(name: str, **hparams) -> Algorithm:
  """The algorithm `name` with its hyper-parameters (defaults: the papers')."""
  return build_from_registry("semi-supervised algorithm", _FACTORIES, name, hparams)


__all__ = ["ALGORITHMS", "Algorithm", "PseudoLabels", "default_hyperparameters",
           "get_algorithm",
           "unlabeled_objective"]
