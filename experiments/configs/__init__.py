"""Experiment configs, one module per method (see common.py for the shared base).

They ship with the package, so `from experiments.configs import ssl` and
`python -m experiments.train --config=experiments/configs/ssl.py:...` work from
any directory after `pip install`: `resolve_config_flag` finds a config path
that is not there relative to the working directory among these files.
"""

import os

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def resolve_config_flag(value: str) -> str:
  """`PATH[:ARGS]` with PATH replaced by the packaged config it names, if PATH
  does not exist here and reads `[experiments/configs/]NAME.py`."""
  path, sep, args = value.partition(":")
  name = os.path.basename(path)
  if os.path.exists(path) or path not in (name, f"experiments/configs/{name}"):
    return value
  packaged = os.path.join(CONFIG_DIR, name)
  return packaged + sep + args if os.path.exists(packaged) else value
