"""Checks shared by every family: fail on bad hyper-parameters with a clear
message at construction time, not deep inside a traced function; and the
registry lookup that builds an algorithm from its name and hyper-parameters."""

import inspect
from typing import Any, Callable


def check_threshold(name: str, value: float) -> None:
  if not 0.0 < value <= 1.0:
    raise ValueError(f"{name} must be a probability threshold in (0, 1], got {value}.")


def check_momentum(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name} must be an EMA momentum in [0, 1), got {value}.")


def check_fraction(name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{name} must be a fraction in [0, 1], got {value}.")


def check_positive(name: str, value: float) -> None:
  if not value > 0.0:
    raise ValueError(f"{name} must be > 0, got {value}.")


def check_nonnegative(name: str, value: float) -> None:
  if not value >= 0.0:
    raise ValueError(f"{name} must be >= 0, got {value}.")


def default_hparams(factories: dict[str, Callable[..., Any]], name: str) -> dict[str, Any]:
  """The scalar hyper-parameters of `factories[name]` with their defaults, e.g.
  to spell them out in a config, where a command-line flag can then set them."""
  if name not in factories:
    return {}
  return {p.name: p.default for p in inspect.signature(factories[name]).parameters.values()
          if isinstance(p.default, (bool, int, float, str))}


def build_from_registry(kind: str, factories: dict[str, Callable[..., Any]],
                        name: str, hparams: dict[str, Any]) -> Any:
  """`factories[name](**hparams)`; unknown names or hyper-parameters list the choices."""
  if name not in factories:
    raise ValueError(f"Unknown {kind} {name!r}; choose one of {tuple(factories)}.")
  accepted = tuple(inspect.signature(factories[name]).parameters)
  unknown = sorted(set(hparams) - set(accepted))
  if unknown:
    raise ValueError(f"{name} has no hyper-parameters {unknown}; it accepts {accepted}.")
  return factories[name](**hparams)
