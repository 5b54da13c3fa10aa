"""Label budgets: which training examples keep their label.

`split_labels` carves a validation set out of the training split, then keeps
the labels of a class-balanced, seeded sample of the rest; everything else is
unlabeled. The same seed always gives the same split.
"""

from typing import NamedTuple

import numpy as np


class LabelSplit(NamedTuple):
  """Disjoint index sets into the training split."""
  labeled: np.ndarray     # int64, sorted
  unlabeled: np.ndarray   # int64, sorted
  validation: np.ndarray  # int64, sorted


def per_class_budget(num_classes: int, *, num_labels_per_class: int | None = None,
                     num_labels: int | None = None,
                     rng: np.random.Generator) -> np.ndarray:
  """Labels to keep per class; a total is spread evenly, the remainder at random."""
  if (num_labels_per_class is None) == (num_labels is None):
    raise ValueError("Give exactly one of num_labels_per_class and num_labels.")
  if num_labels_per_class is not None:
    if num_labels_per_class < 1:
      raise ValueError(f"num_labels_per_class must be >= 1, got {num_labels_per_class}.")
    return np.full(num_classes, num_labels_per_class)
  if num_labels < num_classes:
    raise ValueError(f"num_labels={num_labels} is smaller than the number of classes "
                     f"({num_classes}); every class needs at least one label.")
  budget = np.full(num_classes, num_labels // num_classes)
  budget[rng.choice(num_classes, num_labels % num_classes, replace=False)] += 1
  return budget


def split_labels(labels: np.ndarray, num_classes: int, *,
                 num_labels_per_class: int | None = None,
                 num_labels: int | None = None, num_validation: int = 0,
                 num_unlabeled: int | None = None, seed: int = 0) -> LabelSplit:
  """Seeded labeled / unlabeled / validation split of a training split.

  Args:
    labels: [n] integer labels of the training split.
    num_classes: number of classes; labels must lie in [0, num_classes).
    num_labels_per_class: labels kept per class, or
    num_labels: labels kept in total (balanced over classes); -1 keeps all.
    num_validation: examples moved to the validation set (random, before the
      budget is drawn, so validation never shrinks the budget's pool silently).
    num_unlabeled: keep a random subset of this many unlabeled examples (a
      smaller pool, e.g. for a quick run); None keeps them all.
    seed: the split is a pure function of the seed.

  Returns:
    A `LabelSplit` of sorted, disjoint index arrays covering the split.
  """
  labels = np.asarray(labels)
  check_labels(labels, num_classes)
  if not 0 <= num_validation < len(labels):
    raise ValueError(f"num_validation={num_validation} must be in [0, {len(labels)}).")
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))
  validation, pool = order[:num_validation], order[num_validation:]
  if num_labels == -1:
    if num_unlabeled is not None:
      raise ValueError(f"num_unlabeled={num_unlabeled} with num_labels=-1: every "
                       "example is labeled, none is left unlabeled.")
    return LabelSplit(np.sort(pool), np.zeros(0, np.int64), np.sort(validation))
  budget = per_class_budget(num_classes, num_labels_per_class=num_labels_per_class,
                            num_labels=num_labels, rng=rng)
  labeled = []
  for c in range(num_classes):
    members = pool[labels[pool] == c]  # Already in random order.
    if budget[c] > len(members):
      raise ValueError(
          f"Label budget of {budget[c]} for class {c} exceeds the {len(members)} "
          "examples of that class available for labeling.")
    labeled.append(members[:budget[c]])
  labeled = np.sort(np.concatenate(labeled))
  unlabeled = np.setdiff1d(pool, labeled)
  if num_unlabeled is not None:
    if not 1 <= num_unlabeled <= len(unlabeled):
      raise ValueError(f"num_unlabeled={num_unlabeled} must be None or in "
                       f"[1, {len(unlabeled)}] (the unlabeled examples there are).")
    # Its own stream: the labeled and validation draws stay as without it.
    subset = np.random.default_rng([seed, 1]).permutation(len(unlabeled))[:num_unlabeled]
    unlabeled = np.sort(unlabeled[subset])
  return LabelSplit(labeled.astype(np.int64), unlabeled.astype(np.int64),
                    np.sort(validation).astype(np.int64))


def check_labels(labels: np.ndarray, num_classes: int) -> None:
  """Raises if labels are not integers in [0, num_classes)."""
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"Labels must be integers, got dtype {labels.dtype}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"Label ids must lie in [0, {num_classes}); found values in "
                     f"[{labels.min()}, {labels.max()}].")
