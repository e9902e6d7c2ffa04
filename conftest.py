"""pytest setup for the whole repository: which suites a run has, and the notebooks in quick mode.

The core tests need the core dependencies (jax, jaxlib, optax, numpy) and pytest alone. What needs
more is in ``SUITES``, with its markers: ``-m "not frameworks and not notebooks and not install"``
selects the core tests. A plain ``pytest`` skips, without importing it, whatever needs a module
that is not installed, and its summary names the module. With ``ADADELTA_REQUIRE_ALL=1``
(``make test``, CI) such a test fails instead: there nothing is left out for a missing package.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# notebooks/*.py are the notebooks' jupytext sources, not test modules (--doctest-modules would
# import, that is run, them); nbmake runs the paired .ipynb instead (`make test` passes --nbmake).
collect_ignore_glob = ["notebooks/*.py"]

# Kernels inherit this environment: the notebooks train on less data (see each notebook's top).
os.environ.setdefault("ADADELTA_NOTEBOOK_QUICK", "1")

REQUIRE_ALL = os.environ.get("ADADELTA_REQUIRE_ALL") == "1"

# What needs more than the core dependencies: a test file, or one test ("file::name", all of its
# parameters), with its markers and the modules it needs, imported by the file itself, by the
# scripts it runs or lazily by the package (orbax for checkpoints, torch in to_torch_state_dict,
# flatbuffers for jax.export's serialization).
SUITES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
  "adadelta_optax/checkpoint/_checkpoint.py": (("frameworks",), ("orbax.checkpoint",)),
  "tests/test_benchmarks.py": (("frameworks",), ("tqdm",)),
  "tests/test_checkpoint.py": (("frameworks",), ("orbax.checkpoint",)),
  "tests/test_examples.py": (("frameworks", "examples"), ("matplotlib", "tqdm", "sklearn")),
  "tests/test_export.py": ((), ("flatbuffers",)),
  "tests/test_external_data.py": (("frameworks",), ("hypothesis", "orbax.checkpoint")),
  "tests/test_step.py::test_fused_implementation_exports_for_cpu_and_runs": ((), ("flatbuffers",)),
  "tests/test_flat.py::test_nnx_flat_params_example": (("frameworks", "examples"), ("flax",)),
  "tests/test_flat_state.py::test_flax_nnx_optimizer": (("frameworks",), ("flax",)),
  "tests/test_flat_state.py::test_orbax_checkpoint_round_trip": (
    ("frameworks",),
    ("orbax.checkpoint",),
  ),
  "tests/test_hostile.py": (("frameworks",), ("hypothesis",)),
  "tests/test_install.py": (("install",), ("build",)),
  "tests/test_install_env.py": (("install",), ()),
  # Compiles the kernel from the checkout's source, which a run on an installed wheel has not.
  "tests/test_kernel_flags.py::test_a_kernel_built_with_other_slots_is_refused": (("install",), ()),
  "tests/test_layout.py::test_no_function_is_above_complexity_20": (("frameworks",), ("radon",)),
  "tests/test_integration.py": (("frameworks",), ("flax", "sklearn")),
  "tests/test_interop_keras.py": (("frameworks",), ("keras",)),
  "tests/test_interop_tf.py": (("frameworks",), ("tensorflow", "tf_keras")),
  "tests/test_interop_torch.py": (("frameworks",), ("torch",)),
  "tests/test_notebooks.py": (("notebooks",), ("jupytext", "nbformat")),
  "tests/test_reproductions.py": (
    ("frameworks", "examples"),
    ("matplotlib", "tqdm", "flax", "torch"),
  ),
  "tests/test_sharding.py": ((), ("flatbuffers",)),
  "tests/test_sparse.py": (("frameworks",), ("tensorflow", "tf_keras")),
  # to_torch_state_dict imports torch before it checks the options these tests refuse.
  "tests/test_state_transfer.py::test_to_torch_refuses": (("frameworks",), ("torch",)),
  "tests/test_torch_parity.py": (("frameworks",), ("torch",)),
  "tests/test_transformations.py::test_export_of_a_vmapped_step": ((), ("flatbuffers",)),
}


def _installed(module: str) -> bool:
  try:
    spec = importlib.util.find_spec(module)
  except ModuleNotFoundError:  # a parent package is missing
    return False
  # No origin: a bare namespace package, such as a checkout's build/ folder for "build".
  return spec is not None and spec.origin is not None


MISSING = {
  key: missing
  for key, (_, modules) in SUITES.items()
  if (missing := [module for module in modules if not _installed(module)])
}


def _needs(missing: list[str]) -> str:
  return f"needs {', '.join(missing)}, not installed (the test extra: pip install -e '.[test]')"


class MissingModules(pytest.File):
  """A suite file whose modules are missing: one test that says so, in place of importing it."""

  def collect(self) -> Iterator[pytest.Item]:
    yield MissingModulesItem.from_parent(self, name="missing-modules")


class MissingModulesItem(pytest.Item):
  def runtest(self) -> None:  # marked skip, or failed by pytest_runtest_setup
    raise AssertionError("unreachable")

  def reportinfo(self) -> tuple[Path, int, str]:
    return self.path, 0, self.name


# Where an installed adadelta_optax lies (its doctests are keyed as in the repository).
_SPEC = importlib.util.find_spec("adadelta_optax")
_INSTALLED = Path(_SPEC.origin).parents[1] if _SPEC and _SPEC.origin else None


def _file_key(path: Path, config: pytest.Config) -> str:
  """``path`` relative to the repository, or for an installed package's file, to site-packages."""
  for root in (config.rootpath, _INSTALLED):
    if root is not None and path.is_relative_to(root):
      return path.relative_to(root).as_posix()
  return path.as_posix()


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> list[pytest.Collector]:
  collectors = yield
  if _file_key(file_path, parent.config) in MISSING:
    return [MissingModules.from_parent(parent, path=file_path)]
  return collectors


def _keys(item: pytest.Item) -> tuple[str, str]:
  """The SUITES keys that can name ``item``: its file, and its test without parameters."""
  file = _file_key(item.path, item.config)
  name = item.nodeid.split("::", 1)[-1].split("[", 1)[0]
  return file, f"{file}::{name}"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  for item in items:
    if item.path.suffix == ".ipynb":
      item.add_marker("notebooks")
    for key in _keys(item):
      for marker in SUITES.get(key, ((), ()))[0]:
        item.add_marker(marker)
      if key in MISSING and not REQUIRE_ALL:
        item.add_marker(pytest.mark.skip(reason=_needs(MISSING[key])))


def pytest_runtest_setup(item: pytest.Item) -> None:
  for key in _keys(item):
    if key in MISSING and REQUIRE_ALL:
      pytest.fail(f"ADADELTA_REQUIRE_ALL=1 and {key} {_needs(MISSING[key])}", pytrace=False)


def pytest_report_header() -> str:
  missing = sorted({module for modules in MISSING.values() for module in modules})
  if not missing:
    return "suites beyond the core: all of their modules are installed"
  effect = "fail" if REQUIRE_ALL else "are skipped"
  return f"suites beyond the core: the tests that need {', '.join(missing)} {effect}"
