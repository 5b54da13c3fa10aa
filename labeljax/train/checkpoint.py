"""Orbax checkpointing of the train state, and preemption (SIGTERM) handling."""

import os
import signal
import threading

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Periodic and final saves of the whole `TrainState` under `workdir/checkpoints`."""

  def __init__(self, workdir: str, save_every: int, max_to_keep: int = 2):
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True))
    self.save_every = save_every

  def restore_or(self, state):
    """The latest saved state (with `state`'s shardings), or `state` if none."""
    step = self.manager.latest_step()
    if step is None:
      return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves every `save_every` steps, or now with `force` (once per step)."""
    if step == self.manager.latest_step() or not (force or step % self.save_every == 0):
      return False
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def reached_preemption(self, step: int) -> bool:
    """True on every process once a multi-process run got a preemption notice."""
    return jax.process_count() > 1 and self.manager.reached_preemption(step)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


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
