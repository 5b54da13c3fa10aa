"""Metrics for programs and for people, written by process 0.

Every `write` appends `{"step", "split", ["stage",] **metrics}` to
`metrics.jsonl`, adds the numbers to TensorBoard event files in the same
directory (tags `split/metric`; `tensorboard --logdir WORKDIR` shows them, no
TensorFlow needed), and logs one line. Multi-stage pipelines (LLP-BP rounds,
distillation students, SimCLRv2 stages) name the stage, and their steps count
training steps, not rounds.
"""

import json
import numbers
import os
import time

import jax
from absl import logging
from tensorboardX import SummaryWriter


class MetricWriter:
  """Appends metric rows to `workdir/metrics.jsonl` and TensorBoard events."""

  def __init__(self, workdir: str, filename: str = "metrics.jsonl"):
    self.workdir = workdir
    self.path = os.path.join(workdir, filename)
    self._enabled = jax.process_index() == 0
    self._events = None  # opened at the first write: no empty event files
    if self._enabled:
      os.makedirs(workdir, exist_ok=True)

  def write(self, step: int, split: str, metrics: dict, stage: str | None = None) -> None:
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in metrics.items())
    where = f"{stage}, step {step}" if stage else f"step {step}"
    logging.info("[%s] %s: %s", where, split, text)
    if not self._enabled:
      return
    row = {"step": step, "split": split, **({"stage": stage} if stage else {}), **metrics}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._events is None:
      self._events = SummaryWriter(self.workdir, flush_secs=10)
    prefix = f"{stage}/{split}" if stage else split
    for key, value in metrics.items():
      if isinstance(value, numbers.Real) and not isinstance(value, bool):
        self._events.add_scalar(f"{prefix}/{key}", float(value), step)
    self._events.flush()

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None


class Progress:
  """Step rate and ETA between two log points, compilation excluded.

  The clock starts after the first step (which compiles the train step), so
  the first ETA is as honest as the later ones.
  """

  def __init__(self, first_step: int, num_steps: int):
    self.num_steps = num_steps
    self._step, self._time = first_step, None

  def started(self, step: int) -> None:
    """Call once the first step has run (compiled and dispatched)."""
    self._step, self._time = step, time.perf_counter()

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    if self._time is None or step == self._step:
      return {}  # no step measured yet
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    return {"steps_per_sec": rate, "eta_min": (self.num_steps - step) / rate / 60.0}
