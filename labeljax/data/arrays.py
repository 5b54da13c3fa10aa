"""Your own data: in-memory arrays -> a `Dataset` every method can train on.

    from labeljax import data
    data.register_dataset("my_digits", data.from_arrays(
        "my_digits", train=(x_train, y_train), test=(x_test, y_test)))
    config.dataset = "my_digits"   # any method, pipelines included

A split is `(inputs, labels)`, or `(numeric, labels, categorical)` for tabular
data with categorical columns:

* images: `[n, H, W, C]` (C = 1 or 3) or `[n, H, W]`; uint8 in [0, 255], any
  other integer type in [0, 255], or floats in [0, 1]. They are stored as
  uint8, the pipeline's format: floats become round(255 x).
* tabular: float features `[n, d]` (NaN marks a missing value) and optional
  integer codes `[n, c]` (-1 = missing). As for the shipped tabular data
  sets, numeric columns are standardized and categorical ones one-hot encoded
  with statistics of the train split only; the raw codes stay available for
  feature bags (`bagging=feature`, `bag_columns` from `categorical_names`).
* labels: integers in [0, num_classes); `num_classes` defaults to the largest
  training label + 1.

Every problem (shapes, dtypes, label range, NaN, pixel range) raises a
ValueError naming the split and what is wrong, before any training starts.
"""

from typing import Sequence

import numpy as np

from labeljax.data import builders
from labeljax.data import tabular
from labeljax.data.datasets import DataInfo, Dataset, Examples


def _split_arrays(split: str, arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  if not isinstance(arrays, (tuple, list)) or len(arrays) not in (2, 3):
    raise ValueError(f"{split}: expected (inputs, labels) or (numeric, labels, "
                     f"categorical), got {type(arrays).__name__}"
                     f"{f' of length {len(arrays)}' if hasattr(arrays, '__len__') else ''}.")
  inputs, labels = np.asarray(arrays[0]), np.asarray(arrays[1])
  categorical = np.asarray(arrays[2]) if len(arrays) == 3 else None
  if labels.ndim != 1:
    raise ValueError(f"{split}: labels must be 1-D [n], got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{split}: labels must be integers, got dtype {labels.dtype}.")
  if len(inputs) != len(labels):
    raise ValueError(f"{split}: {len(inputs)} inputs but {len(labels)} labels.")
  if not len(labels):
    raise ValueError(f"{split}: no examples.")
  if categorical is not None:
    if inputs.ndim != 2:
      raise ValueError(f"{split}: categorical columns go with tabular features "
                       f"[n, d], got inputs of shape {inputs.shape}.")
    if categorical.ndim != 2 or len(categorical) != len(labels):
      raise ValueError(f"{split}: categorical codes must be [n, c] with n = "
                       f"{len(labels)}, got shape {categorical.shape}.")
    if not np.issubdtype(categorical.dtype, np.integer) or (categorical < -1).any():
      raise ValueError(f"{split}: categorical codes must be integers >= -1 "
                       f"(-1 = missing), got dtype {categorical.dtype}, "
                       f"min {categorical.min()}.")
  return inputs, labels.astype(np.int32), categorical


def _as_uint8_images(split: str, images: np.ndarray) -> np.ndarray:
  """Validates images and returns them as uint8 [n, H, W, C]."""
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{split}: images must be [n, H, W, C] with C = 1 or 3, or "
                     f"[n, H, W]; got shape {images.shape}.")
  if images.dtype == np.uint8:
    return images
  if np.issubdtype(images.dtype, np.floating):
    if not np.isfinite(images).all():
      bad = np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(1))
      raise ValueError(f"{split}: {len(bad)} images hold NaN/inf (first rows "
                       f"{bad[:5].tolist()}).")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
      raise ValueError(f"{split}: float images must lie in [0, 1], got values in "
                       f"[{low:.4g}, {high:.4g}]; pass uint8 for [0, 255].")
    return np.round(images * 255).astype(np.uint8)
  if np.issubdtype(images.dtype, np.integer):
    low, high = int(images.min()), int(images.max())
    if low < 0 or high > 255:
      raise ValueError(f"{split}: integer images must lie in [0, 255], got values "
                       f"in [{low}, {high}].")
    return images.astype(np.uint8)
  raise ValueError(f"{split}: images must be uint8, integer or float, got "
                   f"dtype {images.dtype}.")


