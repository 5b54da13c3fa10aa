"""Runs `methods.train_and_evaluate` in a subprocess that SIGKILLs itself at a
chosen point: the n-th call of a named library function.

A kill inside the process lands exactly where it is asked, however loaded the
machine is, which polling from outside cannot promise. `KillPoint("labeljax.
data.pipeline:TrainLoader.local_batch", 130)` kills mid-training (the loader
reads ahead of the step being trained); `after=True` kills as soon as the call
returns, e.g. while an asynchronous checkpoint save it started is being written.
A run can also be given a full disk (`max_file_bytes`).
"""

import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import textwrap
from typing import Optional

from conftest import COLLECTIVE_TIMEOUTS, REPO_ROOT


@dataclasses.dataclass(frozen=True)
class KillPoint:
  target: str  # "module:Class.method" or "module:function"
  call: int    # 1-based: the call of `target` that kills
  after: bool = False


_KILL_AND_RUN = textwrap.dedent("""
    import functools, importlib, json, os, signal, sys
    import ml_collections
    from absl import logging
    from labeljax import methods

    config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    workdir, point = sys.argv[2], json.loads(sys.argv[3])
    if point:
      module_name, path = point["target"].split(":")
      *owner_path, name = path.split(".")
      owner = importlib.import_module(module_name)
      for attr in owner_path:
        owner = getattr(owner, attr)
      original, calls = getattr(owner, name), [0]

      @functools.wraps(original)
      def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == point["call"] and not point["after"]:
          os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == point["call"]:
          os.kill(os.getpid(), signal.SIGKILL)
        return result

      setattr(owner, name, killing)
    logging.set_verbosity(logging.INFO)
    methods.train_and_evaluate(config, workdir)
    """)


def _limit_file_size(max_bytes: int):
  # Writing a file past the limit fails with EFBIG, "File too large" (Python
  # ignores SIGXFSZ): to the run, the disk is full.
  return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def run(config, workdir, log: pathlib.Path, kill: Optional[KillPoint] = None,
        max_file_bytes: Optional[int] = None) -> int:
  """Runs `config` into `workdir` (4 CPU devices), appending its output to
  `log`; the exit code (-9 when killed). With `max_file_bytes` no file may
  grow past that size (`log` included: give that run a log of its own)."""
  env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {COLLECTIVE_TIMEOUTS}"}
  point = json.dumps(dataclasses.asdict(kill) if kill else None)
  with open(log, "a") as out:
    out.write(f"\n===== kill at {point}\n")
    out.flush()
    return subprocess.run([sys.executable, "-c", _KILL_AND_RUN, json.dumps(config.to_dict()),
                           str(workdir), point],
                          stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900,
                          check=False,
                          preexec_fn=max_file_bytes and _limit_file_size(max_file_bytes)
                          ).returncode
