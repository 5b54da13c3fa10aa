"""Step rates of two runs that trained side by side, from their train.log files.

Two runs started together share the machine's load; the steps each completed
over the window in which both were training give a fair speed ratio even on a
busy machine, where the runs' wall minutes alone would not. (absl logs
carry the time of day only: the window must not cross midnight.)

  python benchmarks/train_log_rate.py --logs=NEW/train.log,OLD/train.log --names=HEAD,a182f92
"""

import datetime
import re

from absl import app, flags

_LOGS = flags.DEFINE_list("logs", None, "Two train.log files (absl logs with train rows).",
                          required=True)
_NAMES = flags.DEFINE_list("names", None, "A name for each log.")

# absl's line prefix, then the trainer's "[step N] train:" (or "[N] train:") row.
_ROW = re.compile(r"I\d{4} (\d\d:\d\d:\d\d\.\d+) .*\[(?:step )?(\d+)\] train:")


def train_rows(path: str) -> list[tuple[datetime.datetime, int]]:
  with open(path) as f:
    rows = [(datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f"), int(m.group(2)))
            for m in map(_ROW.match, f) if m]
  if len(rows) < 2:
    raise ValueError(f"{path} has fewer than two train rows.")
  return rows


def main(argv):
  del argv
  if len(_LOGS.value) != 2:
    raise app.UsageError("--logs takes two train.log files.")
  names = _NAMES.value or _LOGS.value
  runs = [train_rows(path) for path in _LOGS.value]
  start = max(rows[0][0] for rows in runs)
  end = min(rows[-1][0] for rows in runs)
  if end <= start:
    raise app.UsageError("The two runs never trained at the same time.")
  print(f"window in which both trained: {start.time()} to {end.time()}")
  rates = []
  for name, rows in zip(names, runs):
    inside = [row for row in rows if start <= row[0] <= end]
    (t0, s0), (t1, s1) = inside[0], inside[-1]
    rates.append((s1 - s0) / (t1 - t0).total_seconds())
    print(f"{name}: {rates[-1]:.3f} steps/s (steps {s0} to {s1})")
  print(f"{names[0]} / {names[1]} step rate: {rates[0] / rates[1]:.2f}")


if __name__ == "__main__":
  app.run(main)