def from_arrays(name: str, train, test, validation=None, *,
                num_classes: int | None = None,
                class_names: Sequence[str] | None = None,
                categorical_names: dict[str, Sequence[str]] | None = None) -> Dataset:
  """A `Dataset` from host arrays, checked and preprocessed like a shipped one.

  Args:
    name: the data set's name (what `config.dataset` will say).
    train, test, validation: splits, each `(inputs, labels)` or `(numeric,
      labels, categorical)`. Without `validation`, methods hold out
      `config.num_validation` training examples, as for the shipped data.
    num_classes: default: the largest training label + 1.
    class_names: one per class; default "0", "1", ...
    categorical_names: column name -> vocabulary (value names) of each
      categorical column, in order; default "c0", "c1", ... with vocabularies
      as large as the largest code seen in training + 1.

  Returns:
    A `Dataset`; pass it to `register_dataset` to train on it by name.
  """
  splits = {"train": train, "test": test}
  if validation is not None:
    splits["validation"] = validation
  arrays = {s: _split_arrays(f"{name}/{s}", a) for s, a in splits.items()}
  train_inputs, train_labels, train_categorical = arrays["train"]
  num_classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
  if num_classes < 2:
    raise ValueError(f"{name}: need at least 2 classes, got num_classes={num_classes}.")
  for split, (inputs, labels, categorical) in arrays.items():
    if labels.min() < 0 or labels.max() >= num_classes:
      raise ValueError(f"{name}/{split}: labels must be in [0, {num_classes}), got "
                       f"values in [{labels.min()}, {labels.max()}].")
    if inputs.shape[1:] != train_inputs.shape[1:]:
      raise ValueError(f"{name}/{split}: inputs of shape [n, *{inputs.shape[1:]}] "
                       f"differ from train's [n, *{train_inputs.shape[1:]}].")
    if (categorical is None) != (train_categorical is None) or (
        categorical is not None and categorical.shape[1] != train_categorical.shape[1]):
      raise ValueError(f"{name}/{split}: categorical columns differ from train's.")
  if class_names is None:
    class_names = tuple(str(c) for c in range(num_classes))
  if len(class_names) != num_classes:
    raise ValueError(f"{name}: {len(class_names)} class names for {num_classes} classes.")

  if train_inputs.ndim == 2:  # tabular
    schema, examples = _tabular(name, arrays, categorical_names)
    kind, input_shape = "tabular", examples["train"].inputs.shape[1:]
  elif train_inputs.ndim in (3, 4):
    if categorical_names is not None:
      raise ValueError(f"{name}: categorical_names only apply to tabular data.")
    schema = None
    examples = {s: Examples(_as_uint8_images(f"{name}/{s}", x), y)
                for s, (x, y, _) in arrays.items()}
    kind, input_shape = "image", examples["train"].inputs.shape[1:]
  else:
    raise ValueError(f"{name}: inputs must be images [n, H, W(, C)] or tabular "
                     f"features [n, d], got shape {train_inputs.shape}.")
  info = DataInfo(name=name, kind=kind, num_classes=num_classes,
                  input_shape=tuple(input_shape), class_names=tuple(class_names),
                  schema=schema)
  return Dataset(info, examples["train"], examples["test"], examples.get("validation"))


def _tabular(name, arrays, categorical_names):
  """Fits the tabular preprocessing on train; the schema and every split."""
  numeric = {}
  for split, (inputs, _, _) in arrays.items():
    if not np.issubdtype(inputs.dtype, np.number):
      raise ValueError(f"{name}/{split}: tabular features must be numeric, got "
                       f"dtype {inputs.dtype}.")
    numeric[split] = inputs.astype(np.float32)
    if np.isinf(numeric[split]).any():
      raise ValueError(f"{name}/{split}: features hold inf; only NaN marks a "
                       "missing value.")
  train_categorical = arrays["train"][2]
  num_columns = 0 if train_categorical is None else train_categorical.shape[1]
  if categorical_names is None:
    vocab_sizes = ([] if train_categorical is None
                   else (train_categorical.max(axis=0) + 1).clip(1).tolist())
    categorical_names = {f"c{c}": tuple(str(v) for v in range(size))
                         for c, size in enumerate(vocab_sizes)}
  if len(categorical_names) != num_columns:
    raise ValueError(f"{name}: {len(categorical_names)} categorical names for "
                     f"{num_columns} categorical columns.")
  categorical_names = {k: tuple(v) for k, v in categorical_names.items()}
  schema = builders.TabularSchema(
      numeric=tuple(f"x{i}" for i in range(numeric["train"].shape[1])),
      categorical=categorical_names)
  codes = {s: (np.zeros((len(y), 0), np.int32) if c is None else c.astype(np.int32))
           for s, (_, y, c) in arrays.items()}
  prep = tabular.fit(numeric["train"], codes["train"],
                     tuple(len(v) for v in categorical_names.values()))
  examples = {s: Examples(tabular.transform(prep, numeric[s], codes[s]), y,
                          codes[s] if num_columns else None)
              for s, (_, y, _) in arrays.items()}
  return schema, examples
