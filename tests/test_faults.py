"""The fault matrix: SIGKILL at several points of a run and of a multi-stage
pipeline, a dead peer in a two-process run, and a full disk.

Each killed run is rerun into the same workdir until it finishes; it must end
exactly where an uninterrupted run ends. (A corrupt latest checkpoint:
test_checkpoint_recovery.py; a process that never joins and SIGTERM:
test_multiprocess.py.)
"""

import json
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import kill_points
from kill_points import KillPoint
from experiments.configs import llp, supervised
from labeljax.train import checkpoint as checkpoint_lib
from labeljax.train import pretrained as pretrained_lib

pytestmark = pytest.mark.slow  # minutes of subprocesses: `pytest -m slow`

LOADER = "labeljax.data.pipeline:TrainLoader.local_batch"
BAG_LOADER = "labeljax.data.bag_pipeline:BagLoader.local_batch"


def _supervised_config():
  config = supervised.get_config("dataset=adult,num_steps=300,batch_size=128")
  config.log_every = config.checkpoint_every = 50
  config.eval_every = 100  # validation rows are part of what must match
  return config


def _llp_bp_config():
  config = llp.get_config("dataset=adult,method=llp_bp,bag_size=16,num_steps=100")
  config.num_rounds, config.bp_sweeps = 2, 30
  config.log_every = config.eval_every = config.checkpoint_every = 25
  return config


def _metric_rows(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(uninterrupted: pathlib.Path, resumed: pathlib.Path, stages):
  """Same results, the same metrics rows once each, bit-identical final states."""
  assert (json.loads((resumed / "results.json").read_text())
          == json.loads((uninterrupted / "results.json").read_text()))
  rows = [_metric_rows(run) for run in (uninterrupted, resumed)]
  keys = [[(r.get("stage"), r["step"], r["split"]) for r in run_rows] for run_rows in rows]
  assert len(set(keys[1])) == len(keys[1]), "a (stage, step, split) row logged twice"
  assert sorted(keys[0]) == sorted(keys[1])
  for stage, final_step in stages:
    states = [pretrained_lib.restore_on_host(str(run / stage / "checkpoints"), final_step)
              for run in (uninterrupted, resumed)]
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
      np.testing.assert_array_equal(a, b)


def _run_through_kills(config, workdir: pathlib.Path, kills):
  """Runs `config` killed at each point in turn, then to the end; the log."""
  log = workdir.parent / f"{workdir.name}.log"
  for kill in kills:
    assert kill_points.run(config, workdir, log, kill) == -signal.SIGKILL, (
        f"not killed at {kill}; log: {log}\n{log.read_text()}")
    assert not (workdir / "results.json").exists()
  assert kill_points.run(config, workdir, log) == 0, log.read_text()
  return log.read_text()


def test_a_run_killed_at_three_points_and_out_of_disk_ends_as_an_uninterrupted_one(tmp_path):
  config = _supervised_config()
  log = tmp_path / "full.log"
  assert kill_points.run(config, tmp_path / "full", log) == 0, log.read_text()
  killed = tmp_path / "killed"
  # Mid-training, between two checkpoints. Checkpoints are written
  # asynchronously, so under load the kill can land before 100 is complete.
  assert kill_points.run(config, killed, tmp_path / "killed.log",
                         KillPoint(LOADER, 130)) == -signal.SIGKILL
  first = checkpoint_lib.latest_step(str(killed))
  assert first in (50, 100), first
  # As the second save of the resumed run is being written (the kill lands
  # inside the write; orbax finishes one save before it starts the next).
  assert kill_points.run(config, killed, tmp_path / "killed.log", KillPoint(
      "orbax.checkpoint:CheckpointManager.save", 2, after=True)) == -signal.SIGKILL
  second = checkpoint_lib.latest_step(str(killed))
  assert second in (first + 50, first + 100), (first, second)
  # A full disk: no file may grow past 200 kB, less than one of the state's
  # 256 x 256 kernels (orbax groups arrays into data files of varying size, so
  # a larger limit lets some saves through). The next checkpoint fails to
  # write; the run stops with a message naming the directory.
  disk_log = tmp_path / "disk_full.log"
  assert kill_points.run(config, killed, disk_log, max_file_bytes=200_000) == 1
  assert (f"OSError: Writing a checkpoint under {killed}/checkpoints failed: "
          in disk_log.read_text()), disk_log.read_text()
  assert "File too large" in disk_log.read_text() and "free space and rerun" in disk_log.read_text()
  # The last complete checkpoint: what the next run must resume from.
  complete = checkpoint_lib.latest_step(str(killed))
  # Space freed; then trained and evaluated, test rows logged, results.json
  # not yet written.
  text = _run_through_kills(config, killed, [
      KillPoint("labeljax.train.trainer:write_results", 1)])
  # Each run resumed from the last complete checkpoint: `first`; `second`,
  # twice, since the full disk saved nothing; the end, where only the
  # evaluation is repeated.
  resumed = lambda text: [int(s.split(".")[0]) for s in text.split("Resumed from step ")[1:]]
  assert resumed(disk_log.read_text()) == [second] and complete == second, (
      resumed(disk_log.read_text()), second, complete)
  assert resumed(text) == [first, second, 300], (first, second, resumed(text))
  _assert_same_run(tmp_path / "full", killed, [(".", 300)])


def test_a_pipeline_killed_in_each_stage_ends_as_an_uninterrupted_one(tmp_path):
  config = _llp_bp_config()
  log = tmp_path / "full.log"
  assert kill_points.run(config, tmp_path / "full", log) == 0, log.read_text()
  text = _run_through_kills(config, tmp_path / "killed", [
      KillPoint(BAG_LOADER, 60),  # training round 0
      # Round 1's BP: the rerun finishes round 0 from its checkpoint first.
      KillPoint("labeljax.llp.bp:run_bp", 2),
      # Training round 1 (round 0 restores finished and trains no step).
      KillPoint(BAG_LOADER, 60),
  ])
  # Resumed: round 0 mid-way; round 0 finished (twice); round 1 mid-way.
  resumes = [int(s.split(".")[0]) for s in text.split("Resumed from step ")[1:]]
  assert len(resumes) == 4 and resumes[1:3] == [100, 100], resumes
  assert 25 <= resumes[0] < 100 and 25 <= resumes[3] < 100, resumes
  _assert_same_run(tmp_path / "full", tmp_path / "killed",
                   [("round_0", 100), ("round_1", 100)])
