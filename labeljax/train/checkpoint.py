"""Orbax checkpointing of the train state, and preemption (SIGTERM) handling.

Resume takes the newest checkpoint that restores, matches the SHA-256 of
the state recorded when it was saved (`workdir/checkpoint_digests.json`), and
holds only finite values. A newer one that does not (a truncated or deleted
file, flipped bytes) is moved to `workdir/corrupt_checkpoints/STEP` with a
warning, so the run continues from the one before; orbax keeps two.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from labeljax import parallel


class Checkpointer:
  """Periodic and final saves of the whole `TrainState` under `workdir/checkpoints`."""

  def __init__(self, workdir: str, save_every: int, max_to_keep: int = 2):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True))
    self.save_every = save_every
    self.digests_path = os.path.join(self.workdir, "checkpoint_digests.json")
    self.digests = {}
    if os.path.exists(self.digests_path):
      with open(self.digests_path) as f:
        self.digests = {int(step): digest for step, digest in json.load(f).items()}

  def restore_or(self, state):
    """The newest saved state that restores intact (with `state`'s
    shardings), or `state` if there is no checkpoint."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    skipped = []
    for step in steps:
      try:
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        leaves = _host_leaves(restored)  # one device -> host copy for both checks
        if step in self.digests and self.digests[step] != _digest(leaves):
          problem = "its contents differ from those saved (SHA-256)"
        elif not _all_finite(leaves):
          problem = "it holds NaN or inf"
        else:
          problem = None
      except Exception as error:  # pylint: disable=broad-except
        problem = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
      if problem is None:
        if skipped:
          self._set_aside(skipped)
        return restored
      logging.warning("Checkpoint %s/%d does not restore (%s); trying the one before.",
                      self.directory, step, problem)
      skipped.append((step, problem))
    if not steps:
      return state
    raise RuntimeError(
        f"No checkpoint in {self.directory} restores: "
        + "; ".join(f"step {s}: {p}" for s, p in skipped)
        + ". Move that directory away to start the run afresh.")

  def _set_aside(self, skipped) -> None:
    """Moves unusable checkpoints out of orbax's way (a later save at their
    step would otherwise be skipped as already there)."""
    aside = os.path.join(self.workdir, "corrupt_checkpoints")
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for step, _ in skipped:
        target = os.path.join(aside, str(step))
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        logging.warning("Moved the unusable checkpoint of step %d to %s.", step, target)
    parallel.barrier("corrupt checkpoints set aside")
    self.manager.reload()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves every `save_every` steps, or now with `force` (once per step)."""
    if step == self.manager.latest_step() or not (force or step % self.save_every == 0):
      return False
    # Recorded before orbax commits: a step on disk always has its digest.
    self.digests = {s: d for s, d in self.digests.items()
                    if s in self.manager.all_steps()}
    self.digests[step] = _digest(_host_leaves(state))
    if jax.process_index() == 0:
      with open(self.digests_path + ".tmp", "w") as f:
        json.dump(self.digests, f)
      os.replace(self.digests_path + ".tmp", self.digests_path)
    with self._reporting_write_errors():
      return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def reached_preemption(self, step: int) -> bool:
    """True on every process once a multi-process run got a preemption notice."""
    return jax.process_count() > 1 and self.manager.reached_preemption(step)

  def close(self) -> None:
    with self._reporting_write_errors():
      self.manager.wait_until_finished()
    self.manager.close()

  @contextlib.contextmanager
  def _reporting_write_errors(self):
    """A failed (asynchronous) save, e.g. on a full disk, surfaces at the next
    save or at close; as an OSError naming the directory, whatever layer
    (TensorStore, orbax, the OS) raised it."""
    try:
      yield
    except Exception as error:  # pylint: disable=broad-except
      if isinstance(error, jax.errors.JaxRuntimeError):
        raise  # a failed collective, not a write
      detail = str(error).splitlines()[0] if str(error) else type(error).__name__
      raise OSError(
          f"Writing a checkpoint under {self.directory} failed: {detail[:500]}. If the "
          "disk is full, free space and rerun: the run resumes from the last "
          "complete checkpoint.") from error


def _host_leaves(state) -> list[np.ndarray]:
  """This process's copy of every leaf, fetched once (PRNG keys as their data)."""
  leaves = []
  for leaf in jax.tree.leaves(state):
    if isinstance(leaf, jax.Array):
      if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
      leaf = leaf.addressable_data(0)
    leaves.append(np.ascontiguousarray(np.asarray(leaf)))
  return leaves


def _digest(leaves: list[np.ndarray]) -> str:
  """SHA-256 over the leaves' bytes."""
  sha = hashlib.sha256()
  for leaf in leaves:
    sha.update(leaf.tobytes())
  return sha.hexdigest()


def _all_finite(leaves: list[np.ndarray]) -> bool:
  return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating))


def latest_step(workdir: str) -> int:
  """The step of the newest checkpoint in `workdir` (0 if none), without opening it."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return 0
  return max(ocp.utils.checkpoint_steps(directory), default=0)


class SigtermFlag:
  """Records SIGTERM (a preemption notice) so the loop can save and stop."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())

  def is_set(self) -> bool:
    return self._event.is_set()

  def restore(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
