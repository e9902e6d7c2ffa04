"""The package's layout: imports point one way, the public names are where the docs say."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import adadelta_optax

PACKAGE = Path(adadelta_optax.__file__).parent
# Each layer may import the ones before it, never one after it.
LAYERS = ("core", "distributed", "checkpoint", "interop")


def _imports(path: Path) -> set[str]:
  """The adadelta_optax modules ``path`` imports (at any depth of the file)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "adadelta_optax":  # from the root: its public modules, or the root
        modules = [a.name for a in node.names if a.name in ("presets", "schedules")]
        found.update(f"adadelta_optax.{name}" for name in modules)
        if len(modules) < len(node.names):
          found.add("adadelta_optax")
      elif node.module.startswith("adadelta_optax"):
        found.add(node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("adadelta_optax"))
  return found


def _layer(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_downwards_only(layer):
  """core at the bottom; interop on top. ``schedules`` (built on core alone) is above core."""
  allowed = set(LAYERS[: LAYERS.index(layer) + 1])
  above_core = {"adadelta_optax", "adadelta_optax.presets", "adadelta_optax.schedules"}
  offenders = []
  for path in sorted((PACKAGE / layer).glob("*.py")):
    for module in _imports(path):
      target = _layer(module)
      upward = module in above_core if layer == "core" else module == "adadelta_optax"
      if (target is not None and target not in allowed) or upward:
        offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
  assert not offenders, offenders


def test_core_modules_import_no_circle():
  """The modules of core import each other in a directed acyclic graph."""
  graph = {}
  for path in (PACKAGE / "core").glob("_*.py"):
    name = f"adadelta_optax.core.{path.stem}"
    graph[name] = {m for m in _imports(path) if m.startswith("adadelta_optax.core._")}
    graph[name] = {".".join(m.split(".")[:3]) for m in graph[name]} - {name}
  done: set[str] = set()

  def visit(node: str, stack: tuple[str, ...]) -> None:
    assert node not in stack, f"import circle: {' -> '.join((*stack, node))}"
    if node in done:
      return
    for target in graph.get(node, ()):
      visit(target, (*stack, node))
    done.add(node)

  for node in graph:
    visit(node, ())
  assert "adadelta_optax.core._optimizer" in done and len(done) >= 15


def test_no_lazy_import_inside_the_core():
  """No function of the core imports a module of the package (the old way around a circle)."""
  for path in (PACKAGE / "core").glob("*.py"):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.FunctionDef):
        for inner in ast.walk(node):
          if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("adadelta"):
            pytest.fail(f"{path.name}:{inner.lineno} imports {inner.module} inside {node.name}")


def test_public_names_resolve_and_are_documented():
  for namespace in (adadelta_optax, *(getattr(adadelta_optax, n) for n in LAYERS)):
    for name in namespace.__all__:
      value = getattr(namespace, name)
      if callable(value) and not isinstance(value, type(adadelta_optax)):
        assert value.__doc__, f"{namespace.__name__}.{name} has no docstring"
  assert set(adadelta_optax.interop.__all__).isdisjoint(adadelta_optax.__all__)


def test_moved_names_still_work_with_a_deprecation_warning():
  with pytest.warns(DeprecationWarning, match=r"adadelta_optax\.interop\.from_keras_config"):
    moved = adadelta_optax.from_keras_config
  assert moved is adadelta_optax.interop.from_keras_config
  with pytest.warns(DeprecationWarning, match=r"adadelta_optax\.checkpoint\.CheckpointError"):
    assert adadelta_optax.CheckpointError is adadelta_optax.checkpoint.CheckpointError
  with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
    adadelta_optax.nothing_here  # noqa: B018


def test_importing_the_package_loads_no_framework():
  """torch, TensorFlow, Keras and orbax load only inside the functions that need them."""
  code = (
    "import sys, adadelta_optax; "
    "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'tf_keras', 'orbax') "
    "if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout


def test_no_function_is_above_complexity_20():
  """Cyclomatic complexity (radon, as optax's worst stay at or below 10): no function of the
  package above 20, so that each can be held in one's head; the step's own far below."""
  from radon.complexity import cc_visit

  package = Path(adadelta_optax.__file__).parent
  scores = {
    f"{path.relative_to(package)}:{block.name}": block.complexity
    for path in sorted(package.rglob("*.py"))
    for block in cc_visit(path.read_text())
  }
  assert len(scores) > 200, len(scores)  # the scan saw the package
  assert {name: c for name, c in scores.items() if c > 20} == {}
  step = {name: c for name, c in scores.items() if name.startswith("core/_step.py")}
  assert step and max(step.values()) <= 16, step  # plan() is the most branched
