r"""Trains one labeljax config: a thin absl front end over `train_and_evaluate`.

  python -m experiments.train \
      --config=experiments/configs/supervised.py:dataset=mnist,num_labels=100 \
      --workdir=/tmp/supervised_mnist

Multi-process (e.g. 2 CPU processes on one machine), run once per process;
on CPU give each process one device, as XLA's CPU collectives can hang with more:

  XLA_FLAGS=--xla_force_host_platform_device_count=1 \
  python -m experiments.train --config=... --workdir=... \
      --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments.configs import resolve_config_flag
from labeljax import parallel

# A preempted run (SIGTERM, or JAX's preemption notice) saved a checkpoint and
# stopped without results.json: rerun the same command to resume. 75 is
# EX_TEMPFAIL, "try again", which schedulers and requeue scripts can test.
PREEMPTED_EXIT_CODE = 75
# Bad input (a config value out of range, an unknown name, a missing file):
# one line naming the problem, no traceback (`--verbosity=1` shows it).
BAD_INPUT_EXIT_CODE = 2
# A write that failed (a full disk, a file-size limit): the message names the
# directory; free space and rerun to resume. 74 is EX_IOERR.
IO_ERROR_EXIT_CODE = 74
# A multi-process run whose peer died: the message names the dead processes.
PEER_FAILED_EXIT_CODE = 3

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (with :args).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, results.json.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the run; -1 lets JAX detect the cluster.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_JOIN_TIMEOUT = flags.DEFINE_integer(
    "join_timeout_s", parallel.JOIN_TIMEOUT_S,
    "Seconds for every process to join a multi-process run before it fails.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  """Drops orbax's per-save INFO chatter; its warnings and errors stay."""
  return record.levelno > std_logging.INFO or "/orbax/" not in record.pathname


def main(argv):
  del argv
  logging.get_absl_logger().addFilter(_quiet_orbax)
  # "Unable to initialize backend 'tpu'" on every machine without one.
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                  _PROCESS_ID.value, join_timeout_s=_JOIN_TIMEOUT.value)
  from labeljax import methods  # pylint: disable=g-import-not-at-top
  try:
    results = methods.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as error:
    logging.debug("Traceback of the error below:", exc_info=True)
    logging.error("%s: %s", type(error).__name__, error)
    return BAD_INPUT_EXIT_CODE
  except OSError as error:
    logging.debug("Traceback of the error below:", exc_info=True)
    logging.error("%s: %s", type(error).__name__, error)
    return IO_ERROR_EXIT_CODE
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    # Written at once and unbuffered: XLA's own error poller aborts this
    # process moments after the coordinator declares the peer dead.
    message = parallel.describe_peer_failure(error, _COORDINATOR.value)
    os.write(sys.stderr.fileno(), f"E {message}\n".encode())
    logging.debug("Traceback of the error above:", exc_info=True)
    # Skips JAX's exit-time shutdown barrier, which would wait for the dead
    # processes and then abort with a long XLA stack trace.
    os._exit(PEER_FAILED_EXIT_CODE)  # pylint: disable=protected-access
  if results.get("preempted"):
    logging.warning("Preempted: exiting with %d; rerun the same command to resume.",
                    PREEMPTED_EXIT_CODE)
    return PREEMPTED_EXIT_CODE
  return 0


def _resolve_config_argv(argv: list[str]) -> list[str]:
  """Lets `--config=experiments/configs/NAME.py` name a packaged config from
  any directory (`--config PATH` as two arguments, too)."""
  resolved = list(argv)
  for i, arg in enumerate(resolved):
    if arg.startswith("--config="):
      resolved[i] = "--config=" + resolve_config_flag(arg.removeprefix("--config="))
    elif arg == "--config" and i + 1 < len(resolved):
      resolved[i + 1] = resolve_config_flag(resolved[i + 1])
  return resolved


if __name__ == "__main__":
  app.run(main, argv=_resolve_config_argv(sys.argv))
