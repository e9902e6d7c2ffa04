"""info(): what a bug report needs, with the declared JAX range and whether the install is in it.

Runs in every environment .ci/versions.sh makes (oldest, middle, newest), so each of them checks
that the versions it installed are inside the range pyproject.toml declares.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import adadelta_optax
from adadelta_optax.core import _info

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _declared() -> dict[str, set[str]]:
  """pyproject.toml's specifiers for jax, jaxlib and optax, as sets (their order is free)."""
  with open(PYPROJECT, "rb") as file:
    dependencies = tomllib.load(file)["project"]["dependencies"]
  declared = {}
  for requirement in dependencies:
    found = re.fullmatch(r"\s*(jax|jaxlib|optax)\s*([<>=!~].*)", requirement)
    if found:
      declared[found[1]] = {s.strip() for s in found[2].split(",") if s.strip()}
  return declared


def _specifiers(report_entry: str) -> dict[str, set[str]]:
  ranges = {}
  for part in re.findall(r"(jax|jaxlib|optax)((?:[<>=!]=?[0-9][\w.]*,?)+)", report_entry):
    ranges[part[0]] = set(filter(None, part[1].split(",")))
  return ranges


def test_info_reports_the_declared_range_and_that_the_install_is_in_it():
  report = adadelta_optax.info(print_report=False)
  if report["supported"].startswith("unknown"):
    pytest.fail("adadelta_optax is not installed (no metadata): pip install -e . first")
  assert _specifiers(report["supported"]) == _declared(), report["supported"]
  assert report["in_supported_range"] == "yes", report


@pytest.mark.parametrize(
  ("version", "specifiers", "inside"),
  [
    ("0.12.1", ">=0.6.2", True),
    ("0.6.2", ">=0.6.2", True),
    ("0.6.1", ">=0.6.2", False),
    ("0.10.2", ">=0.6.2,<0.11", True),
    ("0.11.0", ">=0.6.2,<0.11", False),
    ("0.2.7", ">=0.2.4,!=0.2.7", False),
    ("0.4.36rc1", ">=0.4.36", True),
    ("1.0", "~=1.0", True),  # a form the report does not read is not held against the install
  ],
)
def test_range_check_reads_release_numbers(version, specifiers, inside):
  assert _info._satisfies(version, specifiers) is inside
