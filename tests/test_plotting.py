"""labeljax.plotting and metrics.jsonl: one row per (stage, step, split)."""

import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from labeljax import plotting
from labeljax.train.metric_writer import MetricWriter

matplotlib.use("Agg")


def test_metrics_keep_one_row_per_step_and_split_across_a_resume(tmp_path):
  writer = MetricWriter(str(tmp_path))
  writer.write(10, "train", {"loss": 1.0})
  writer.write(20, "train", {"loss": 0.5})
  writer.write(20, "validation", {"accuracy": 0.7})
  writer.write(20, "round", {"auc": 0.9}, stage="round_0")
  writer.close()
  assert plotting.read_metrics(str(tmp_path), stage="round_0")[0]["auc"] == 0.9
  # A run restored at step 10 drops what it logged after; it logs it again.
  resumed = MetricWriter(str(tmp_path), resumed_step=10)
  assert plotting.curve(str(tmp_path), "loss")[0].tolist() == [10]
  resumed.write(20, "train", {"loss": 0.4})
  resumed.write(20, "train", {"loss": 0.3})  # the same row again replaces it
  resumed.close()
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [(r["step"], r["split"]) for r in rows] == [(10, "train"), (20, "train")]
  steps, losses = plotting.curve(str(tmp_path), "loss")
  np.testing.assert_array_equal(steps, [10, 20])
  np.testing.assert_array_equal(losses, [1.0, 0.3])
  with pytest.raises(ValueError, match="no 'test' rows with 'loss'"):
    plotting.curve(str(tmp_path), "loss", split="test")


def test_tensorboard_sees_every_writer_of_a_run(tmp_path):
  # A run's train loop and final evaluation write separate event files,
  # often in the same second; TensorBoard reads them in name order and takes
  # a file read out of turn for a restart, hiding the steps before it. Ten
  # runs, so that a name order that is right only by chance would show.
  from tensorboard.backend.event_processing import event_accumulator
  for run in range(10):
    workdir = str(tmp_path / str(run))
    for step, split in ((10, "train"), (20, "train"), (20, "test")):
      writer = MetricWriter(workdir)  # as train_single_stage opens them
      writer.write(step, split, {"loss": 1.0})
      writer.close()
    events = event_accumulator.EventAccumulator(workdir)
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20], run
    assert [e.step for e in events.Scalars("test/loss")] == [20], run


def test_read_table_parses_what_the_sweep_writes(tmp_path):
  path = tmp_path / "table.md"
  path.write_text("|  | num_labels=40 | num_labels=100 |\n| --- | --- | --- |\n"
                  "| algorithm=fixmatch | 61.253 ± 5.144 | 71.863 ± 1.264 |\n"
                  "| algorithm=supervised | 54.437 | - |\n\nsome text\n")
  table = plotting.read_table(str(path))
  assert table == {"algorithm=fixmatch": {"num_labels=40": (61.253, 5.144),
                                          "num_labels=100": (71.863, 1.264)},
                   "algorithm=supervised": {"num_labels=40": (54.437, 0.0)}}
  ax = plotting.plot_table(str(path), ax=plt.subplots()[1])
  assert len(ax.patches) == 3 and ax.get_ylabel() == "table"


def test_plot_curves_draws_one_line_per_workdir(tmp_path):
  for name, scale in (("a", 1.0), ("b", 2.0)):
    writer = MetricWriter(str(tmp_path / name))
    for step in (1, 2, 3):
      writer.write(step, "validation", {"accuracy": scale * step})
  ax = plotting.plot_curves({"first": str(tmp_path / "a"), "second": str(tmp_path / "b")},
                            "accuracy", split="validation", ax=plt.subplots()[1])
  assert [l.get_label() for l in ax.get_lines()] == ["first", "second"]
  np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [2.0, 4.0, 6.0])
