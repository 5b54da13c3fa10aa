r"""Executes the notebooks as a user would and saves them with their outputs.

Each notebook runs in a fresh directory outside the checkout, with only the
installed package importable (no PYTHONPATH), in its `SMALL = True` form:

  pip install '.[test]'
  LABELJAX_RAW_DATA_DIR=../shared/data python colabs/refresh.py [NAME.ipynb ...]

The test suite runs the same `execute` on every notebook (tests/test_colabs.py).
"""

import os
import pathlib
import sys
import tempfile

import nbclient
import nbformat

COLABS = pathlib.Path(__file__).resolve().parent


def execute(path: pathlib.Path, timeout: int = 900) -> nbformat.NotebookNode:
  """`path` executed top to bottom in an empty temporary directory."""
  notebook = nbformat.read(path, as_version=4)
  for i, cell in enumerate(notebook.cells):
    cell.setdefault("id", f"cell-{i}")  # stable ids: small diffs on refresh
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.setdefault("JAX_PLATFORMS", "cpu")
  saved = dict(os.environ)
  os.environ.clear()
  os.environ.update(env)  # the kernel inherits this environment
  try:
    with tempfile.TemporaryDirectory() as cwd:
      nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                              resources={"metadata": {"path": cwd}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(saved)
  return notebook


def main(names: list[str]) -> None:
  # Names with or without .ipynb; none: every notebook.
  paths = ([COLABS / pathlib.Path(n).with_suffix(".ipynb").name for n in names]
           or sorted(COLABS.glob("*.ipynb")))
  for path in paths:
    print(f"executing {path.name} ...", flush=True)
    notebook = execute(path)
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)


if __name__ == "__main__":
  main(sys.argv[1:])
