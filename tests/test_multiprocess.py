"""Runs of the real binary in subprocesses: SIGTERM, 2 processes (matching
one, a missing one, a dead one). SIGKILL at several points and a full disk:
test_faults.py."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import COLLECTIVE_TIMEOUTS
from labeljax.train import pretrained as pretrained_lib

pytestmark = pytest.mark.slow  # minutes of subprocesses: `pytest -m slow`

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/supervised.py:dataset=adult,batch_size=128"


def _command(workdir, num_steps, *flags):
  return [sys.executable, "-m", "experiments.train", f"--config={CONFIG},num_steps={num_steps}",
          f"--workdir={workdir}", "--config.checkpoint_every=50",
          "--config.log_every=50", "--config.eval_every=100000", *flags]


def _env(num_devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices} "
                       f"{COLLECTIVE_TIMEOUTS}")
  env["PYTHONPATH"] = str(REPO)
  return env


def _run(workdir, num_steps, *flags, num_devices=4, log=None):
  """Runs the binary to the end; its results.json. The whole log is kept in
  `log` (default: workdir/run.log)."""
  log = pathlib.Path(log or pathlib.Path(workdir) / "run.log")
  log.parent.mkdir(parents=True, exist_ok=True)
  with open(log, "ab") as out:
    proc = subprocess.run(_command(workdir, num_steps, *flags), cwd=REPO,
                          env=_env(num_devices), stdout=out, stderr=subprocess.STDOUT,
                          timeout=600)
  assert proc.returncode == 0, f"exit {proc.returncode}; log: {log}\n{log.read_text()}"
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def _start_and_interrupt(workdir, num_steps, sig):
  """Starts a run and sends `sig` once a mid-run checkpoint exists."""
  proc = subprocess.Popen(_command(workdir, num_steps), cwd=REPO, env=_env(4),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  checkpoints = pathlib.Path(workdir) / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    steps = [int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()]
    if steps and max(steps) >= 100:
      break
    time.sleep(0.02)
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=120)
  return proc.returncode, stderr.decode()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  return _run(tmp_path_factory.mktemp("full"), 1500)


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, uninterrupted):
  returncode, stderr = _start_and_interrupt(tmp_path, 1500, signal.SIGTERM)
  assert returncode == 75, stderr  # PREEMPTED_EXIT_CODE: "rerun to resume"
  assert "Preempted: saved step" in stderr
  assert not (tmp_path / "results.json").exists()
  saved = int(stderr.split("Preempted: saved step ")[1].split()[0])
  assert (tmp_path / "checkpoints" / str(saved)).exists()
  assert _run(tmp_path, 1500, log=tmp_path / "resumed.log") == uninterrupted
  assert f"Resumed from step {saved}." in (tmp_path / "resumed.log").read_text()


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_two_processes(workdir, num_steps, logs):
  """Starts a 2-process x 1-device run; each process's output goes to its log
  (a file: an undrained pipe could block one process and so hang both)."""
  port, procs = _free_port(), []
  for i, log in enumerate(logs):
    with open(log, "wb") as out:
      procs.append(subprocess.Popen(
          _command(workdir, num_steps, f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}"),
          cwd=REPO, env=_env(1), stdout=out, stderr=subprocess.STDOUT))
  return port, procs


def test_two_processes_match_one_process(tmp_path):
  # 20 steps: the two topologies sum in different orders, and Adam lets those
  # rounding differences grow (after 200 steps some weights differ by 0.009,
  # the validation loss by 1.6e-4), while 20 steps of other batches already
  # move the parameters by far more than the tolerance.
  num_steps = 20
  # One process with 4 devices and the default data order ...
  single = _run(tmp_path / "single", num_steps)
  # ... equals 2 processes x 1 device with the same config: the global batches
  # do not depend on the topology. (With 2 devices per process XLA's CPU
  # collectives hang now and then; see `parallel.initialize_distributed`.)
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  _, procs = _start_two_processes(tmp_path / "multi", num_steps, logs)
  deadline = time.time() + 600
  try:
    for p in procs:
      p.wait(timeout=max(1, deadline - time.time()))
  except subprocess.TimeoutExpired:
    pass  # Reported below, with both logs.
  finally:
    for p in procs:
      p.kill()
      p.wait()
  logs_text = "\n".join(f"--- process {i} ({log}):\n{log.read_text()}"
                         for i, log in enumerate(logs))
  assert [p.returncode for p in procs] == [0, 0], logs_text
  multi = json.loads((tmp_path / "multi" / "results.json").read_text())
  assert multi["step"] == single["step"] == num_steps
  for split in ("test", "validation"):
    assert multi[split]["num_examples"] == single[split]["num_examples"]
    for key in ("loss", "accuracy", "auc"):
      np.testing.assert_allclose(multi[split][key], single[split][key], rtol=1e-4)
  # The trained parameters themselves, not only the metrics: the same up to
  # the order of floating-point sums (4 devices vs 2 processes).
  params = [pretrained_lib.restore_on_host(str(tmp_path / run / "checkpoints"), num_steps)["params"]
            for run in ("single", "multi")]
  for a, b in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_missing_process_fails_the_run_within_a_minute_naming_it(tmp_path):
  port = _free_port()
  log = tmp_path / "process_0.log"
  start = time.time()
  with open(log, "wb") as out:
    proc = subprocess.run(
        _command(tmp_path / "run", 10, f"--coordinator_address=127.0.0.1:{port}",
                 "--num_processes=2", "--process_id=0", "--join_timeout_s=15"),
        cwd=REPO, env=_env(1), stdout=out, stderr=subprocess.STDOUT, timeout=300)
  elapsed, text = time.time() - start, log.read_text()
  assert proc.returncode != 0, text
  # A 15 s join timeout (the default is 45 s); the rest is start-up under load.
  assert elapsed < 60, (elapsed, text)
  assert (f"at coordinator 127.0.0.1:{port}: processes [1] have not all joined"
          in text), text


def test_a_dead_peer_fails_the_survivor_within_a_minute_naming_it(tmp_path):
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  port, procs = _start_two_processes(tmp_path / "run", 100000, logs)
  try:
    # Kill process 1 once both train (the first checkpoint is a collective).
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.isdigit() for p in
                                             checkpoints.glob("*")):
      assert all(p.poll() is None for p in procs), logs[0].read_text()
      time.sleep(0.1)
    procs[1].kill()
    killed = time.time()
    procs[0].wait(timeout=300)
    elapsed, text = time.time() - killed, logs[0].read_text()
  finally:
    for p in procs:
      p.kill()
      p.wait()
  assert procs[0].returncode == 3, text  # PEER_FAILED_EXIT_CODE
  assert elapsed < 60, (elapsed, text)
  assert (f"Process 0 of 2 (coordinator 127.0.0.1:{port}): a collective failed because "
          "processes [1] stopped answering" in text), text
