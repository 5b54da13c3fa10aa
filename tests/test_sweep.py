"""The results-table sweep: one command regenerates a table from real runs."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_sweep_writes_a_table_from_results(tmp_path):
  output = tmp_path / "table.md"

  def sweep_column(metric):
    subprocess.run(
        [sys.executable, "-m", "experiments.sweep",
         "--config=experiments/configs/supervised.py", f"--workdir={tmp_path / 'runs'}",
         "--rows=num_labels=200,num_labels=-1", "--common=dataset=adult,num_steps=20",
         "--seeds=0", f"--metric={metric}", f"--output={output}"],
        cwd=REPO, check=True, capture_output=True, timeout=300)
    text = output.read_text()
    rows = [l for l in text.splitlines() if l.startswith("| num_labels")]
    assert len(rows) == 2 * len(metric.split(",")) and "python -m experiments.sweep" in text
    return [float(r.split("|")[2].split("±")[0]) for r in rows]

  assert all(0.5 < auc <= 1.0 for auc in sweep_column("test.auc"))
  results = sorted((tmp_path / "runs").glob("*/results.json"))
  assert len(results) == 2
  finished = [p.stat().st_mtime_ns for p in results]
  # A second table from the same runs reuses them (no retraining).
  assert all(0 < minutes < 5 for minutes in sweep_column("sweep.wall_minutes"))
  assert [p.stat().st_mtime_ns for p in results] == finished
  # Several metrics: each row once per metric, in the order given.
  auc_200, accuracy_200, auc_all, _ = sweep_column("test.auc,test.accuracy")
  assert "| num_labels=200: test.accuracy |" in output.read_text()
  assert [auc_200, auc_all] == sweep_column("test.auc")
  assert 0.5 < accuracy_200 < 1.0 and accuracy_200 != auc_200
  # The same workdir with other settings is refused, not silently reused.
  other = subprocess.run(
      [sys.executable, "-m", "experiments.sweep",
       "--config=experiments/configs/supervised.py", f"--workdir={tmp_path / 'runs'}",
       "--rows=num_labels=200", "--common=dataset=adult,num_steps=30", "--seeds=0"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert other.returncode != 0 and "give this sweep another --workdir" in other.stderr


def test_sweep_skips_cells_and_rejects_unknown_ones(tmp_path):
  def sweep(*extra):
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep",
         "--config=experiments/configs/supervised.py", f"--workdir={tmp_path / 'runs'}",
         "--rows=num_labels=200", "--columns=num_steps=10,num_steps=20",
         "--common=dataset=adult", "--seeds=0", "--metric=test.auc", "--parallel=2",
         f"--output={tmp_path / 'table.md'}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300)

  assert sweep("--skip=num_labels=200@num_steps=20").returncode == 0
  row = [l for l in (tmp_path / "table.md").read_text().splitlines()
         if l.startswith("| num_labels")][0]
  assert row.rstrip().endswith("| — |")
  assert len(list((tmp_path / "runs").glob("*/results.json"))) == 1
  failed = sweep("--skip=num_labels=200@num_steps=30")
  assert failed.returncode != 0 and "not row@column" in failed.stderr


@pytest.mark.slow  # slow: keeps the default suite well under 20 minutes on 2 cores
def test_sweep_tunes_each_seed_on_the_select_key(tmp_path):
  tune = ["learning_rate=0.0001", "learning_rate=0.01"]
  sweep = subprocess.run(
      [sys.executable, "-m", "experiments.sweep",
       "--config=experiments/configs/llp.py", f"--workdir={tmp_path / 'runs'}",
       "--rows=method=dllp", "--common=dataset=adult,bag_size=64,num_steps=20",
       "--seeds=0,1", "--metric=test.auc", f"--tune={','.join(tune)}",
       "--select=monitor.validation_bag_loss", f"--output={tmp_path / 'table.md'}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert sweep.returncode == 0, sweep.stderr[-3000:]
  chosen, aucs = [], []
  for seed in (0, 1):
    runs = {t: json.loads((tmp_path / "runs" / f"method-dllp__{t.replace('=', '-')}__"
                           f"seed-{seed}" / "results.json").read_text()) for t in tune}
    best = min(tune, key=lambda t: runs[t]["monitor"]["validation_bag_loss"])
    chosen.append(best)
    aucs.append(runs[best]["test"]["auc"])
  rows = [l for l in (tmp_path / "table.md").read_text().splitlines()
          if l.startswith("| method=dllp")]
  assert rows[0] == f"| method=dllp | {np.mean(aucs):.3f} ± {np.std(aucs):.3f} |"
  assert rows[1] == f"| method=dllp | {' / '.join(chosen)} |"
  # Several settings without a key to choose by is refused.
  refused = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/llp.py",
       f"--workdir={tmp_path / 'runs'}", f"--tune={','.join(tune)}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0 and "--tune with several settings needs --select" in refused.stderr


def test_paired_selection_keeps_the_first_setting_unless_another_is_clearly_better(tmp_path):
  """--select_paired: the setting with the lowest mean replaces the first one
  only if its per-bag losses are lower by the paired test, on at least 3 bags.
  The runs are written here (a sweep reads a finished run's results.json)."""
  tune = ["hidden=linear", "hidden=100"]
  rng = np.random.default_rng(0)

  def write_run(seed, setting, losses, auc):
    workdir = tmp_path / "runs" / f"method-dllp__{setting.replace('=', '-')}__seed-{seed}"
    workdir.mkdir(parents=True)
    (workdir / "sweep_config.txt").write_text(
        f"experiments/configs/llp.py:method=dllp,{setting},seed={seed}")
    (workdir / "results.json").write_text(json.dumps({"test": {"auc": auc}, "monitor": {
        "validation_bag_loss": float(np.mean(losses)),
        "validation_bag_losses": [float(x) for x in losses]}}))

  first = rng.normal(0.36, 0.01, size=17)
  noise = rng.normal(0, 1e-3, size=17)
  seconds = {
      0: first + noise - noise.mean() - 1e-4,  # lower mean, within the bags' noise
      1: first - 1e-3 + rng.normal(0, 1e-5, size=17),  # lower on every bag
  }
  for seed, second in seconds.items():
    write_run(seed, tune[0], first, 0.7)
    write_run(seed, tune[1], second, 0.3)
  write_run(2, tune[0], first[:2], 0.7)  # lower on every bag, but only 2 bags
  write_run(2, tune[1], first[:2] - 1e-3, 0.3)

  def sweep(*extra):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/llp.py",
         f"--workdir={tmp_path / 'runs'}", "--rows=method=dllp", "--seeds=0,1,2",
         "--metric=test.auc", f"--tune={','.join(tune)}",
         "--select=monitor.validation_bag_loss", f"--output={tmp_path / 'table.md'}",
         *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
    if result.returncode:
      return result
    return [l for l in (tmp_path / "table.md").read_text().splitlines()
            if l.startswith("| method=dllp")]

  assert sweep() == ["| method=dllp | 0.300 ± 0.000 |",
                     "| method=dllp | hidden=100 / hidden=100 / hidden=100 |"]
  paired = sweep("--select_paired=monitor.validation_bag_losses")
  assert paired == ["| method=dllp | 0.567 ± 0.189 |",
                    "| method=dllp | hidden=linear / hidden=100 / hidden=linear |"]
  assert "paired t-test at level 0.05" in (tmp_path / "table.md").read_text()
  refused = sweep("--select_paired=monitor.validation_bag_losses", "--select_test_level=0")
  assert refused.returncode != 0 and "--select_test_level=0 is the level" in refused.stderr
