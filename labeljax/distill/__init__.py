"""Semi-supervised distillation methods as pure functions.

    method = get_method("slam", coverage=0.9)
    fitted = method.fit(teacher_val_logits, val_labels, None)
    loss, metrics = method.loss(fitted, student_logits, teacher_logits, None)

See `common` for how a trainer drives a `Method` (fit, select, loss).
"""

from labeljax.distill import active
from labeljax.distill import kd
from labeljax.distill import noisy_student
from labeljax.distill import slam
from labeljax.distill import weighted
from labeljax.distill.common import Calibration
from labeljax.distill.common import Method
from labeljax.distill.common import mix_with_labeled
from labeljax.distill.common import Selection
from labeljax.validation import build_from_registry, default_hparams

_FACTORIES = {
    "kd": kd.kd,
    "noisy_student": noisy_student.noisy_student,
    "weighted": weighted.weighted,
    "slam": slam.slam,
    "rad": active.rad,
    "margin": active.margin,
    "random": active.random,
}
METHODS = tuple(_FACTORIES)


def default_hyperparameters(name: str) -> dict:
  """`name`'s scalar hyper-parameters and their defaults ({} for unknown names)."""
  return default_hparams(_FACTORIES, name)


def get_method(name: str, **hparams) -> Method:
  """The distillation method `name` with its hyper-parameters (defaults: the papers')."""
  return build_from_registry("distillation method", _FACTORIES, name, hparams)


__all__ = ["METHODS", "Calibration", "Method", "Selection", "default_hyperparameters",
           "get_method",
           "mix_with_labeled"]
