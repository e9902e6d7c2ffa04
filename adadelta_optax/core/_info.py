"""What a bug report needs: versions, devices, and whether (and why not) the CPU kernel runs."""

from __future__ import annotations

import ctypes
import importlib.metadata
import platform
import sys

import jax

from adadelta_optax._version import __version__
from adadelta_optax.core import _kernel


def _version(distribution: str) -> str:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def _api(version: tuple[int, int] | None) -> str:
  return "unknown" if version is None else f"{version[0]}.{version[1]}"


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

  Entries: the versions of adadelta-optax, Python, jax, jaxlib and optax; the platform; JAX's
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
  report = {
    "adadelta_optax": __version__,
    "python": sys.version.split()[0],
    "platform": platform.platform(),
    "jax": _version("jax"),
    "jaxlib": _version("jaxlib"),
    "optax": _version("optax"),
    "backend": backend,
    "devices": devices,
    "kernel": "available" if available else "unavailable",
    "kernel_reason": _kernel.kernel_unavailable_reason() or "-",
    "kernel_file": "-" if path is None else str(path),
    "ffi_api_built": _api(built),
    "ffi_api_running": _api(running),
  }
  if print_report:
    width = max(len(key) for key in report)
    for key, value in report.items():
      print(f"{key:<{width}}  {value}")
  return report
