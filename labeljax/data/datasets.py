"""Loading a data set by name into host arrays.

`load_dataset(name)` prepares the offline builder on first use (process 0
prepares, the others wait), reads the splits through `as_data_source` (no
TensorFlow), and for tabular data fits the preprocessing on the train split
(its unlabeled features, validation rows included; never the test split).
Names added with `register_dataset` (your own arrays, see `arrays.py`) come
first. Any other name is looked up among the stock TFDS builders (cifar10,
svhn, ...) and used when its array_record data is already prepared.
"""

import contextlib
import io
import logging as std_logging
import os
import socket
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from jax.experimental import multihost_utils

from labeljax import file_lock
from labeljax.data import builders
from labeljax.data import tabular

DATA_DIR_ENV = "LABELJAX_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/labeljax/tensorflow_datasets"
STOCK_DATA_DIR_ENV = "TFDS_DATA_DIR"
_READ_CHUNK = 8192


class DataInfo(NamedTuple):
  name: str
  kind: str                      # "image" or "tabular"
  num_classes: int
  input_shape: tuple[int, ...]   # of one model input
  class_names: tuple[str, ...]
  schema: builders.TabularSchema | None = None


class Examples(NamedTuple):
  """One split in host memory."""
  inputs: np.ndarray                     # uint8 images [n, H, W, C] or float32 [n, d]
  labels: np.ndarray                     # int32 [n]
  categorical: np.ndarray | None = None  # tabular: raw codes [n, c], for feature bags

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, indices: np.ndarray) -> "Examples":
    return Examples(*(None if a is None else a[indices] for a in self))


class Dataset(NamedTuple):
  info: DataInfo
  train: Examples
  test: Examples
  validation: Examples | None = None  # only where the data set ships one


_REGISTERED: dict[str, "Dataset | Callable[[], Dataset]"] = {}


def register_dataset(name: str, source: "Dataset | Callable[[], Dataset]") -> None:
  """Makes `name` a data set every method and pipeline can train on.

  Args:
    name: what `config.dataset` says; it may replace an earlier registration
      but not a shipped data set.
    source: a `Dataset` (e.g. `from_arrays(...)`), or a function of no
      arguments that returns one, called at each load (for data too large to
      keep around between runs). A multi-process run registers it in every
      process.
  """
  if name in builders.OFFLINE_BUILDERS:
    raise ValueError(f"{name!r} is a shipped data set; register yours under another name.")
  if not (isinstance(source, Dataset) or callable(source)):
    raise ValueError(f"register_dataset({name!r}, ...) takes a Dataset or a function "
                     f"returning one, got {type(source).__name__}.")
  _REGISTERED[name] = source


def available_datasets() -> tuple[str, ...]:
  return (*builders.OFFLINE_BUILDERS, *_REGISTERED)


def data_dir_or_default(data_dir: str | None) -> str:
  return os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def _drop_tfds_chatter(record: std_logging.LogRecord) -> bool:
  """TFDS's progress notes ("Variant folder ... has no dataset_info.json",
  "Generating dataset", "Done writing ...") go; its errors stay."""
  return record.levelno >= std_logging.ERROR or "tensorflow_datasets" not in record.pathname


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS without its progress notes and prints ("Downloading and preparing
  dataset Unknown size ..." although the offline builders download nothing)."""
  logger = std_logging.getLogger("absl")
  logger.addFilter(_drop_tfds_chatter)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    logger.removeFilter(_drop_tfds_chatter)


def _prepare_once(make: Callable[[], tfds.core.DatasetBuilder], name: str,
                  data_dir: str, how: str) -> tfds.core.DatasetBuilder:
  """Prepares `make()`'s builder once. In a multi-process run process 0
  writes and the others wait; of runs started together on one machine, the
  first to take the lock writes and the others wait.

  `data_dir` must be a filesystem every process sees.
  """
  if jax.process_index() == 0:
    os.makedirs(data_dir, exist_ok=True)
    with file_lock.exclusive(os.path.join(data_dir, name)):
      builder = make()  # Another run may have prepared it while this one waited.
      if not builder.is_prepared():
        logging.info("Preparing %s %s into %s (once).", name, how, data_dir)
        start = time.perf_counter()
        tfds.disable_progress_bar()
        builder.download_and_prepare()
        logging.info("Prepared %s in %.0f s.", name, time.perf_counter() - start)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepared {name}")
  builder = make()  # TFDS reads the split metadata when a builder is made.
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"Process {jax.process_index()} does not see {name} prepared under "
        f"{data_dir}: the data dir must be shared by all processes.")
  return builder


