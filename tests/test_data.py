"""Data: builders, preprocessing, label budgets, bags."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_raw_data
from labeljax import data
from labeljax.data import builders, datasets, tabular


@pytest.fixture(scope="module")
def adult():
  return data.load_dataset("adult")


# --------------------------------------------------------------------------
# Offline builders.
# --------------------------------------------------------------------------


def test_adult_loads_from_shipped_files_with_expected_sizes(adult):
  assert len(adult.train) == 32561 and len(adult.test) == 16281
  assert adult.info.kind == "tabular" and adult.info.num_classes == 2
  assert adult.train.inputs.dtype == np.float32
  assert adult.train.inputs.shape[1] == adult.info.input_shape[0]
  # 24.1% of Adult's training records earn >50K.
  assert abs(adult.train.labels.mean() - 0.2408) < 1e-3
  assert np.isfinite(adult.train.inputs).all()


def test_adult_raw_file_is_byte_identical_to_the_published_one():
  raw = builders.read_raw_file("adult", "adult.data",
                               builders.Adult.RAW_FILES["adult.data"],
                               raw_data_dir="/nonexistent")
  assert len(raw) == 3974305


@requires_raw_data
@pytest.mark.parametrize("name,train,test,shape", [
    ("mnist", 60000, 10000, (28, 28, 1)),
    ("fashion_mnist", 60000, 10000, (28, 28, 1)),
    ("bank_marketing", 36169, 9042, None),
    ("llp_bp_bank", 27126, 9043, (16,)),
])
def test_real_datasets_load(name, train, test, shape):
  ds = data.load_dataset(name)
  assert (len(ds.train), len(ds.test)) == (train, test)
  if shape:
    assert ds.info.input_shape == shape
  if name == "llp_bp_bank":
    assert len(ds.validation) == 9042
  if ds.info.kind == "image":
    assert ds.train.inputs.dtype == np.uint8
    assert np.bincount(ds.test.labels).tolist() == (
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        if name == "mnist" else [1000] * 10)


def test_concurrent_runs_prepare_a_data_set_once(tmp_path):
  # A sweep starts several runs at once on a fresh machine; all of them find
  # the data set unprepared, and only one may write it.
  load = ("from labeljax import data; "
          f"print(len(data.load_dataset('adult', data_dir={str(tmp_path)!r}).train.labels))")
  # Logs go to files: a run blocked on a full stderr pipe while holding the
  # lock would stall the others.
  logs = [tmp_path / f"run_{i}.log" for i in range(3)]
  procs = []
  for log in logs:
    with open(log, "w") as stderr:
      procs.append(subprocess.Popen([sys.executable, "-c", load], text=True,
                                    stdout=subprocess.PIPE, stderr=stderr))
  for proc, log in zip(procs, logs):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert out.split()[-1] == "32561"


def test_missing_raw_files_say_where_they_looked(tmp_path):
  with pytest.raises(data.MissingRawDataError, match="mnist/train-images") as e:
    data.load_dataset("mnist", data_dir=str(tmp_path / "prepared"),
                      raw_data_dir=str(tmp_path / "raw"))
  assert str(tmp_path / "raw") in str(e.value)
  assert "LABELJAX_RAW_DATA_DIR" in str(e.value)


def test_corrupt_raw_file_is_rejected(tmp_path):
  (tmp_path / "adult").mkdir()
  (tmp_path / "adult" / "adult.data").write_text("not the original\n")
  with pytest.raises(ValueError, match="md5"):
    builders.read_raw_file("adult", "adult.data",
                           builders.Adult.RAW_FILES["adult.data"], str(tmp_path))


def test_unknown_dataset_lists_choices():
  with pytest.raises(ValueError, match="adult, bank_marketing"):
    data.load_dataset("no_such_dataset_xyz")


def test_parse_idx_round_trip():
  import gzip
  images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape)
  assert np.array_equal(builders.parse_idx(gzip.compress(header + images.tobytes())),
                        images)


# --------------------------------------------------------------------------
# Tabular preprocessing.
# --------------------------------------------------------------------------


def test_preprocessing_uses_train_statistics_only():
  rng = np.random.default_rng(0)
  train_num = rng.normal(5.0, 2.0, size=(100, 2)).astype(np.float32)
  train_num[3, 1] = np.nan
  train_cat = rng.integers(-1, 3, size=(100, 1))
  prep = tabular.fit(train_num, train_cat, vocab_sizes=(3,))
  np.testing.assert_allclose(prep.mean, np.nanmean(train_num, 0), rtol=1e-6)
  # Test rows far from the train distribution do not move the statistics.
  test_num = np.array([[100.0, np.nan]], np.float32)
  out = tabular.transform(prep, test_num, np.array([[2]]))
  np.testing.assert_allclose(out[0, 0], (100.0 - prep.mean[0]) / prep.std[0], rtol=1e-6)
  assert out[0, 1] == 0.0 and out[0, 2] == 1.0  # imputed + missing indicator
  np.testing.assert_array_equal(out[0, 3:], [0, 0, 1, 0])  # one-hot incl. missing slot
  assert out.shape[1] == prep.num_features == 2 + 1 + 4


def test_preprocessing_rejects_inf_and_bad_codes():
  prep = tabular.fit(np.zeros((3, 1), np.float32), np.zeros((3, 1), int), (2,))
  with pytest.raises(ValueError, match="inf"):
    tabular.transform(prep, np.array([[np.inf]], np.float32), np.zeros((1, 1), int))
  with pytest.raises(ValueError, match="codes outside"):
    tabular.transform(prep, np.zeros((1, 1), np.float32), np.array([[5]]))


# --------------------------------------------------------------------------
# Label budgets.
# --------------------------------------------------------------------------


def test_budget_has_exactly_n_per_class_and_is_deterministic():
  labels = np.random.default_rng(0).integers(0, 10, 5000)
  a = data.split_labels(labels, 10, num_labels_per_class=7, num_validation=500, seed=3)
  b = data.split_labels(labels, 10, num_labels_per_class=7, num_validation=500, seed=3)
  c = data.split_labels(labels, 10, num_labels_per_class=7, num_validation=500, seed=4)
  assert np.bincount(labels[a.labeled], minlength=10).tolist() == [7] * 10
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.labeled, c.labeled)
  everything = np.concatenate(a)
  assert len(everything) == len(np.unique(everything)) == 5000  # disjoint, covering


def test_total_budget_is_balanced():
  labels = np.repeat(np.arange(10), 100)
  split = data.split_labels(labels, 10, num_labels=105, seed=0)
  counts = np.bincount(labels[split.labeled], minlength=10)
  assert counts.sum() == 105 and set(counts.tolist()) == {10, 11}


def test_a_smaller_unlabeled_pool_is_a_seeded_subset_leaving_the_rest_alone():
  labels = np.random.default_rng(0).integers(0, 10, 5000)
  full = data.split_labels(labels, 10, num_labels=100, num_validation=500, seed=3)
  small = data.split_labels(labels, 10, num_labels=100, num_validation=500,
                            num_unlabeled=1000, seed=3)
  np.testing.assert_array_equal(small.labeled, full.labeled)
  np.testing.assert_array_equal(small.validation, full.validation)
  assert len(small.unlabeled) == 1000 and np.isin(small.unlabeled, full.unlabeled).all()
  assert np.all(np.diff(small.unlabeled) > 0)
  # Spread over the split, not its first rows.
  assert small.unlabeled.max() > 4000
  with pytest.raises(ValueError, match=r"num_unlabeled=4401 must be None or in \[1, 4400\]"):
    data.split_labels(labels, 10, num_labels=100, num_validation=500, num_unlabeled=4401)
  with pytest.raises(ValueError, match="num_unlabeled=10 with num_labels=-1"):
    data.split_labels(labels, 10, num_labels=-1, num_unlabeled=10)


def test_budget_errors():
  labels = np.array([0] * 5 + [1] * 50)
  with pytest.raises(ValueError, match="class 0"):
    data.split_labels(labels, 2, num_labels_per_class=6)
  with pytest.raises(ValueError, match=r"Label ids must lie in \[0, 2\)"):
    data.split_labels(np.array([0, 1, 2]), 2, num_labels_per_class=1)


# --------------------------------------------------------------------------
# Bags.
# --------------------------------------------------------------------------


def test_random_bag_counts_equal_label_sums():
  labels = np.random.default_rng(1).integers(0, 2, 1003)
  bags = data.random_bags(labels, 2, bag_size=10, seed=0)
  assert bags.num_bags == 101 and bags.sizes[:-1].tolist() == [10] * 100
  for b in range(bags.num_bags):
    assert bags.positive_counts[b] == labels[bags.bag_ids == b].sum()
  np.testing.assert_allclose(bags.proportions.sum(1), 1.0)
  dropped = data.random_bags(labels, 2, bag_size=10, drop_remainder=True)
  assert (dropped.bag_ids == -1).sum() == 3 and dropped.num_bags == 100


def test_random_bags_count_every_class():
  """Multi-class LLP-BP reads the per-class counts [num_bags, C]."""
  labels = np.random.default_rng(2).integers(0, 10, 1003)
  bags = data.random_bags(labels, 10, bag_size=16, seed=0)
  for b in range(bags.num_bags):
    np.testing.assert_array_equal(bags.label_counts[b],
                                  np.bincount(labels[bags.bag_ids == b], minlength=10))
  np.testing.assert_array_equal(bags.label_counts.sum(1), bags.sizes)
  with pytest.raises(ValueError, match="positive_counts is defined for binary labels only"):
    bags.positive_counts


def test_feature_bags_respect_size_limits(adult):
  columns = (list(adult.info.schema.categorical).index("education"),
             list(adult.info.schema.categorical).index("race"))
  bags = data.feature_bags(adult.train.labels, 2, adult.train.categorical, columns,
                           min_size=50, max_size=2500)
  assert bags.num_bags > 10
  assert bags.sizes.min() >= 50 and bags.sizes.max() <= 2500
  bagged = bags.bag_ids >= 0
  assert bags.sizes.sum() == bagged.sum()
  # Every bag is one combination of the chosen columns.
  for b in range(bags.num_bags):
    assert len(np.unique(adult.train.categorical[bags.bag_ids == b][:, columns], axis=0)) == 1
  np.testing.assert_array_equal(
      bags.positive_counts, np.bincount(bags.bag_ids[bagged],
                                        adult.train.labels[bagged], bags.num_bags))


def test_bag_errors():
  labels = np.zeros(10, int)
  for size in (0, 11):
    with pytest.raises(ValueError, match=r"bag_size must be in \[1, 10\]"):
      data.random_bags(labels, 2, size)
  with pytest.raises(ValueError, match="No group"):
    data.feature_bags(labels, 2, np.zeros((10, 1), int), (0,), min_size=50)


def test_stock_tfds_dataset_that_is_not_prepared_says_how_to_prepare(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  monkeypatch.setattr(datasets, "_has_network", lambda: False)  # fails in seconds
  with pytest.raises(FileNotFoundError, match="no network to download it.*"
                     "tfds build cifar10 --file_format=array_record"):
    data.load_dataset("cifar10")


def test_examples_keep_the_order_of_the_original_file(adult):
  first = adult.train.categorical[0]
  schema = adult.info.schema.categorical
  # adult.data row 1: 39, State-gov, 77516, Bachelors, ... Never-married, Adm-clerical.
  assert schema["workclass"][first[0]] == "State-gov"
  assert schema["occupation"][first[3]] == "Adm-clerical"
  assert adult.train.labels[:3].tolist() == [0, 0, 0]


def test_roc_auc_by_hand_and_on_bad_scores():
  from labeljax import metrics  # pylint: disable=g-import-not-at-top
  # Pairs (pos, neg): (0.9, 0.1) right, (0.9, 0.5) right, (0.3, 0.1) right, (0.3, 0.5) wrong.
  assert metrics.roc_auc(np.array([0.9, 0.1, 0.3, 0.5]), np.array([1, 0, 1, 0])) == 0.75
  assert metrics.roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5  # a tie counts half
  with pytest.raises(ValueError, match="1 scores are NaN or inf"):
    metrics.roc_auc(np.array([0.9, np.nan, 0.3, 0.5]), np.array([1, 0, 1, 0]))


def test_make_bags_rejects_ids_below_minus_one():
  with pytest.raises(ValueError, match="Bag ids must be >= 0, or -1 .* got -5"):
    data.make_bags(np.array([0, 0, -5, 1]), np.array([0, 1, 1, 0]), 2)
  bags = data.make_bags(np.array([0, 0, -1, 1]), np.array([0, 1, 1, 0]), 2)
  np.testing.assert_array_equal(bags.label_counts, [[1, 1], [1, 0]])
