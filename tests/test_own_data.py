"""Your own data: in-memory arrays registered by name train every family."""

import numpy as np
import pytest

from conftest import quadrant_images
from experiments.configs import distill, llp, ssl
from labeljax import data, methods


def _tabular(n, seed):
  """Binary labels; one informative numeric column, one categorical column."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  numeric = rng.normal(size=(n, 3)) + 2.0 * labels[:, None] * np.array([1, 0, 0])
  numeric[rng.random((n, 3)) < 0.05] = np.nan  # missing values are allowed
  categorical = rng.integers(-1, 3, (n, 1))
  return numeric, labels, categorical


@pytest.fixture(scope="module", autouse=True)
def registered():
  data.register_dataset("toy_images", data.from_arrays(
      "toy_images", train=quadrant_images(512, 0), test=quadrant_images(256, 1)))
  # A function is called at each load: data built (or read) only when needed.
  data.register_dataset("toy_tabular", lambda: data.from_arrays(
      "toy_tabular", train=_tabular(2048, 2), test=_tabular(512, 3),
      categorical_names={"colour": ("red", "green", "blue")}))


def _quick(config, steps):
  config.num_steps = steps
  config.log_every = config.eval_every = config.checkpoint_every = steps
  return config


def test_fixmatch_on_in_memory_images(tmp_path):
  config = _quick(ssl.get_config("dataset=toy_images,algorithm=fixmatch,num_labels=40,"
                                 "num_validation=64,batch_size=16,uratio=2"), 60)
  results = methods.train_and_evaluate(config, str(tmp_path))
  assert results["test"]["accuracy"] > 0.6  # chance: 0.25


def test_dllp_on_in_memory_tabular_data_with_feature_bags(tmp_path):
  config = _quick(llp.get_config("dataset=toy_tabular,method=dllp,bag_size=16,model=mlp"), 60)
  results = methods.train_and_evaluate(config, str(tmp_path / "random"))
  assert results["test"]["auc"] > 0.8
  config = _quick(llp.get_config("dataset=toy_tabular,method=dllp,bagging=feature,model=mlp"), 2)
  config.bag_columns, config.bag_min_size = ("colour",), 1
  assert methods.train_and_evaluate(config, str(tmp_path / "feature"))["step"] == 2


def test_distillation_on_in_memory_images(tmp_path):
  config = _quick(distill.get_config("dataset=toy_images,method=kd,num_labels=40,"
                                     "teacher_steps=60"), 30)
  config.num_validation = 64
  results = methods.train_and_evaluate(config, str(tmp_path))
  assert results["test"]["accuracy"] > 0.6


def test_float_images_are_stored_as_uint8_like_the_shipped_ones():
  images, labels = quadrant_images(8, 0)
  dataset = data.from_arrays("x", train=(images, labels), test=(images, labels))
  assert dataset.info.kind == "image" and dataset.info.input_shape == (16, 16, 1)
  assert dataset.train.inputs.dtype == np.uint8
  np.testing.assert_array_equal(dataset.train.inputs[..., 0], np.round(images * 255))


_GOOD = quadrant_images(8, 0)


@pytest.mark.parametrize("train, kwargs, message", [
    ((_GOOD[0] * 255, _GOOD[1]), {}, r"x/train: float images must lie in \[0, 1\]"),
    ((np.full((8, 16, 16), np.nan, np.float32), _GOOD[1]), {}, "8 images hold NaN"),
    ((_GOOD[0].astype(np.int32) - 1, _GOOD[1]), {}, r"integer images must lie in \[0, 255\]"),
    ((_GOOD[0][:4], _GOOD[1]), {}, "4 inputs but 8 labels"),
    ((_GOOD[0], _GOOD[1].astype(float)), {}, "labels must be integers"),
    ((_GOOD[0], _GOOD[1] - 1), {}, r"labels must be in \[0, 3\)"),
    ((_GOOD[0], _GOOD[1]), {"num_classes": 2}, r"x/train: labels must be in \[0, 2\)"),
    ((_GOOD[0][..., None].repeat(2, -1), _GOOD[1]), {}, "C = 1 or 3"),
    ((_GOOD[0], _GOOD[1]), {"class_names": ("a",)}, "1 class names for 4 classes"),
    ((np.full((8, 2), np.inf), _GOOD[1]), {}, "features hold inf"),
    ((np.zeros((8, 2)), _GOOD[1], np.full((8, 1), -2)), {}, "codes must be integers >= -1"),
    ((_GOOD[0],), {}, r"expected \(inputs, labels\)"),
])
def test_bad_arrays_get_clear_errors(train, kwargs, message):
  test = _GOOD if np.ndim(train[0]) == 3 else train
  with pytest.raises(ValueError, match=message):
    data.from_arrays("x", train=train, test=test, **kwargs)


def test_registration_errors():
  with pytest.raises(ValueError, match="'mnist' is a shipped data set"):
    data.register_dataset("mnist", data.from_arrays("mnist", train=_GOOD, test=_GOOD))
  data.register_dataset("broken", lambda: "not a dataset")
  with pytest.raises(ValueError, match="returned str, not a Dataset"):
    data.load_dataset("broken")
