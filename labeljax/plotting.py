"""Reading and plotting what runs write: `metrics.jsonl` and results tables.

    from labeljax import plotting
    plotting.plot_curves({"fixmatch": "/tmp/a", "supervised": "/tmp/b"},
                         "accuracy", split="validation")
    plotting.plot_table("results/ssl_mnist.md")

`read_metrics` is the one parser of `metrics.jsonl` the notebooks share; the
plots need matplotlib (`pip install 'labeljax[plot]'`; Colab has it).
"""

import json
import os
import re
from typing import Mapping, Sequence

import numpy as np


def read_metrics(workdir: str, split: str | None = None,
                 stage: str | None = None) -> list[dict]:
  """The rows of `workdir/metrics.jsonl`, in step order, optionally of one
  split and stage. Where a resumed run logged a (stage, step, split) again,
  the last row wins: one value per step."""
  rows = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if (split is None or row["split"] == split) and (
          stage is None or row.get("stage") == stage):
        rows[row.get("stage"), row["step"], row["split"]] = row
  return sorted(rows.values(), key=lambda r: r["step"])


def curve(workdir: str, metric: str, split: str = "train",
          stage: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of one metric; rows without it are skipped."""
  rows = [r for r in read_metrics(workdir, split, stage) if metric in r]
  if not rows:
    raise ValueError(f"{workdir}/metrics.jsonl has no {split!r} rows with "
                     f"{metric!r}" + (f" in stage {stage!r}." if stage else "."))
  return (np.array([r["step"] for r in rows]),
          np.array([r[metric] for r in rows], dtype=float))


def plot_curves(workdirs: Mapping[str, str] | Sequence[str], metric: str,
                split: str = "train", stage: str | None = None, ax=None):
  """One learning curve per workdir (a mapping gives the legend labels)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax = ax or plt.gca()
  if not isinstance(workdirs, Mapping):
    workdirs = {os.path.basename(os.path.normpath(w)): w for w in workdirs}
  for label, workdir in workdirs.items():
    ax.plot(*curve(workdir, metric, split, stage), label=label)
  ax.set_xlabel("step")
  ax.set_ylabel(f"{split} {metric}")
  ax.legend()
  return ax


_CELL = re.compile(r"^\s*(-?[\d.]+)\s*(?:±\s*([\d.]+))?\s*$")


def read_table(path: str) -> dict[str, dict[str, tuple[float, float]]]:
  """A results table written by experiments/sweep.py: row -> column ->
  (mean, std); std is 0 for single-seed cells, missing cells are left out."""
  with open(path) as f:
    lines = [l.strip() for l in f if l.strip().startswith("|")]
  if len(lines) < 3:
    raise ValueError(f"{path} holds no markdown table.")
  split = lambda line: [c.strip() for c in line.strip("|").split("|")]
  columns = split(lines[0])[1:]
  table = {}
  for line in lines[2:]:
    row, *cells = split(line)
    parsed = {column: _CELL.match(cell) for column, cell in zip(columns, cells)}
    table[row] = {column: (float(m[1]), float(m[2] or 0.0))
                  for column, m in parsed.items() if m}
  return table


def plot_table(table: str | Mapping[str, Mapping[str, tuple[float, float]]], ax=None,
               ylabel: str = ""):
  """A results table as grouped bars (one group per column, one bar per row)
  with ± std error bars; `table` is a path or what `read_table` returns."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if isinstance(table, str):
    ylabel = ylabel or os.path.basename(table).removesuffix(".md")
    table = read_table(table)
  ax = ax or plt.gca()
  columns = list(dict.fromkeys(c for cells in table.values() for c in cells))
  width = 0.8 / max(len(table), 1)
  for i, (row, cells) in enumerate(table.items()):
    positions = [j + (i - (len(table) - 1) / 2) * width
                 for j, c in enumerate(columns) if c in cells]
    means, stds = zip(*(cells[c] for c in columns if c in cells)) if cells else ((), ())
    ax.bar(positions, means, width, yerr=stds, capsize=2, label=row)
  ax.set_xticks(range(len(columns)), columns)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize="small")
  return ax
