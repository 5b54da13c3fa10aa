"""Bags for learning from label proportions, as segment ids.

A bagging assigns each instance a bag id in [0, num_bags), or -1 when the
instance is in no bag. Bag math then uses segment sums over `bag_ids`, so
variable bag sizes need no padding. Each bag carries its label counts (the
only supervision LLP has) and proportions.

Two bag constructions:
* `random_bags`: a seeded random partition into bags of a fixed size.
* `feature_bags`: instances grouped by the values of chosen categorical columns,
  keeping only groups whose size lies in [min_size, max_size] (LLP-Bench,
  Brahmbhatt et al. 2023, uses 50-2500).
"""

from typing import NamedTuple

import numpy as np

from labeljax.data import budgets


class Bags(NamedTuple):
  bag_ids: np.ndarray       # [n] int32, -1 for instances in no bag
  sizes: np.ndarray         # [num_bags] int64
  label_counts: np.ndarray  # [num_bags, num_classes] int64

  @property
  def num_bags(self) -> int:
    return len(self.sizes)

  @property
  def proportions(self) -> np.ndarray:
    return self.label_counts / self.sizes[:, None]

  @property
  def positive_counts(self) -> np.ndarray:
    """Positives per bag, for binary labels."""
    if self.label_counts.shape[1] != 2:
      raise ValueError("positive_counts is defined for binary labels only.")
    return self.label_counts[:, 1]


def make_bags(bag_ids: np.ndarray, labels: np.ndarray, num_classes: int) -> Bags:
  """Bags from bag ids; counts are the sums of the instances' labels."""
  bag_ids = np.asarray(bag_ids, np.int32)
  budgets.check_labels(labels, num_classes)
  if bag_ids.shape != labels.shape:
    raise ValueError(f"bag_ids {bag_ids.shape} and labels {labels.shape} differ in shape.")
  if bag_ids.size and bag_ids.min() < -1:
    raise ValueError(f"Bag ids must be >= 0, or -1 for an unbagged instance; got "
                     f"{bag_ids.min()}.")
  num_bags = int(bag_ids.max()) + 1 if bag_ids.size else 0
  bagged = bag_ids >= 0
  sizes = np.bincount(bag_ids[bagged], minlength=num_bags)
  if (sizes == 0).any():
    raise ValueError(f"Bag ids must be contiguous; bags {np.flatnonzero(sizes == 0)[:5]} are empty.")
  counts = np.zeros((num_bags, num_classes), np.int64)
  np.add.at(counts, (bag_ids[bagged], labels[bagged]), 1)
  return Bags(bag_ids, sizes.astype(np.int64), counts)


def random_bags(labels: np.ndarray, num_classes: int, bag_size: int,
                seed: int = 0, drop_remainder: bool = False) -> Bags:
  """Random partition into bags of `bag_size`.

  When `bag_size` does not divide n, the last bag is smaller, or with
  `drop_remainder` its instances are left unbagged (bag id -1).
  """
  n = len(labels)
  if not 1 <= bag_size <= n:
    raise ValueError(f"bag_size must be in [1, {n}] (the number of instances), got {bag_size}.")
  perm = np.random.default_rng(seed).permutation(n)
  bag_ids = np.empty(n, np.int32)
  bag_ids[perm] = np.arange(n) // bag_size
  if drop_remainder and n % bag_size:
    bag_ids[bag_ids == n // bag_size] = -1
  return make_bags(bag_ids, labels, num_classes)


def feature_bags(labels: np.ndarray, num_classes: int, categorical: np.ndarray,
                 columns: tuple[int, ...], min_size: int = 50,
                 max_size: int = 2500) -> Bags:
  """Bags of instances sharing the values of `columns` of `categorical` [n, c].

  Groups smaller than `min_size` or larger than `max_size` are dropped, their
  instances left unbagged, as in LLP-Bench. Bag ids follow the sorted group keys.
  """
  if not columns:
    raise ValueError("feature_bags needs at least one categorical column.")
  if categorical.ndim != 2 or len(categorical) != len(labels):
    raise ValueError(f"categorical must be [n, c] with n={len(labels)}, got {categorical.shape}.")
  bad = [c for c in columns if not 0 <= c < categorical.shape[1]]
  if bad:
    raise ValueError(f"Columns {bad} out of range; there are {categorical.shape[1]} categorical columns.")
  if not 1 <= min_size <= max_size:
    raise ValueError(f"Need 1 <= min_size <= max_size, got {min_size}, {max_size}.")
  _, group, sizes = np.unique(categorical[:, list(columns)], axis=0,
                              return_inverse=True, return_counts=True)
  group = group.reshape(-1)
  keep = (sizes >= min_size) & (sizes <= max_size)
  if not keep.any():
    raise ValueError(f"No group of columns {columns} has a size in [{min_size}, {max_size}]; "
                     f"group sizes range over [{sizes.min()}, {sizes.max()}].")
  new_id = np.where(keep, np.cumsum(keep) - 1, -1)
  return make_bags(new_id[group], labels, num_classes)
