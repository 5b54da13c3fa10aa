"""The dependency direction: core <- families <- recipes <- methods.

The train core (and the data, models and augmentation it uses) imports no
algorithm family; a family imports only the core; recipes compose families;
`labeljax.methods` dispatches a config to all of them. Read from the source
(every `import`, function-local ones included), so a violation fails here
before it becomes an import cycle.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "labeljax"
FAMILIES = ("ssl", "llp", "distill", "selfsup")
ABOVE_FAMILIES = ("recipes", "methods")


def _imports(path: pathlib.Path) -> set[str]:
  """The labeljax modules `path` imports, as dotted names."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return {n for n in names if n.split(".")[0] == "labeljax"}


def _layer(module: str) -> str | None:
  """The family or upper layer a dotted labeljax name belongs to; None for core."""
  parts = module.split(".")
  if len(parts) > 1 and parts[1] in (*FAMILIES, *ABOVE_FAMILIES):
    return parts[1]
  return None


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    module = ".".join(("labeljax", *path.relative_to(PACKAGE).with_suffix("").parts))
    yield module.removesuffix(".__init__"), path


def _violations(allowed) -> list[str]:
  found = []
  for module, path in _modules():
    for target in _imports(path):
      if not allowed(_layer(module), _layer(target)):
        found.append(f"{module} imports {target}")
  return found


def test_the_core_imports_no_family_and_families_only_the_core():
  def allowed(source, target):
    if target is None or source == target:
      return True  # anything may use the core; a layer may use itself
    if source is None or source in FAMILIES:
      return False  # the core knows no family, a family no other family
    if source == "recipes":
      return target in FAMILIES
    return True  # methods: everything
  assert not _violations(allowed)


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
  """The test above would catch the old cycle: trainer importing methods."""
  fake = tmp_path / "labeljax"
  (fake / "train").mkdir(parents=True)
  (fake / "train" / "trainer.py").write_text(
      "def f():\n  from labeljax import methods\n")
  (fake / "ssl").mkdir()
  (fake / "ssl" / "training.py").write_text("from labeljax.distill import kd\n")
  monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
  with pytest.raises(AssertionError) as failure:
    test_the_core_imports_no_family_and_families_only_the_core()
  assert "labeljax.train.trainer imports labeljax.methods" in str(failure.value)
  assert "labeljax.ssl.training imports labeljax.distill" in str(failure.value)
