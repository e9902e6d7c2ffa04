"""What a bug report needs: versions, devices, and whether (and why not) the CPU kernel runs."""

from __future__ import annotations

import ctypes
import importlib.metadata
import operator
import platform
import re
import sys

import jax

from adadelta_optax._version import __version__
from adadelta_optax.core import _kernel


def _version(distribution: str) -> str:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


# The distributions whose declared range the report checks, and the comparisons a range may use.
_CHECKED = ("jax", "jaxlib", "optax")
_COMPARE = {
  ">=": operator.ge,
  "<=": operator.le,
  ">": operator.gt,
  "<": operator.lt,
  "==": operator.eq,
  "!=": operator.ne,
}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*([^;]*)")


def _release(version: str) -> tuple[int, ...]:
  """The numeric release of a version string: ``"0.12.1"`` -> ``(0, 12, 1)``, ``"0.4.0rc1"`` ->
  ``(0, 4, 0)``."""
  parts = []
  for part in version.split("."):
    digits = re.match(r"\d+", part)
    if digits is None:
      break
    parts.append(int(digits[0]))
  return tuple(parts)


def _satisfies(version: str, specifiers: str) -> bool:
  """Whether ``version`` meets every ``OP VERSION`` of ``specifiers`` (release numbers only)."""
  for spec in filter(None, (s.strip() for s in specifiers.split(","))):
    found = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][\w.]*)", spec)
    if found is None:
      continue  # a form this report does not read (~=, ===): not held against the install
    if not _COMPARE[found[1]](_release(version), _release(found[2])):
      return False
  return True


def supported_range() -> dict[str, str]:
  """The declared ranges of jax, jaxlib and optax, from this installation's metadata.

  ``{"jax": ">=0.6.2", ...}``; empty when the package runs from a source tree that was never
  installed (no metadata to read).
  """
  try:
    requirements = importlib.metadata.requires("adadelta-optax") or []
  except importlib.metadata.PackageNotFoundError:
    return {}
  ranges = {}
  for requirement in requirements:
    found = _REQUIREMENT.match(requirement)
    if found and found[1].lower() in _CHECKED and "extra" not in requirement:
      ranges[found[1].lower()] = found[2].strip() or "any"
  return ranges


def _range_report() -> tuple[str, str]:
  """``(declared range, whether the installed versions are in it)`` for the report."""
  ranges = supported_range()
  if not ranges:
    return "unknown (not installed: no metadata)", "unknown"
  declared = ", ".join(f"{name}{spec}" for name, spec in ranges.items())
  outside = [
    f"{name} {_version(name)}"
    for name, spec in ranges.items()
    if _version(name) != "not installed" and not _satisfies(_version(name), spec)
  ]
  return declared, "yes" if not outside else f"no: {', '.join(outside)}"


def _devices() -> tuple[str, str]:
  try:
    return jax.default_backend(), ", ".join(str(device) for device in jax.devices())
  except RuntimeError as error:  # a backend that cannot start says why here
    return "unavailable", f"{type(error).__name__}: {error}"


def info(*, print_report: bool = True) -> dict[str, str]:
  """The versions, devices and kernel status of this installation, for a bug report.

  Prints them (one ``key  value`` per line, unless ``print_report`` is False) and returns them as
  a dict. Initializes JAX's backends (to list the devices): in a multi-process run, call it after
  ``jax.distributed.initialize``.

  Entries: the versions of adadelta-optax, Python, jax, jaxlib and optax; the ranges of jax,
  jaxlib and optax this release declares (and tests at both ends, see the README) and whether the
  installed ones are in them; the platform; JAX's
  default backend and devices; whether the C++ CPU kernel is available, why not, and which file
  it is; the XLA FFI API version the kernel was compiled against and the one the installed jaxlib
  speaks (the kernel runs when they are compatible, see :func:`adadelta_optax.kernel_available`).

  Example:
    >>> import adadelta_optax
    >>> report = adadelta_optax.info(print_report=False)
    >>> report["kernel"] in ("available", "unavailable")
    True
    >>> sorted(report)[:4]
    ['adadelta_optax', 'backend', 'devices', 'ffi_api_built']
  """
  available = _kernel.kernel_available()
  path = _kernel.kernel_file()
  built = None
  if path is not None:
    try:
      built = _kernel.built_ffi_api(ctypes.CDLL(str(path)))
    except OSError:
      pass
  try:
    running = _kernel.running_ffi_api()
  except AttributeError:  # a jax without jax.ffi
    running = None
  backend, devices = _devices()
  declared, in_range = _range_report()
  report = {
    "adadelta_optax": __version__,
    "python": sys.version.split()[0],
    "platform": platform.platform(),
    "jax": _version("jax"),
    "jaxlib": _version("jaxlib"),
    "optax": _version("optax"),
    "supported": declared,
    "in_supported_range": in_range,
    "backend": backend,
    "devices": devices,
    "kernel": "available" if available else "unavailable",
    "kernel_reason": _kernel.kernel_unavailable_reason() or "-",
    "kernel_file": "-" if path is None else str(path),
    "ffi_api_built": _kernel.format_api(built),
    "ffi_api_running": _kernel.format_api(running),
  }
  if print_report:
    width = max(len(key) for key in report)
    for key, value in report.items():
      print(f"{key:<{width}}  {value}")
  return report
