"""TFDS builders that prepare fully offline from the publishers' original files.

Each builder verifies the md5 of its raw files, parses them with numpy only and
writes array_record shards, so it prepares and reads without TensorFlow
(`builder.as_data_source(split)`). Raw files are looked up in, in order:

1. the `raw_data_dir` argument (`--config.raw_data_dir` of the binaries) or,
   if it is not given, the `LABELJAX_RAW_DATA_DIR` environment variable;
2. for Adult only, the copy shipped inside this package (`files/adult`).

Each directory has the layout of `../shared/data`: `<dir>/adult/adult.data`,
`<dir>/mnist/train-images-idx3-ubyte.gz`, ...

Tabular data sets store raw columns: `numeric` (float32, NaN where missing)
and `categorical` (int64 codes into the schema's vocabulary, -1 where missing);
`labeljax.data.tabular` turns them into model inputs with train statistics.
"""

import abc
import csv
import gzip
import hashlib
import io
import lzma
import os
import pathlib
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

RAW_DATA_ENV = "LABELJAX_RAW_DATA_DIR"
PACKAGED_FILES = pathlib.Path(__file__).parent / "files"


class TabularSchema(NamedTuple):
  """Column names of a tabular data set and the vocabulary of each categorical."""
  numeric: tuple[str, ...]
  categorical: dict[str, tuple[str, ...]]


class MissingRawDataError(FileNotFoundError):
  """The original files a builder prepares from are not where it looked."""


def _md5(data: bytes) -> str:
  return hashlib.md5(data).hexdigest()


