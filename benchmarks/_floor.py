"""The benchmarks' floor: a kernel that moves exactly the bytes of an Adadelta apply step.

:func:`floor_step` reads each gradient, parameter and accumulator once and writes the parameter
and both accumulators once (28 B per float32 parameter), with one add per array and no other
arithmetic, in one XLA FFI call for all its leaves, like the library's kernel. Its source,
``floor_cpu.cc``, includes the library's kernel source, so it runs on the same partitioning, XLA
thread pool and per-ISA loops. It is not part of the library: it is compiled on first use with
setup.py's flags against the running jaxlib's FFI headers (``jax.ffi.include_dir()``) and cached
under ``build/floor/`` (git-ignored), one file per source, flags and headers.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import runpy
import shutil
import subprocess
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).with_name("floor_cpu.cc")
KERNEL_SOURCE = ROOT / "adadelta_optax" / "_kernel" / "adadelta_cpu.cc"
CACHE = ROOT / "build" / "floor"
_SYMBOLS = {"float32": "AdadeltaFloorF32", "float64": "AdadeltaFloorF64"}


def _target(dtype_name: str) -> str:
  return f"adadelta_optax_bench_floor_{dtype_name}"


def _compiler() -> str:
  compiler = os.environ.get("CXX", "c++")
  if shutil.which(compiler) is None:
    raise RuntimeError(f"the floor kernel needs a C++17 compiler: {compiler!r} (CXX) not found")
  return compiler


@functools.cache
def library() -> Path:
  """The compiled floor, built now if this source, these flags and headers have none yet."""
  setup = runpy.run_path(str(ROOT / "setup.py"), run_name="floor")  # setup() runs as __main__ only
  include = Path(jax.ffi.include_dir())
  command = [
    _compiler(),
    *setup["COMPILE_ARGS"],
    "-fPIC",
    "-shared",
    f"-I{include}",
    str(SOURCE),
    *setup["LINK_ARGS"],
  ]
  key = hashlib.sha256("\0".join(command).encode())
  headers = include / "xla" / "ffi" / "api"
  for path in (SOURCE, KERNEL_SOURCE, headers / "ffi.h", headers / "api.h", headers / "c_api.h"):
    key.update(path.read_bytes())
  built = CACHE / f"floor_cpu-{key.hexdigest()[:16]}.so"
  if not built.is_file():
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = built.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run([*command, "-o", str(partial)], check=True)
    partial.replace(built)  # atomic: a concurrent run sees the whole file or none
  return built


@functools.cache
def _register() -> None:
  handlers = ctypes.CDLL(str(library()))
  for dtype_name, symbol in _SYMBOLS.items():
    capsule = jax.ffi.pycapsule(getattr(handlers, symbol))
    jax.ffi.register_ffi_target(_target(dtype_name), capsule, "cpu")


def floor_step(
  grads: list[jax.Array],
  params: list[jax.Array],
  accum_grads: list[jax.Array],
  accum_vars: list[jax.Array],
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """The floor of one apply step over float32 or float64 leaves: ``(params, accum_grads,
  accum_vars)``, written over the given ones (alias them by donating, as the step does)."""
  _register()
  n = len(grads)
  dtype = params[0].dtype
  if dtype.name not in _SYMBOLS:
    raise TypeError(f"floor_step: params of dtype {dtype.name}; only float32 and float64")
  shapes = [jax.ShapeDtypeStruct(x.shape, dtype) for x in params]
  aliases = {n + i: i for i in range(3 * n)}
  call = jax.ffi.ffi_call(_target(dtype.name), shapes * 3, input_output_aliases=aliases)
  out = call(*grads, *params, *accum_grads, *accum_vars)
  return list(out[:n]), list(out[n : 2 * n]), list(out[2 * n :])
