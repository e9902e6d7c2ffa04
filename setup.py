"""Builds the optional CPU kernel (an XLA FFI handler) next to the pure-Python package.

Only a C++17 compiler is needed: the XLA FFI headers ship inside the ``jaxlib`` wheel, which the
build requires (``[build-system]`` in pyproject.toml pins the jaxlib whose headers the kernel is
compiled against; see there why). Without a compiler the package installs without the kernel, as a
``py3-none-any`` wheel, and uses the fused JAX path everywhere (``adadelta_optax.info()`` says
why).

The kernel is a plain shared library that ``adadelta_optax/_fast.py`` loads with ctypes and hands
to XLA; it is not a CPython extension module and touches no Python API. So it is named
``_adadelta_cpu.so`` (no CPython ABI suffix) and the wheel is tagged ``py3-none-<platform>``: one
wheel serves every Python 3. On Linux the C++ runtime is linked statically (when the toolchain has
it), so the library needs only glibc and ``auditwheel repair`` can give it a ``manylinux`` tag.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

KERNEL = "adadelta_optax._adadelta_cpu"
# libstdc++ and libgcc inside the library, their symbols kept out of its dynamic symbol table.
STATIC_RUNTIME = ["-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL"]


def _ffi_include_dir() -> str:
  import jaxlib  # a build requirement (pyproject.toml)

  return str(Path(jaxlib.__file__).resolve().parent / "include")


class BuildKernel(build_ext):
  """Names the kernel ``_adadelta_cpu.so`` and links its C++ runtime statically where it can."""

  def get_ext_filename(self, fullname: str) -> str:
    # Called with the full dotted name and, by get_ext_fullpath, with its last part alone.
    if fullname in (KERNEL, KERNEL.rpartition(".")[2]):
      return os.path.join(*fullname.split(".")) + ".so"
    return super().get_ext_filename(fullname)

  def build_extension(self, ext: Extension) -> None:
    if ext.name != KERNEL or not sys.platform.startswith("linux"):
      super().build_extension(ext)
      return
    dynamic_args = list(ext.extra_link_args)
    ext.extra_link_args = dynamic_args + STATIC_RUNTIME
    try:
      super().build_extension(ext)
    except LinkError:
      # Toolchains without libstdc++.a (some distributions package it separately): link the
      # shared C++ runtime instead; only the manylinux tag of the wheel depends on it.
      print("warning: cannot link the C++ runtime statically; linking it dynamically instead")
      ext.extra_link_args = dynamic_args
      super().build_extension(ext)


class PlatformWheel(bdist_wheel):
  """Tags the wheel ``py3-none-<platform>`` with the kernel and ``py3-none-any`` without it."""

  def get_tag(self) -> tuple[str, str, str]:
    _, _, platform = super().get_tag()
    if not any(Path(self.bdist_dir).rglob("_adadelta_cpu*.so")):
      return "py3", "none", "any"  # no compiler: the pure-Python package
    return "py3", "none", platform


setup(
  cmdclass={"build_ext": BuildKernel, "bdist_wheel": PlatformWheel},
  ext_modules=[
    Extension(
      KERNEL,
      sources=["adadelta_optax/_kernel/adadelta_cpu.cc"],
      include_dirs=[_ffi_include_dir()],
      language="c++",
      extra_compile_args=[
        "-std=c++17",
        "-O3",
        "-fno-math-errno",
        "-ffp-contract=off",
        "-Wno-attributes",
        "-Wno-return-type",
      ],
      extra_link_args=["-pthread"],
      optional=True,
    )
  ],
)
