"""Metrics for programs and for people, written by process 0.

Every `write` appends `{"step", "split", ["stage",] **metrics}` to
`metrics.jsonl` (replacing an earlier row of the same stage, step and split,
so a reader finds one value each, also after a resume), adds the numbers to
TensorBoard event files in the same directory (tags `split/metric`;
`tensorboard --logdir WORKDIR` shows them, no TensorFlow needed), and logs one
line. A list (per-bag losses) goes to `metrics.jsonl` only; the log line
gives its length. Multi-stage pipelines (LLP-BP rounds, distillation
students, SimCLRv2 stages) name the stage, and their steps count training
steps, not rounds.
"""

import json
import numbers
import os
import time

import jax
from absl import logging
from tensorboardX import SummaryWriter


def _key(row: dict) -> tuple:
  return row.get("stage"), row["step"], row["split"]


def _format(name: str, value) -> str:
  if isinstance(value, float):
    return f"{name}={value:.4g}"
  if isinstance(value, list):  # e.g. per-bag losses: in metrics.jsonl, not the log
    return f"{name}=[{len(value)} values]"
  return f"{name}={value}"


class MetricWriter:
  """Appends metric rows to `workdir/metrics.jsonl` and TensorBoard events.

  `resumed_step`: a run restored at this step drops the rows it logged after
  it before it was stopped; it logs those steps again.
  """

  def __init__(self, workdir: str, filename: str = "metrics.jsonl",
               resumed_step: int | None = None):
    self.workdir = workdir
    self.path = os.path.join(workdir, filename)
    self._enabled = jax.process_index() == 0
    self._events = None  # opened at the first write: no empty event files
    self._purge_step = None
    self._keys = None  # (stage, step, split) of the rows in the file, read lazily
    if self._enabled:
      os.makedirs(workdir, exist_ok=True)
      if resumed_step is not None:
        self._rewrite(lambda row: row["step"] <= resumed_step)
        self._purge_step = resumed_step + 1  # TensorBoard hides the stale points

  def _rows(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def _rewrite(self, keep) -> None:
    """Keeps the rows for which `keep(row)`; atomic (a kill leaves either file)."""
    rows = self._rows()
    kept = [row for row in rows if keep(row)]
    if len(kept) < len(rows):
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in kept)
      os.replace(self.path + ".tmp", self.path)
    self._keys = {_key(row) for row in kept}

  def write(self, step: int, split: str, metrics: dict, stage: str | None = None) -> None:
    text = ", ".join(_format(k, v) for k, v in metrics.items())
    where = f"{stage}, step {step}" if stage else f"step {step}"
    logging.info("[%s] %s: %s", where, split, text)
    if not self._enabled:
      return
    row = {"step": step, "split": split, **({"stage": stage} if stage else {}), **metrics}
    if self._keys is None:
      self._keys = {_key(r) for r in self._rows()}
    if _key(row) in self._keys:  # logged before (a resumed or reopened run)
      self._rewrite(lambda r: _key(r) != _key(row))
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    self._keys.add(_key(row))
    if self._events is None:
      # A suffix of its own: two writers opened in the same second (the train
      # loop's and the final evaluation's) would otherwise share one file name.
      # It sorts in opening order: TensorBoard reads the files in name order,
      # and a file read out of turn looks like a restart that hides the later
      # steps of the files before it.
      self._events = SummaryWriter(self.workdir, flush_secs=10,
                                   purge_step=self._purge_step,
                                   filename_suffix=f".{time.time_ns():020d}")
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
