"""A corrupt latest checkpoint: resume falls back to the one before it."""

import json
import pathlib
import shutil

import pytest
from absl import logging

from experiments.configs import supervised
from labeljax import methods


def _config():
  config = supervised.get_config("dataset=adult,num_steps=40,batch_size=128")
  config.log_every, config.eval_every, config.checkpoint_every = 10, 20, 20
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished run with checkpoints at steps 20 and 40."""
  workdir = tmp_path_factory.mktemp("finished")
  return workdir, methods.train_and_evaluate(_config(), str(workdir))


def _largest_data_file(step_dir: pathlib.Path) -> pathlib.Path:
  return max((p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)),
             key=lambda p: p.stat().st_size)


def _truncate(step_dir):
  path = _largest_data_file(step_dir)
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete_metadata(step_dir):
  (step_dir / "default" / "_METADATA").unlink()


def _flip_bytes(step_dir):
  path = _largest_data_file(step_dir)
  data = bytearray(path.read_bytes())
  for i in range(10):  # 10 bytes in the middle of the file
    data[len(data) // 2 + 7 * i] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_truncate, _delete_metadata, _flip_bytes],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    corrupt, finished, tmp_path, caplog):
  source, uninterrupted = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  (workdir / "results.json").unlink()
  corrupt(workdir / "checkpoints" / "40")
  logging.set_verbosity(logging.INFO)
  with caplog.at_level("INFO"):
    results = methods.train_and_evaluate(_config(), str(workdir))
  assert "checkpoints/40 does not restore" in caplog.text
  assert "Resumed from step 20." in caplog.text  # retrained 20 -> 40
  assert results == uninterrupted
  assert (workdir / "corrupt_checkpoints" / "40").is_dir()
  assert json.loads((workdir / "checkpoint_digests.json").read_text()).keys() == {"20", "40"}


def test_no_usable_checkpoint_fails_naming_the_directory(finished, tmp_path):
  source, _ = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  for step in ("20", "40"):
    _delete_metadata(workdir / "checkpoints" / step)
  with pytest.raises(RuntimeError, match=f"No checkpoint in {workdir}/checkpoints restores: "
                                         "step 40: .*; step 20: .*Move that directory away"):
    methods.train_and_evaluate(_config(), str(workdir))
