"""Test-wide setup: four fake CPU devices so every data-parallel path runs."""

import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest

# XLA's CPU collectives abort a run whose devices do not all reach an
# all-reduce within a timeout; on a loaded 2-core CI machine, 4 device threads
# can starve that long (an abort inside AllReduceThunk::Execute, seen in CI and
# here only under load). Generous timeouts, for this process and the
# subprocesses tests start (they inherit XLA_FLAGS).
COLLECTIVE_TIMEOUTS = ("--xla_cpu_collective_timeout_seconds=900 "
                       "--xla_cpu_collective_call_terminate_timeout_seconds=900")
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {COLLECTIVE_TIMEOUTS}".strip()

# Must happen before any JAX computation creates the CPU backend.
jax.config.update("jax_num_cpu_devices", 4)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The real data sets live beside the checkout; point the offline builders at them
# unless the caller chose another place.
if SHARED_DATA.is_dir():
  os.environ.setdefault("LABELJAX_RAW_DATA_DIR", str(SHARED_DATA))

# Tests of data sets that do not ship with the package need the original files
# (CI has them beside the checkout); elsewhere they are reported as skipped.
requires_raw_data = pytest.mark.skipif(
    "LABELJAX_RAW_DATA_DIR" not in os.environ,
    reason="needs the original data files: set LABELJAX_RAW_DATA_DIR or put "
           "../shared/data beside the checkout")

# Prepared array_record files are reused across test runs on one machine.
os.environ.setdefault("LABELJAX_DATA_DIR",
                      os.path.join(tempfile.gettempdir(), "labeljax_test_data"))


def quadrant_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """4 classes of 16x16 gray images, each class brightening its own quadrant."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, n)
  images = rng.uniform(0, 0.3, (n, 16, 16)).astype(np.float32)
  for i, label in enumerate(labels):
    row, col = divmod(int(label), 2)
    images[i, 8 * row:8 * row + 8, 8 * col:8 * col + 8] += 0.6
  return images, labels
