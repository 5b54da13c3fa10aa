"""Checks of a run's config before any data loads: its values, and its workdir.

`check_config(config)` raises a ValueError naming the key, the value and the
allowed range for the first value out of range, so `learning_rate=-0.1` or
`num_steps=0` stop the run at once instead of training something else.
Keys a method does not use are skipped where absent; family-specific
hyper-parameters (an algorithm's `threshold`, ...) are checked by the
family's own constructors, also before data loads.
"""

import json
import numbers
import os
from typing import Callable

import jax
import ml_collections


def _integer(low: int) -> tuple[Callable, str]:
  def ok(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
  return ok, f">= {low} (an integer)"


def _real(test: Callable[[float], bool], text: str) -> tuple[Callable, str]:
  def ok(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and test(float(v))
  return ok, text


_AT_LEAST_1 = _integer(1)
_AT_LEAST_0 = _integer(0)
_POSITIVE = _real(lambda v: v > 0, "> 0")
_NONNEGATIVE = _real(lambda v: v >= 0, ">= 0")
_UNIT_INTERVAL = _real(lambda v: 0 <= v <= 1, "in [0, 1]")
_DECAY = _real(lambda v: 0 <= v < 1, "in [0, 1)")
_LABEL_BUDGET = (lambda v: v == -1 or _AT_LEAST_1[0](v), "-1 (every label) or >= 1 (an integer)")

# key (dotted) -> (test, allowed range); a key absent from a config is skipped.
CHECKS: dict[str, tuple[Callable, str]] = {
    "num_steps": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1,
    "eval_batch_size": _AT_LEAST_1,
    "log_every": _AT_LEAST_1,
    "eval_every": _AT_LEAST_1,
    "checkpoint_every": _AT_LEAST_1,
    "seed": _AT_LEAST_0,
    "num_labels": _LABEL_BUDGET,
    "num_validation": _AT_LEAST_0,
    "validation_fraction": _DECAY,
    "num_unlabeled": _AT_LEAST_1,
    "num_data_shards": _AT_LEAST_0,
    "ema_decay": _DECAY,
    "optimizer.learning_rate": _POSITIVE,
    "optimizer.weight_decay": _NONNEGATIVE,
    "optimizer.warmup_steps": _AT_LEAST_0,
    "optimizer.momentum": _DECAY,
    # Families' run settings (their algorithms check their own hyper-parameters).
    "uratio": _AT_LEAST_1,
    "bag_size": _AT_LEAST_1,
    "bag_min_size": _AT_LEAST_1,
    "bag_max_size": _AT_LEAST_1,
    "num_rounds": _AT_LEAST_1,
    "num_neighbors": _AT_LEAST_1,
    "knn_cells": _AT_LEAST_0,
    "knn_probes": _AT_LEAST_0,
    "bp_sweeps": _AT_LEAST_1,
    "bp_damping": _DECAY,
    "lambda_bag": _NONNEGATIVE,
    "lambda_sim": _NONNEGATIVE,
    "pseudo_threshold": _UNIT_INTERVAL,
    "bag_loss_weight": _NONNEGATIVE,
    "ot_epsilon": _POSITIVE,
    "ot_iters": _AT_LEAST_1,
    "teacher_steps": _AT_LEAST_1,
    "num_generations": _AT_LEAST_1,
    "temperature": _POSITIVE,
    "distill_temperature": _POSITIVE,
    "finetune.num_steps": _AT_LEAST_1,
    "distill.num_steps": _AT_LEAST_1,
}


def _lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()
# Every run needs these; elsewhere None means "not set" (e.g. no EMA).
_REQUIRED = ("num_steps", "batch_size", "eval_batch_size", "log_every", "eval_every",
             "checkpoint_every", "seed")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError on the first value outside its allowed range."""
  for key, (ok, allowed) in CHECKS.items():
    value = _lookup(config, key)
    if value is _MISSING or (value is None and key not in _REQUIRED):
      continue
    if not ok(value):
      raise ValueError(f"config.{key} must be {allowed}, got {value!r}.")
  per_class = config.get("num_labels_per_class")
  if per_class is not None and not _AT_LEAST_1[0](per_class):
    raise ValueError(f"config.num_labels_per_class must be None or >= 1 (an integer), "
                     f"got {per_class!r}.")


# Keys that cannot change a run's result: they may differ when it resumes.
RESUME_MAY_CHANGE = frozenset({"log_every", "eval_every", "checkpoint_every",
                               "eval_batch_size", "data_dir", "raw_data_dir"})

# Keys added to the configs after runs were recorded, with the value at which
# such a run may resume (as if recorded with it): the value that reproduces
# what the code did before the key existed; for warm_start_test_level its
# default, as only a finished run's final choice between its stages reads it,
# and every rerun makes that choice again.
ADDED_KEYS = {"features_from": None, "freeze_encoder": False, "full_batch": False,
              "warm_start_test_level": 0.05, "warm_start_prior_bias": True}


def _flat(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat


def _holds_a_run(workdir: str) -> bool:
  """Whether anything was trained in `workdir` (any stage's checkpoint or result)."""
  for root, dirs, files in os.walk(workdir):
    if "results.json" in files or (os.path.basename(root) == "checkpoints"
                                   and any(d.isdigit() for d in dirs)):
      return True
  return False


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records the config in `workdir/config.json`; a workdir that already holds
  a run of another config is refused, naming the keys that differ (only
  `RESUME_MAY_CHANGE` keys may, and `ADDED_KEYS` that the record predates, at
  their listed values), instead of silently resuming that run."""
  path = os.path.join(workdir, "config.json")
  # Through JSON, so tuples and lists compare equal.
  current = json.loads(json.dumps(config.to_dict(), default=str))
  if os.path.exists(path) and _holds_a_run(workdir):
    with open(path) as f:
      recorded = _flat(json.load(f))
    now = _flat(current)
    for key in now.keys() - recorded.keys():
      if key in ADDED_KEYS and now[key] == ADDED_KEYS[key]:
        recorded[key] = now[key]
    differ = sorted(k for k in recorded.keys() | now.keys()
                    if recorded.get(k, "<unset>") != now.get(k, "<unset>")
                    and k.rsplit(".", 1)[-1] not in RESUME_MAY_CHANGE)
    if differ:
      changes = ", ".join(f"{k}: {recorded.get(k, '<unset>')!r} -> {now.get(k, '<unset>')!r}"
                          for k in differ)
      raise ValueError(f"{workdir} holds a run of another config ({changes}). Give "
                       "this run another workdir, or delete that one to start afresh.")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
