# `make demo`: the Zeiler 2012 MNIST run. `make test`: the whole test suite (what CI runs).
# Both create a virtualenv in .venv (override with VENV=...) and install what they need.
# `make docs`: the documentation site (Sphinx, docs/) into docs/_build/html, warnings as errors.
# `make test-versions`: the core tests on the oldest jax, jaxlib and optax that pyproject.toml
# declares, on a release in between and on the newest, each in a fresh virtualenv of its own with
# the same wheel (.ci/versions.sh; CI runs it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: demo test docs test-versions notebooks clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.docs: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

demo: $(VENV)/.demo
	$(PY) examples/zeiler_mnist.py $(ARGS)

test: $(VENV)/.test
	$(PY) -m ruff check adadelta_optax tests examples benchmarks notebooks conftest.py
	$(PY) -m ruff format --check adadelta_optax tests examples benchmarks notebooks conftest.py
	$(PY) -m mypy  # strict, on adadelta_optax ([tool.mypy] in pyproject.toml)
	ADADELTA_REQUIRE_ALL=1 $(PY) -m pytest -n 2 --dist loadgroup --nbmake -q --durations=15

# The site from a fresh environment every time (-E: every page read again, so every warning is seen),
# offline (no intersphinx inventories), -n: broken cross-references are errors, -W: so is any
# warning. The notebooks are rendered from their executed .ipynb, not re-run. About 15 s.
docs: $(VENV)/.docs
	rm -rf docs/api/generated  # autosummary's pages: a removed name must not keep its page
	$(PY) -m sphinx -E -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: file://$(abspath docs/_build/html/index.html)"

# Needs python3.x interpreters (see .ci/versions.sh), pip and a C++ compiler; not .venv.
test-versions:
	bash .ci/versions.sh

# Regenerates each notebooks/NAME.ipynb from its jupytext source NAME.py and executes it in full
# (not the quick mode the tests use), so that the committed notebooks show real outputs.
notebooks: $(VENV)/.test
	cd notebooks && for src in *.py; do \
	  $(abspath $(PY)) -m jupytext --to ipynb "$$src" && \
	  env -u ADADELTA_NOTEBOOK_QUICK $(abspath $(VENV))/bin/jupyter-execute --inplace "$${src%.py}.ipynb" || exit 1; \
	done

clean:
	rm -rf $(VENV) runs
