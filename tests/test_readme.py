"""Every experiment command in README.md names a config and arguments that
exist: the configs they build load, for every cell of a sweep. (Running them
all is minutes to hours each; their first steps are checked by hand.)"""

import importlib
import pathlib
import re
import shlex

import pytest

from experiments.configs import resolve_config_flag
from labeljax.data import available_datasets

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands() -> list[list[str]]:
  """The README's `python -m experiments.*` commands, continuation lines joined."""
  blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
  commands = []
  for block in blocks:
    for line in block.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      if "-m" in words and words[words.index("-m") + 1].startswith("experiments."):
        commands.append(words[words.index("-m") + 1:])
  return commands


def _flag(words, name, default=""):
  return next((w.split("=", 1)[1] for w in words if w.startswith(f"--{name}=")), default)


def _configs(words):
  """The configs a train command runs, or every cell (and --tune setting) of a sweep."""
  path, _, args = resolve_config_flag(_flag(words, "config")).partition(":")
  module = importlib.import_module(
      "experiments.configs." + pathlib.Path(path).stem)
  if words[0] == "experiments.train":
    return [module.get_config(args or None)]
  cells = []
  for row in _flag(words, "rows").split(","):
    for column in _flag(words, "columns").split(","):
      for tune in _flag(words, "tune").split(","):
        parts = (_flag(words, "common"), row, column, tune, "seed=0")
        cells.append(module.get_config(",".join(p.replace("+", ",") for p in parts if p)))
  return cells


COMMANDS = _commands()


def test_the_readme_has_the_commands_users_run():
  assert len([c for c in COMMANDS if c[0] == "experiments.train"]) >= 8
  assert any(c[0] == "experiments.sweep" for c in COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: _flag(w, "workdir") or w[0])
def test_readme_command_builds_its_configs(words):
  if words[0] == "experiments.llp_reference":  # no run, no workdir: a data set's bags
    assert _flag(words, "dataset") in available_datasets()
    return
  assert _flag(words, "workdir"), "every command names its --workdir"
  for config in _configs(words):
    assert config.dataset in available_datasets()
