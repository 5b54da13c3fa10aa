"""Data: offline TFDS builders, preprocessing, label budgets, bags, batching."""

from labeljax.data.arrays import from_arrays
from labeljax.data.bags import Bags, feature_bags, make_bags, random_bags
from labeljax.data.budgets import LabelSplit, split_labels
from labeljax.data.builders import MissingRawDataError, OFFLINE_BUILDERS
from labeljax.data.datasets import (DataInfo, Dataset, Examples,
                                    available_datasets, load_dataset,
                                    register_dataset)
from labeljax.data.pipeline import Stream, TrainLoader, eval_batches
