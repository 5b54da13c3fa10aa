"""From host arrays to global, sharded batches.

Training streams are infinite and deterministic: the batch of step t is a pure
function of (seed, t), so a resumed run sees exactly the batches the killed
run would have seen, and no iterator state needs checkpointing.

Each stream is split into `num_shards` contiguous slices (default 1: one
global order). Every step, shard s contributes rows s·B/S .. (s+1)·B/S of
the global batch of B rows, read in order from a fresh permutation of its
slice each epoch (a batch that straddles an epoch boundary, or a slice
smaller than a batch, can repeat an example). Process p then takes rows
p·B/P .. (p+1)·B/P of that global batch, sharded over the `data` mesh axis.
So the global batches depend on (seed, step, num_shards) and never on the
topology: 1 process × 4 devices and 2 processes × 1 device see the same data.
A process keeps in memory only the slices its rows come from; with many hosts
and data too large for one, `num_shards` = the process count gives each host
its own slice.
"""

import functools
import queue
import threading
from typing import Callable, Iterator, NamedTuple

import jax
import numpy as np

from labeljax import parallel
from labeljax.data.datasets import Examples, check_finite


@functools.lru_cache(maxsize=256)
def _epoch_permutation(size: int, key: tuple[int, ...], epoch: int) -> np.ndarray:
  return np.random.default_rng([*key, epoch]).permutation(size)


def shard_positions(size: int, rows_per_step: int, step: int,
                    key: tuple[int, ...]) -> np.ndarray:
  """Positions in [0, size) of the rows a shard (named by `key`) gives at `step`."""
  pos = step * rows_per_step + np.arange(rows_per_step)
  epochs, offsets = np.divmod(pos, size)
  out = np.empty(rows_per_step, np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _epoch_permutation(size, key, int(epoch))[offsets[sel]]
  return out


def shard_bounds(num_examples: int, num_shards: int) -> list[tuple[int, int]]:
  edges = [num_examples * s // num_shards for s in range(num_shards + 1)]
  return list(zip(edges[:-1], edges[1:]))


def process_rows(batch_size: int) -> tuple[int, int]:
  """The [start, stop) rows of a global batch this process supplies."""
  per_process = batch_size // jax.process_count()
  return jax.process_index() * per_process, (jax.process_index() + 1) * per_process


class Stream(NamedTuple):
  """What one named part of a training batch is drawn from."""
  examples: Examples
  batch_size: int  # global


class TrainLoader:
  """Deterministic global batches `{stream: {"inputs", "labels", "index"}}`.

  `index` is the example's position in its stream's `examples`, for algorithms
  that keep per-example state. Labels of unlabeled streams are carried for
  monitoring only; losses must not read them.
  """

  def __init__(self, streams: dict[str, Stream], mesh: jax.sharding.Mesh, *,
               seed: int, num_shards: int | None = None):
    self.mesh = mesh
    self.seed = seed
    self.num_shards = num_shards or 1
    self._streams = {}
    for name, (examples, batch_size) in streams.items():
      parallel.check_global_batch(batch_size, mesh, f"{name!r} batch")
      if batch_size % self.num_shards:
        raise ValueError(f"{name!r} batch size {batch_size} is not a multiple of "
                         f"num_shards={self.num_shards}.")
      if len(examples) < self.num_shards:
        raise ValueError(f"Stream {name!r} has {len(examples)} examples, fewer than "
                         f"the {self.num_shards} data shards.")
      check_finite(examples.inputs, f"stream {name!r}")
      rows_per_shard = batch_size // self.num_shards
      first, stop = process_rows(batch_size)
      # The shards whose rows of the global batch this process supplies, each
      # with the part of its rows it takes; only their slices stay in memory.
      needed = {}
      for shard, (lo, hi) in enumerate(shard_bounds(len(examples), self.num_shards)):
        rows = (max(first, shard * rows_per_shard) - shard * rows_per_shard,
                min(stop, (shard + 1) * rows_per_shard) - shard * rows_per_shard)
        if rows[0] < rows[1]:
          whole = self.num_shards == 1  # no copy of the whole stream
          needed[shard] = (lo, hi, rows, examples if whole else
                           examples.take(np.arange(lo, hi)))
      self._streams[name] = (needed, rows_per_shard)

  def local_batch(self, step: int) -> dict:
    """This process's rows of the global batch of `step`, as numpy arrays."""
    batch = {}
    for stream_id, (name, (needed, rows_per_shard)) in enumerate(self._streams.items()):
      parts, index = [], []
      for shard, (lo, hi, (row_start, row_stop), examples) in needed.items():
        pos = shard_positions(hi - lo, rows_per_shard, step,
                              (self.seed, stream_id, shard))[row_start:row_stop]
        parts.append(examples.take(pos))
        index.append(lo + pos)
      batch[name] = {"inputs": np.concatenate([p.inputs for p in parts]),
                     "labels": np.concatenate([p.labels for p in parts]),
                     "index": np.concatenate(index).astype(np.int32)}
    return batch

  def batches(self, start_step: int) -> Iterator[dict]:
    return prefetch_global_batches(self.local_batch, self.mesh, start_step)


def prefetch_global_batches(local_batch: Callable[[int], dict],
                            mesh: jax.sharding.Mesh, start_step: int,
                            prefetch: int = 2) -> Iterator[dict]:
  """Global batches from `start_step` on; host work runs in a thread ahead."""
  buffer = queue.Queue(maxsize=prefetch)
  stop = threading.Event()

  def produce():
    step = start_step
    while not stop.is_set():
      try:
        item = local_batch(step)
      except BaseException as e:  # pylint: disable=broad-except
        buffer.put(e)  # Re-raised in the consumer instead of hanging it.
        return
      buffer.put(item)
      step += 1

  threading.Thread(target=produce, daemon=True).start()
  try:
    while True:
      item = buffer.get()
      if isinstance(item, BaseException):
        raise item
      yield parallel.host_to_global(item, mesh)
  finally:
    stop.set()
    while not buffer.empty():  # Unblock the producer so it can exit.
      buffer.get_nowait()


def eval_batches(examples: Examples, batch_size: int,
                 mesh: jax.sharding.Mesh) -> Iterator[dict]:
  """Global batches covering every example exactly once, padded at the end.

  Each batch has `mask` (1 for real examples, 0 for padding). Each process
  reads only its contiguous part of every global batch.
  """
  parallel.check_global_batch(batch_size, mesh, "eval batch")
  check_finite(examples.inputs, "evaluation examples")
  n = len(examples)
  per_process = batch_size // jax.process_count()
  offset = jax.process_index() * per_process
  for start in range(0, n, batch_size):
    rows = np.arange(start + offset, start + offset + per_process)
    mask = rows < n
    taken = examples.take(np.where(mask, rows, 0))
    yield parallel.host_to_global(
        {"inputs": taken.inputs, "labels": taken.labels,
         "mask": mask.astype(np.float32)}, mesh)