def _offline_builder(name: str, data_dir: str | None,
                     raw_data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The offline builder of `name`, prepared from its original files; where
  they are missing (e.g. in Colab), the stock TFDS builder of the same name
  downloads them, if there is one and a network."""
  local_dir = data_dir_or_default(data_dir)
  make = lambda: builders.OFFLINE_BUILDERS[name](data_dir=local_dir,
                                                 raw_data_dir=raw_data_dir)
  builder = make()
  if builder.is_prepared():
    return builder
  try:
    builder.check_raw_files()  # Fails on every process with the same clear error.
  except builders.MissingRawDataError as missing:
    # A raw data dir given is where the files must be; without one, a machine
    # with a network (Colab) downloads instead.
    given = raw_data_dir or os.environ.get(builders.RAW_DATA_ENV)
    if given or name not in builders.STOCK_TFDS_NAMES or not _has_network():
      raise
    try:
      return _stock_builder(name, data_dir)
    except (FileNotFoundError, OSError) as failed:
      raise builders.MissingRawDataError(
          f"{missing}\nThe stock TFDS download of {name!r} failed too: {failed}") from None
  return _prepare_once(make, name, local_dir, "from its original files")


def _has_network(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """Whether TFDS's download host answers (seconds, not TFDS's minutes of retries)."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _stock_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """A stock TFDS data set in array_record format, downloaded and prepared
  once where there is a network (most builders need TensorFlow to prepare:
  pip install 'labeljax[tf]')."""
  data_dir = os.path.expanduser(data_dir or os.environ.get(STOCK_DATA_DIR_ENV)
                                or "~/tensorflow_datasets")
  make = lambda: tfds.builder(name, data_dir=data_dir, file_format="array_record")
  try:
    builder = make()
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(
        f"Unknown data set {name!r}. labeljax prepares offline: "
        f"{', '.join(available_datasets())}; any stock TFDS data set (cifar10, "
        "svhn_cropped, ...) is downloaded where there is a network; your own "
        "arrays: labeljax.data.register_dataset.") from None
  if builder.is_prepared():
    return builder
  how = (f"Prepare it where there is a network (pip install 'labeljax[tf]'; tfds build "
         f"{name} --file_format=array_record) and set {STOCK_DATA_DIR_ENV} (or "
         "data_dir) to that data dir.")
  if not _has_network():
    raise FileNotFoundError(f"Stock TFDS data set {name!r} is not prepared under "
                            f"{data_dir}, and there is no network to download it. {how}")
  try:
    return _prepare_once(make, name, data_dir, "from the stock TFDS download")
  except Exception as error:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f"Stock TFDS data set {name!r} is not prepared under {data_dir} and could "
        f"not be downloaded ({type(error).__name__}: {str(error)[:300]}). {how}") from error


def read_split(source, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  """Reads a whole random-access split into stacked numpy arrays."""
  columns = {k: [] for k in keys}
  for start in range(0, len(source), _READ_CHUNK):
    rows = source.__getitems__(range(start, min(start + _READ_CHUNK, len(source))))
    for k in keys:
      columns[k].append(np.stack([np.asarray(r[k]) for r in rows]))
  return {k: np.concatenate(v) for k, v in columns.items()}


def check_finite(inputs: np.ndarray, what: str) -> None:
  """Raises, naming the rows, if float features hold NaN or inf."""
  if np.issubdtype(inputs.dtype, np.floating) and not np.isfinite(inputs).all():
    bad = np.flatnonzero(~np.isfinite(inputs).reshape(len(inputs), -1).all(1))
    raise ValueError(f"{what}: {len(bad)} examples have NaN/inf features "
                     f"(first rows {bad[:5].tolist()}).")


def load_dataset(name: str, *, data_dir: str | None = None,
                 raw_data_dir: str | None = None) -> Dataset:
  """Loads every split of a data set into host memory.

  Args:
    name: one of `available_datasets()` (shipped or registered) or a stock
      TFDS data set.
    data_dir: where prepared array_record files live (default
      $LABELJAX_DATA_DIR or ~/.cache/labeljax/tensorflow_datasets; for stock
      TFDS data sets $TFDS_DATA_DIR or ~/tensorflow_datasets).
    raw_data_dir: where the original files are (see `builders`).
  """
  if name in _REGISTERED:
    source = _REGISTERED[name]
    dataset = source if isinstance(source, Dataset) else source()
    if not isinstance(dataset, Dataset):
      raise ValueError(f"The function registered for {name!r} returned "
                       f"{type(dataset).__name__}, not a Dataset (see from_arrays).")
    return dataset
  with _quiet_tfds():
    if name in builders.OFFLINE_BUILDERS:
      builder = _offline_builder(name, data_dir, raw_data_dir)
    else:
      builder = _stock_builder(name, data_dir)
  label_feature = builder.info.features["label"]
  splits = {s: builder.as_data_source(split=s) for s in builder.info.splits}
  if "train" not in splits or "test" not in splits:
    raise ValueError(f"{name} needs train and test splits, has {sorted(splits)}.")

  if isinstance(builder, builders.TabularBuilder):
    schema = builder.SCHEMA
    raw = {s: read_split(src, ("numeric", "categorical", "label"))
           for s, src in splits.items()}
    prep = tabular.fit(raw["train"]["numeric"], raw["train"]["categorical"],
                       tuple(len(v) for v in schema.categorical.values()))
    examples = {s: Examples(tabular.transform(prep, r["numeric"], r["categorical"]),
                            r["label"].astype(np.int32), r["categorical"])
                for s, r in raw.items()}
    kind, input_shape = "tabular", (prep.num_features,)
  else:
    schema = None
    raw = {s: read_split(src, ("image", "label")) for s, src in splits.items()}
    examples = {s: Examples(r["image"], r["label"].astype(np.int32))
                for s, r in raw.items()}
    kind, input_shape = "image", examples["train"].inputs.shape[1:]
  for split, ex in examples.items():
    check_finite(ex.inputs, f"{name}/{split}")
  info = DataInfo(name=name, kind=kind, num_classes=label_feature.num_classes,
                  input_shape=tuple(input_shape),
                  class_names=tuple(label_feature.names), schema=schema)
  return Dataset(info, examples["train"], examples["test"], examples.get("validation"))
