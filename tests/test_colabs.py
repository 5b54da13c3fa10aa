"""Every notebook in colabs/ runs as its users run it, and is committed with
its outputs (so its plots show on GitHub)."""

import importlib.util
import pathlib

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "colabs").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("refresh", REPO / "colabs" / "refresh.py")
refresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_outside_the_checkout(path):
  """From an empty directory, no PYTHONPATH: only the installed package."""
  notebook = refresh.execute(path)
  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs_and_an_install_cell(path):
  notebook = nbformat.read(path, as_version=4)
  assert "%pip install" in notebook.cells[1].source  # Colab's way in
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.execution_count for cell in code), "run colabs/refresh.py"
  images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
  assert images, f"{path.name} shows no plot; run colabs/refresh.py"
