"""A lock shared by the processes of one machine, for work that must happen once.

Runs started together (a sweep's cells, a test suite's subprocesses) reach the
same unprepared data set or the same shared teacher at the same moment; the
first to take the lock builds it, the others wait and then find it built.
"""

import contextlib
import fcntl
import os


@contextlib.contextmanager
def exclusive(path: str):
  """Holds an exclusive `flock` on `{path}.lock` while the block runs.

  The lock is advisory and local: it serialises processes that use it on one
  machine (or a filesystem with working `flock`), not hosts of a multi-host run.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(f"{path}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
