"""The committed notebooks: each .ipynb matches its jupytext .py source and shows real outputs.

nbmake executes the notebooks themselves (in quick mode; see conftest.py at the root); these
tests check what users see on GitHub and Colab: the executed full run, in sync with the source.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_there_are_notebooks():
  assert {s.stem for s in SOURCES} >= {"quickstart", "flax_nnx_mnist", "migration"}


@pytest.fixture(params=SOURCES, ids=lambda p: p.stem)
def pair(request):
  source = request.param
  notebook = source.with_suffix(".ipynb")
  assert notebook.is_file(), f"{notebook.name} missing: run `make notebooks`"
  return jupytext.read(source), nbformat.read(notebook, as_version=4)


def test_notebook_matches_its_source(pair):
  source, notebook = pair
  cells = [(c.cell_type, c.source) for c in source.cells]
  assert [(c.cell_type, c.source) for c in notebook.cells] == cells, (
    "the .ipynb differs from its .py source: run `make notebooks`"
  )


def test_notebook_was_executed_in_full(pair):
  _, notebook = pair
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs)
  assert "QUICK" not in text, "committed outputs must come from the full run"
  assert any("image/png" in o.get("data", {}) for o in outputs), "no inline plot"


def test_first_cell_installs_the_package_when_missing(pair):
  source, _ = pair
  first_code = next(c for c in source.cells if c.cell_type == "code").source
  assert "find_spec(module) is None" in first_code and '"adadelta-optax"' in first_code
  assert "pip" in first_code
