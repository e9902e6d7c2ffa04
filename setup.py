"""Builds the optional CPU kernel (an XLA FFI handler) next to the pure-Python package.

Only a C++17 compiler is needed: the XLA FFI headers ship inside the ``jaxlib`` wheel, which the
build requires (``[build-system]`` in pyproject.toml pins the jaxlib whose headers the kernel is
compiled against; see there why). Without a compiler the package installs without the kernel, as a
``py3-none-any`` wheel, and uses the fused JAX path everywhere (``adadelta_optax.info()`` says
why).

The kernel is a plain shared library that ``adadelta_optax/core/_kernel.py`` loads with ctypes and
hands to XLA; it is not a CPython extension module and touches no Python API. So it is named
``_adadelta_cpu.so`` (no CPython ABI suffix) and the wheel is tagged ``py3-none-<platform>``: one
wheel serves every Python 3. It needs only libc and libstdc++ (both allowed by the manylinux
policies), so ``auditwheel repair`` gives it a ``manylinux`` tag: the newest glibc and libstdc++
symbols it uses set which one (linking libstdc++ statically would add newer glibc symbols, not
fewer); built in a manylinux container, the tag is that container's.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

KERNEL = "adadelta_optax._adadelta_cpu"
# The kernel's compiler and linker flags; benchmarks/_floor.py builds the benchmarks' floor with
# them too (it reads them from here, which is why setup() runs only as __main__, as pip runs it).
COMPILE_ARGS = [
  "-std=c++17",
  "-O3",
  "-fno-math-errno",
  "-ffp-contract=off",
  "-Wno-attributes",
  "-Wno-return-type",
]
LINK_ARGS = ["-pthread"]


def _ffi_include_dir() -> str:
  import jaxlib  # a build requirement (pyproject.toml)

  return str(Path(jaxlib.__file__).resolve().parent / "include")


class BuildKernel(build_ext):
  """Names the kernel ``_adadelta_cpu.so``: a library for ctypes, not a CPython module."""

  def get_ext_filename(self, fullname: str) -> str:
    # Called with the full dotted name and, by get_ext_fullpath, with its last part alone.
    if fullname in (KERNEL, KERNEL.rpartition(".")[2]):
      return os.path.join(*fullname.split(".")) + ".so"
    return super().get_ext_filename(fullname)


class PlatformWheel(bdist_wheel):
  """Tags the wheel ``py3-none-<platform>`` with the kernel and ``py3-none-any`` without it."""

  def get_tag(self) -> tuple[str, str, str]:
    _, _, platform = super().get_tag()
    if not any(Path(self.bdist_dir).rglob("_adadelta_cpu*.so")):
      return "py3", "none", "any"  # no compiler: the pure-Python package
    return "py3", "none", platform


if __name__ == "__main__":
  setup(
    cmdclass={"build_ext": BuildKernel, "bdist_wheel": PlatformWheel},
    ext_modules=[
      Extension(
        KERNEL,
        sources=["adadelta_optax/_kernel/adadelta_cpu.cc"],
        include_dirs=[_ffi_include_dir()],
        language="c++",
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
        optional=True,
      )
    ],
  )