def read_raw_file(dataset: str, filename: str, md5: str,
                  raw_data_dir: str | None = None) -> bytes:
  """Returns the verified bytes of one original file (see module docstring)."""
  root = raw_data_dir or os.environ.get(RAW_DATA_ENV)
  candidates = [pathlib.Path(root).expanduser() / dataset / filename] if root else []
  packaged = PACKAGED_FILES / dataset / (filename + ".xz")
  for path in candidates:
    if path.is_file():
      data = path.read_bytes()
      break
  else:
    if not packaged.is_file():
      looked = "\n  ".join(str(p) for p in candidates) or "(nowhere: no directory given)"
      raise MissingRawDataError(
          f"Original file {dataset}/{filename} for data set {dataset!r} not found. "
          f"Looked in:\n  {looked}\nPass raw_data_dir (config.raw_data_dir) or set "
          f"{RAW_DATA_ENV} to a directory containing {dataset}/{filename} (the "
          "layout of ../shared/data; its README says where the files come from).")
    path, data = packaged, lzma.decompress(packaged.read_bytes())
  if _md5(data) != md5:
    raise ValueError(f"{path}: md5 {_md5(data)} does not match the published "
                     f"{md5}; the file is corrupt or not the original.")
  return data


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: a builder whose `download` step reads verified local files."""

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.2.0": "Examples keep the order of the original files.",
                   "1.0.0": "Initial release."}
  RAW_FILES: dict[str, str] = {}  # file name -> md5
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""
  LICENSE = ""

  def __init__(self, *, raw_data_dir: str | None = None, **kwargs):
    self._raw_data_dir = raw_data_dir
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  @abc.abstractmethod
  def _features(self) -> tfds.features.FeaturesDict:
    """The features of one example."""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=f"{self.DESCRIPTION}\nLicense: {self.LICENSE}",
        features=self._features(), supervised_keys=None,
        # Keep the publishers' row order: example i is row i of the original.
        disable_shuffling=True,
        homepage=self.HOMEPAGE, citation=self.CITATION)

  def raw(self, filename: str) -> bytes:
    return read_raw_file(self.name, filename, self.RAW_FILES[filename],
                         self._raw_data_dir)

  def check_raw_files(self) -> None:
    """Raises `MissingRawDataError` early, before TFDS starts preparing."""
    for filename in self.RAW_FILES:
      self.raw(filename)

  def _generate_examples(self, examples):
    yield from enumerate(examples)


# --------------------------------------------------------------------------
# Tabular data sets.
# --------------------------------------------------------------------------


class TabularBuilder(OfflineBuilder, skip_registration=True):
  """Tabular builder: rows of (numeric, categorical, label)."""

  SCHEMA: TabularSchema
  LABEL_NAMES: tuple[str, ...]

  def _features(self):
    return tfds.features.FeaturesDict({
        "numeric": tfds.features.Tensor(
            shape=(len(self.SCHEMA.numeric),), dtype=np.float32),
        "categorical": tfds.features.Tensor(
            shape=(len(self.SCHEMA.categorical),), dtype=np.int64),
        "label": tfds.features.ClassLabel(names=self.LABEL_NAMES),
    })

  def _rows_to_examples(self, rows, label_of):
    """Turns a list of {column: string} rows into feature dicts."""
    vocab_index = {col: {v: i for i, v in enumerate(vocab)}
                   for col, vocab in self.SCHEMA.categorical.items()}
    for row in rows:
      numeric = [float(row[c]) if row[c] not in ("", "?") else np.nan
                 for c in self.SCHEMA.numeric]
      categorical = [vocab_index[c].get(row[c], -1) for c in self.SCHEMA.categorical]
      yield {"numeric": np.asarray(numeric, np.float32),
             "categorical": np.asarray(categorical, np.int64),
             "label": label_of(row)}


ADULT_SCHEMA = TabularSchema(
    numeric=("age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
             "hours-per-week"),
    categorical={
        "workclass": ("Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov",
                      "Local-gov", "State-gov", "Without-pay", "Never-worked"),
        "education": ("Bachelors", "Some-college", "11th", "HS-grad", "Prof-school",
                      "Assoc-acdm", "Assoc-voc", "9th", "7th-8th", "12th", "Masters",
                      "1st-4th", "10th", "Doctorate", "5th-6th", "Preschool"),
        "marital-status": ("Married-civ-spouse", "Divorced", "Never-married",
                           "Separated", "Widowed", "Married-spouse-absent",
                           "Married-AF-spouse"),
        "occupation": ("Tech-support", "Craft-repair", "Other-service", "Sales",
                       "Exec-managerial", "Prof-specialty", "Handlers-cleaners",
                       "Machine-op-inspct", "Adm-clerical", "Farming-fishing",
                       "Transport-moving", "Priv-house-serv", "Protective-serv",
                       "Armed-Forces"),
        "relationship": ("Wife", "Own-child", "Husband", "Not-in-family",
                         "Other-relative", "Unmarried"),
        "race": ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other",
                 "Black"),
        "sex": ("Female", "Male"),
        "native-country": (
            "United-States", "Cambodia", "England", "Puerto-Rico", "Canada",
            "Germany", "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece",
            "South", "China", "Cuba", "Iran", "Honduras", "Philippines", "Italy",
            "Poland", "Jamaica", "Vietnam", "Mexico", "Portugal", "Ireland",
            "France", "Dominican-Republic", "Laos", "Ecuador", "Taiwan", "Haiti",
            "Columbia", "Hungary", "Guatemala", "Nicaragua", "Scotland",
            "Thailand", "Yugoslavia", "El-Salvador", "Trinadad&Tobago", "Peru",
            "Hong", "Holand-Netherlands"),
    })
_ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num",
                  "marital-status", "occupation", "relationship", "race", "sex",
                  "capital-gain", "capital-loss", "hours-per-week",
                  "native-country", "income")


class Adult(TabularBuilder, skip_registration=True):
  """UCI Adult (census income): does a person earn more than $50K a year?"""

  RAW_FILES = {"adult.data": "5d7c39d7b8804f071cdd1f2a7c460872",
               "adult.test": "35238206dfdf7f1fe215bbb874adecdc"}
  SCHEMA = ADULT_SCHEMA
  LABEL_NAMES = ("<=50K", ">50K")
  DESCRIPTION = "UCI Adult: 32561 train and 16281 test records, 14 attributes."
  HOMEPAGE = "https://archive.ics.uci.edu/dataset/2/adult"
  LICENSE = "CC BY 4.0"
  CITATION = ("Becker, B. and Kohavi, R. (1996). Adult [Dataset]. UCI Machine "
              "Learning Repository. https://doi.org/10.24432/C5XW20")

  def _rows(self, filename):
    text = self.raw(filename).decode("utf-8")
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("|")]
    for fields in csv.reader(lines, skipinitialspace=True):
      yield dict(zip(_ADULT_COLUMNS, fields))

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    label_of = lambda row: int(row["income"].rstrip(".") == ">50K")
    return {
        "train": self._generate_examples(
            self._rows_to_examples(self._rows("adult.data"), label_of)),
        "test": self._generate_examples(
            self._rows_to_examples(self._rows("adult.test"), label_of)),
    }


class BankMarketing(TabularBuilder, skip_registration=True):
  """UCI Bank Marketing (bank-full): does the client subscribe a term deposit?

  The original has no test split; a fixed, seeded 20% of rows is the test split.
  """

  RAW_FILES = {"bank-full.csv": "e6b0ca77f3f200ec5428e04dd104da53"}
  SCHEMA = TabularSchema(
      numeric=("age", "balance", "day", "duration", "campaign", "pdays",
               "previous"),
      categorical={
          "job": ("admin.", "unknown", "unemployed", "management", "housemaid",
                  "entrepreneur", "student", "blue-collar", "self-employed",
                  "retired", "technician", "services"),
          "marital": ("married", "divorced", "single"),
          "education": ("unknown", "secondary", "primary", "tertiary"),
          "default": ("yes", "no"),
          "housing": ("yes", "no"),
          "loan": ("yes", "no"),
          "contact": ("unknown", "telephone", "cellular"),
          "month": ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                    "sep", "oct", "nov", "dec"),
          "poutcome": ("unknown", "other", "failure", "success"),
      })
  LABEL_NAMES = ("no", "yes")
  TEST_FRACTION = 0.2
  SPLIT_SEED = 0
  DESCRIPTION = "UCI Bank Marketing, bank-full.csv: 45211 rows, 16 attributes."
  HOMEPAGE = "https://archive.ics.uci.edu/dataset/222/bank+marketing"
  LICENSE = "CC BY 4.0"
  CITATION = ("Moro, S., Cortez, P. and Rita, P. (2014). A data-driven approach "
              "to predict the success of bank telemarketing. Decision Support "
              "Systems 62:22-31. https://doi.org/10.24432/C5K306")

  def _split_generators(self, dl_manager):
    del dl_manager
    rows = list(csv.DictReader(
        io.StringIO(self.raw("bank-full.csv").decode("utf-8")), delimiter=";"))
    is_test = np.zeros(len(rows), bool)
    perm = np.random.default_rng(self.SPLIT_SEED).permutation(len(rows))
    is_test[perm[:int(round(self.TEST_FRACTION * len(rows)))]] = True
    label_of = lambda row: int(row["y"] == "yes")
    pick = lambda test: [r for r, t in zip(rows, is_test) if t == test]
    return {
        "train": self._generate_examples(self._rows_to_examples(pick(False), label_of)),
        "test": self._generate_examples(self._rows_to_examples(pick(True), label_of)),
    }


class LlpBpBank(TabularBuilder, skip_registration=True):
  """The LLP-BP reference code's own preprocessed Bank Marketing split.

  16 standardized numeric features with train/validation/test splits, exactly
  the instances of google-deepmind/llp_bp's `data/` folder.
  """

  RAW_FILES = {
      "x_train.csv": "0dbeeee7f950ab388191d095bc131f28",
      "y_train.csv": "4d77d55cb7b8635fd3770b62bcaadd45",
      "x_val.csv": "becfe4d205b590a7854921900f1b7382",
      "y_val.csv": "14dbf0e29c51e3ecfc2ced33c69e6e80",
      "x_test.csv": "b121a746437f57cf891bd118b809ec27",
      "y_test.csv": "07c16a379e180f28073ec22f05983e4d",
  }
  SCHEMA = TabularSchema(numeric=tuple(str(i) for i in range(16)), categorical={})
  LABEL_NAMES = ("0", "1")
  DESCRIPTION = "Bank Marketing as preprocessed by the LLP-BP paper's code."
  HOMEPAGE = "https://github.com/google-deepmind/llp_bp"
  LICENSE = "Apache 2.0 / CC BY 4.0; underlying data UCI CC BY 4.0"
  CITATION = ("Havaldar, S., Sharma, N., Sareen, S., Shanmugam, K. and Raghuveer, "
              "A. (2024). Learning from Label Proportions: Bootstrapping "
              "Supervised Learners via Belief Propagation. ICLR.")

  def _csv(self, filename):
    return np.loadtxt(io.StringIO(self.raw(filename).decode("utf-8")),
                      delimiter=",", skiprows=1, ndmin=2)

  def _examples(self, split):
    x = self._csv(f"x_{split}.csv").astype(np.float32)
    y = self._csv(f"y_{split}.csv")[:, 0].astype(np.int64)
    for xi, yi in zip(x, y):
      yield {"numeric": xi, "categorical": np.zeros(0, np.int64), "label": yi}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(self._examples(split))
            for name, split in (("train", "train"), ("validation", "val"),
                                ("test", "test"))}


# --------------------------------------------------------------------------
# Image data sets.
# --------------------------------------------------------------------------


def parse_idx(data: bytes) -> np.ndarray:
  """Parses a gzipped IDX file (the MNIST format) into a uint8 array."""
  raw = gzip.decompress(data)
  zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
  if zero != 0 or dtype_code != 0x08:
    raise ValueError("Not an unsigned-byte IDX file.")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class _Idx28x28(OfflineBuilder, skip_registration=True):
  """28x28 grey images with 10 classes, from the four IDX files."""

  LABEL_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=self.LABEL_NAMES),
    })

  def _examples(self, prefix):
    images = parse_idx(self.raw(f"{prefix}-images-idx3-ubyte.gz"))
    labels = parse_idx(self.raw(f"{prefix}-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
      raise ValueError(f"{self.name}/{prefix}: {len(images)} images but "
                       f"{len(labels)} labels.")
    for image, label in zip(images, labels):
      yield {"image": image[..., None], "label": int(label)}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(self._examples("train")),
            "test": self._generate_examples(self._examples("t10k"))}


class Mnist(_Idx28x28, skip_registration=True):
  """MNIST handwritten digits (LeCun et al. 1998)."""

  RAW_FILES = {
      "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
      "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
      "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
      "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
  }
  DESCRIPTION = "MNIST: 60000 train and 10000 test 28x28 digit images."
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
  LICENSE = "CC BY-SA 3.0"
  CITATION = ("LeCun, Y., Bottou, L., Bengio, Y. and Haffner, P. (1998). "
              "Gradient-based learning applied to document recognition. Proc. IEEE.")


class FashionMnist(_Idx28x28, skip_registration=True):
  """Fashion-MNIST (Xiao et al. 2017): 28x28 images of 10 kinds of clothing."""

  RAW_FILES = {
      "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
  }
  LABEL_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                 "Shirt", "Sneaker", "Bag", "Ankle boot")
  DESCRIPTION = "Fashion-MNIST: 60000 train and 10000 test 28x28 images."
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  LICENSE = "MIT, Copyright (c) 2017 Zalando SE"
  CITATION = ("Xiao, H., Rasul, K. and Vollgraf, R. (2017). Fashion-MNIST: a Novel "
              "Image Dataset for Benchmarking Machine Learning Algorithms. "
              "arXiv:1708.07747.")


# Offline builders with a stock TFDS twin, used where the original files are
# missing and a network is there (Colab): same images and labels, TFDS's order.
STOCK_TFDS_NAMES = ("mnist", "fashion_mnist")

OFFLINE_BUILDERS: dict[str, type[OfflineBuilder]] = {
    "adult": Adult,
    "bank_marketing": BankMarketing,
    "llp_bp_bank": LlpBpBank,
    "mnist": Mnist,
    "fashion_mnist": FashionMnist,
}
