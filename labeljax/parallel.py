"""Device mesh, shardings and multi-host setup for data parallelism.

Everything is data parallel over one mesh axis, `data`, spanning all devices of
all processes. Train state is replicated; batches are global `jax.Array`s
sharded along their leading axis, assembled from what each process read.
"""

import re
import threading

from absl import logging
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
# A process that does not join, or a peer that dies, fails the run within
# about this long, instead of JAX's defaults of 300 s and 100 s.
JOIN_TIMEOUT_S = 45
HEARTBEAT_TIMEOUT_S = 40


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           join_timeout_s: int = JOIN_TIMEOUT_S,
                           heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> None:
  """Joins a multi-process run before any other JAX call.

  `num_processes` None or 1: a single process, nothing to do. -1: let JAX
  detect the cluster (TPU pods, SLURM, ...). Otherwise all three arguments
  describe the run, e.g. several CPU processes on 127.0.0.1. If not every
  process joins within `join_timeout_s`, this raises, naming the coordinator
  and the processes that are missing; a peer that stops answering for
  `heartbeat_timeout_s` stops the others.
  """
  if num_processes is None or num_processes == 1:
    if coordinator_address is not None or process_id is not None:
      raise ValueError("coordinator_address/process_id given without num_processes: "
                       "each process would train alone on the same workdir.")
    return
  timeouts = dict(initialization_timeout=join_timeout_s,
                  heartbeat_timeout_seconds=heartbeat_timeout_s)
  others = [i for i in range(num_processes) if i != process_id] if num_processes > 0 else []
  # XLA aborts the process when the join times out, with a message about
  # "another task" dying; this says first what went wrong, and where.
  watchdog = threading.Timer(max(join_timeout_s - 1, 1), lambda: (logging.error(
      "Process %s of %s: the run has not started after %d s at coordinator %s: "
      "processes %s have not all joined. Start every process with the same "
      "--coordinator_address and --num_processes and its own --process_id. "
      "Stopping.", process_id, num_processes, join_timeout_s - 1, coordinator_address,
      others), logging.flush()))
  watchdog.daemon = True
  watchdog.start()
  try:
    if num_processes == -1:
      jax.distributed.initialize(**timeouts)
    else:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id,
                                 **timeouts)
  except Exception as error:  # pylint: disable=broad-except
    # XLA names the tasks that did not join as /job:jax_worker/.../task:N.
    missing = sorted({int(t) for t in re.findall(r"task:(\d+)", str(error))} - {process_id})
    raise RuntimeError(
        f"Process {process_id} of {num_processes}: the run did not start within "
        f"{join_timeout_s} s at coordinator {coordinator_address}"
        + (f"; missing processes: {missing}" if missing else "")
        + ". Start every process with the same --coordinator_address and "
        f"--num_processes and a distinct --process_id. ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:300]})") from error
  finally:
    watchdog.cancel()
  # XLA's CPU client (jaxlib 0.10.2) can deadlock a cross-process all-reduce
  # when a process drives several CPU devices: about 1 in 10 runs of 2
  # processes x 2 devices hung on 2 cores, none of 40 with 1 device each.
  if jax.default_backend() == "cpu" and jax.local_device_count() > 1:
    logging.warning(
        "%d CPU devices in this process of a multi-process run: XLA's CPU "
        "collectives can hang with more than one device per process; use one "
        "(--xla_force_host_platform_device_count=1).", jax.local_device_count())


def describe_peer_failure(error: BaseException, coordinator_address: str | None) -> str:
  """A collective that failed in a multi-process run: which processes died.

  A dead peer shows first as a transport error in this process's next
  collective ("Connection reset by peer"). The coordination service names it
  once its heartbeats have been missing for `HEARTBEAT_TIMEOUT_S`: in the
  error of a barrier that waited for it (the trainer's last checkpoint
  barrier, chained to `error`), or else in answer to a query that blocks that
  long.
  """
  chain, cause = [], error
  while cause is not None:
    chain.append(str(cause))
    cause = cause.__cause__ or cause.__context__
  dead = sorted({int(i) for i in re.findall(r"Task (\d+) heartbeat timeout", "\n".join(chain))})
  if not dead:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    everyone = list(range(jax.process_count()))
    try:
      dead = sorted(set(everyone) - set(
          distributed.global_state.client.get_live_nodes(everyone)))
    except Exception:  # pylint: disable=broad-except
      dead = [0]  # The coordination service, which process 0 runs, is gone.
  first_line = chain[-1].splitlines()[0][:300]
  return (f"Process {jax.process_index()} of {jax.process_count()} (coordinator "
          f"{coordinator_address or 'detected by JAX'}): a collective failed because "
          f"processes {dead} stopped answering (died or were killed); see their logs. "
          "Rerun every process with the same flags to resume from the last checkpoint. "
          f"The first error: {first_line}")


def make_mesh(devices=None) -> Mesh:
  """A 1-D `data` mesh over all devices (of all processes), process-major.

  Each process's devices form one contiguous block in process order, so the
  rows a process contributes to a global batch stay together and in order
  (bag slots index bag arrays; gathered predictions keep example order).
  """
  devices = jax.devices() if devices is None else list(devices)
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_global_batch(batch_size: int, mesh: Mesh, what: str = "batch") -> None:
  if batch_size < 1 or batch_size % mesh.size:
    raise ValueError(f"Global {what} size {batch_size} is not a positive multiple of "
                     f"the {mesh.size} devices; data parallelism splits it evenly.")


def host_to_global(local_tree, mesh: Mesh):
  """Turns this process's rows (leading axis) into global arrays over `data`."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_tree)


def barrier(name: str) -> None:
  """Waits until every process gets here (e.g. after process 0 wrote a file
  the others read); nothing to wait for in a single process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def global_to_host(tree):
  """Fetches global arrays to every process as full numpy arrays."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
