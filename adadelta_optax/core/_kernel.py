"""The binding of the C++ CPU kernel (``adadelta_optax/_kernel/adadelta_cpu.cc``).

It loads the compiled kernel, checks that the installed jaxlib accepts it (the XLA FFI API
version), registers its targets for CPU, and calls it on groups of leaves, with a
:func:`jax.vmap` rule (the kernel serves the whole batch) and derivatives taken from the same
step in plain JAX. What the kernel computes is defined in :mod:`adadelta_optax.core._step`; the
kernel implements that arithmetic for float32 and float64 leaves, tested bit for bit or to a
stated ulp bound (``tests/test_kernel_flags.py``, ``tests/test_step.py``).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import re
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adadelta_optax.core._config import AdadeltaConfig
from adadelta_optax.core._weight_decay import is_disabled

# The package's root: the compiled kernel lies there, and warnings point past its frames.
_PACKAGE = Path(__file__).resolve().parent.parent

KERNEL_DTYPES = (jnp.dtype("float32"), jnp.dtype("float64"))

# The calling convention of the step, shared by the fused JAX step (core/_step.py) and the C++
# kernel, which reports its own (AdadeltaLayout): no handler is registered unless they match.
# Per-leaf option bits. NORM_FIRST (with NORM_CLIP): tf.keras 1.x order, the leaf's norm over the
# raw gradient and the value clip after. (16 is the kernel's own apply bit.)
CLIP_VALUE, SCALE, COUPLED, DECOUPLED, NORM_CLIP, NORM_FIRST = 1, 2, 4, 8, 32, 64
LEAF_FLAGS = (CLIP_VALUE, SCALE, COUPLED, DECOUPLED, NORM_CLIP, NORM_FIRST)
# The hyperparameter vector's slots, in order.
HYPER_FIELDS = (
  "rho",
  "one_minus_rho",
  "epsilon",
  "neg_lr",
  "grad_scale",
  "clipvalue",
  "clipnorm",
  "wd_coupled",
  "wd_decoupled",
)
LAYOUT = (*LEAF_FLAGS, *range(len(HYPER_FIELDS)), len(HYPER_FIELDS))


class GroupArrays(NamedTuple):
  """The arrays of one group of leaves, as every step function of a group takes them (a pytree).

  Attributes:
    grads: the leaves' gradients.
    params: their params, or ``None`` where the step does not read them.
    accum_grads: their :math:`E[g^2]`: one array per leaf, or (flat layout) the dtype's buffer.
    accum_vars: their :math:`E[\\Delta x^2]`, laid out as ``accum_grads``.
  """

  grads: list[jax.Array]
  params: list[jax.Array] | None
  accum_grads: Any
  accum_vars: Any


_SYMBOLS = {
  "adadelta_optax_tree_f32": "AdadeltaTreeF32",
  "adadelta_optax_tree_f64": "AdadeltaTreeF64",
  "adadelta_optax_flat_f32": "AdadeltaFlatF32",
  "adadelta_optax_flat_f64": "AdadeltaFlatF64",
}


# XLA checks the FFI API version a handler was compiled against when it is registered
# (xla/ffi/ffi_api.cc, RegisterHandler): same major, at least its minimum (0.1 in every jaxlib
# from 0.8.1 to 0.12.1, which speaks 0.5) and at most the running jaxlib's own; jaxlib 0.4.36 to
# 0.8.0 speak 0.1 and refuse anything newer (0.4.30 speaks 0.0 and checks nothing). A refused
# handler fails the start of JAX's whole CPU backend, so the versions are compared here first and
# nothing is registered when they do not fit.
FFI_API_MIN = (0, 1)
# The header of the running jaxlib that defines its FFI API version.
_FFI_API_HEADER = Path("xla", "ffi", "api", "c_api.h")
_FFI_API_DEFINE = re.compile(r"^#define XLA_FFI_API_(MAJOR|MINOR) (\d+)", re.MULTILINE)


class KernelUnavailableWarning(UserWarning):
  """The C++ CPU kernel cannot run here, so ``adadelta()`` runs the fused JAX path instead."""


def kernel_file() -> Path | None:
  """The compiled kernel next to this module: ``_adadelta_cpu.so``, as setup.py names it, else one
  with a CPython suffix (a build of an older setup.py); None when there is none."""
  directory = _PACKAGE
  if (directory / "_adadelta_cpu.so").is_file():
    return directory / "_adadelta_cpu.so"
  return next(iter(sorted(directory.glob("_adadelta_cpu*.so"))), None)


def format_api(version: tuple[int, int] | None) -> str:
  """An FFI API version as ``"0.1"`` (``"unknown"`` for None)."""
  return "unknown" if version is None else f"{version[0]}.{version[1]}"


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return "(version unknown)"


def rebuild_command() -> str:
  """The pip command that rebuilds the kernel against the installed jaxlib's FFI headers."""
  try:
    requirement = f"adadelta-optax=={importlib.metadata.version('adadelta-optax')}"
  except importlib.metadata.PackageNotFoundError:
    requirement = "adadelta-optax"
  return (
    "pip install 'setuptools>=77' && pip install --no-build-isolation --no-binary adadelta-optax "
    f"--force-reinstall --no-deps {requirement} (in a source checkout: `.` in place of "
    f"{requirement}; a C++17 compiler is needed)"
  )


@functools.cache
def running_ffi_api() -> tuple[int, int] | None:
  """The XLA FFI API version ``(major, minor)`` of the installed jaxlib (None if unknown).

  Read from the FFI header that jaxlib ships with itself (``jax.ffi.include_dir()``), the header
  its XLA was compiled with.
  """
  try:
    text = (Path(jax.ffi.include_dir()) / _FFI_API_HEADER).read_text()
  except OSError:
    return None
  found = dict(_FFI_API_DEFINE.findall(text))
  if set(found) != {"MAJOR", "MINOR"}:
    return None
  return int(found["MAJOR"]), int(found["MINOR"])


def built_ffi_api(library: ctypes.CDLL) -> tuple[int, int] | None:
  """The XLA FFI API version the kernel ``library`` was compiled against (None: too old to say)."""
  try:
    version_of = library.AdadeltaFfiApiVersion
  except AttributeError:
    return None
  version_of.argtypes = [ctypes.POINTER(ctypes.c_int32)] * 2
  version_of.restype = None
  major, minor = ctypes.c_int32(), ctypes.c_int32()
  version_of(ctypes.byref(major), ctypes.byref(minor))
  return major.value, minor.value


def ffi_api_mismatch(
  built: tuple[int, int] | None, running: tuple[int, int] | None, jaxlib_version: str
) -> str | None:
  """Why XLA would refuse a kernel built for FFI API ``built`` under ``running`` (None: it fits)."""
  if built is None:
    return (
      "the compiled kernel does not report the XLA FFI API version it was built for (a build of "
      f"an older adadelta-optax); rebuild it: {rebuild_command()}"
    )
  if running is None:
    return (
      f"the XLA FFI API version of the installed jaxlib {jaxlib_version} cannot be read (no "
      f"{_FFI_API_HEADER.as_posix()} under jax.ffi.include_dir()), so the kernel (built for FFI "
      f"API {format_api(built)}) is not registered"
    )
  if built[0] == running[0] and FFI_API_MIN <= built <= running:
    return None
  return (
    f"the kernel was compiled against XLA FFI API {format_api(built)} but the installed jaxlib "
    f"{jaxlib_version} speaks FFI API {format_api(running)} and accepts handlers of API "
    f"{format_api(FFI_API_MIN)} to {format_api(running)} only; rebuild the kernel against this "
    f"jaxlib: {rebuild_command()}"
  )


def built_layout(library: ctypes.CDLL) -> tuple[int, ...] | None:
  """The flags and hyperparameter slots the kernel ``library`` was compiled with, in
  :data:`LAYOUT` 's order (None: a build too old to say)."""
  try:
    layout_of = library.AdadeltaLayout
  except AttributeError:
    return None
  layout_of.argtypes = [ctypes.POINTER(ctypes.c_int32), ctypes.c_int32]
  layout_of.restype = ctypes.c_int32
  size = layout_of(None, 0)
  values = (ctypes.c_int32 * size)()
  layout_of(values, size)
  return tuple(values)


def layout_mismatch(built: tuple[int, ...] | None) -> str | None:
  """Why a kernel compiled with the calling convention ``built`` must not run (None: it fits)."""
  if built == LAYOUT:
    return None
  return (
    f"the compiled kernel's flags and hyperparameter slots {built} are not the package's "
    f"{LAYOUT} (flags {', '.join(map(str, LEAF_FLAGS))}; slots {', '.join(HYPER_FIELDS)}): it "
    f"was built from other sources; rebuild it: {rebuild_command()}"
  )


@functools.cache
def _load() -> str | None:
  """Registers the kernel's FFI targets for CPU; the reason it is unavailable, or None."""
  path = kernel_file()
  if path is None:
    return (
      "the compiled kernel (adadelta_optax/_adadelta_cpu.so) was not built with the package "
      f"(no C++17 compiler at install time?); to build it: {rebuild_command()}"
    )
  try:
    library = ctypes.CDLL(str(path))
    mismatch = ffi_api_mismatch(
      built_ffi_api(library), running_ffi_api(), _jaxlib_version()
    ) or layout_mismatch(built_layout(library))
    if mismatch is not None:
      return mismatch
    for target, symbol in _SYMBOLS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), "cpu")
  except (OSError, AttributeError) as error:
    return f"the compiled kernel {path.name} could not be loaded: {error}"
  return None


def kernel_available() -> bool:
  """Whether the CPU kernel was built, loads on this machine and fits the installed jaxlib.

  Example:
    >>> import adadelta_optax
    >>> available = adadelta_optax.kernel_available()
    >>> adadelta_optax.adadelta().implementation == ("kernel" if available else "fused")
    True
  """
  return _load() is None


def kernel_unavailable_reason() -> str | None:
  """Why :func:`kernel_available` is False (``None`` when it is True).

  Example:
    >>> import adadelta_optax
    >>> reason = adadelta_optax.kernel_unavailable_reason()
    >>> (reason is None) == adadelta_optax.kernel_available()
    True
  """
  return _load()


@functools.cache
def warn_if_unavailable() -> None:
  """Warns once per process, with the reason, when the default path cannot use the kernel."""
  reason = _load()
  if reason is not None:
    warnings.warn(
      "adadelta_optax: the C++ CPU kernel is unavailable, so adadelta() runs the fused JAX path "
      f"(the same step, slower on CPU): {reason}. adadelta_optax.info() shows the details; "
      "implementation='fused' chooses that path without this warning.",
      KernelUnavailableWarning,
      stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
  """The ``stacklevel`` of the first frame outside this package: the user's line that built the
  optimizer, however many of the package's functions lie between."""
  package = _PACKAGE
  frame: types.FrameType | None = sys._getframe(1)  # noqa: SLF001 - CPython's frame accessor
  level = 1
  while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(package):
    frame, level = frame.f_back, level + 1
  return level


def kernel_call(
  arrays: GroupArrays,
  hyper_rows: jax.Array,
  *,
  flags: np.ndarray,
  apply: bool,
  offset: int | None = None,
) -> tuple[list[jax.Array], Any, Any]:
  """All leaves of one dtype through one call of the C++ kernel, updated in place.

  ``hyper_rows`` has shape ``(segments, fields)`` (the fields of :data:`HYPER_FIELDS`): each
  leaf is cut into ``segments`` equal runs of elements, run ``s`` stepped with row ``s`` (one row
  for a plain step; one per batch element under :func:`jax.vmap`, see
  :func:`_batched_kernel_call`).

  ``apply`` writes the new params over the params; otherwise the update goes over the gradient,
  which in a train step dies there (XLA copies a gradient that is still needed first): in a step
  that computes the gradient and calls ``update`` then ``optax.apply_updates`` (``nnx.Optimizer``,
  linen's ``TrainState``) the update needs no buffer of its own.

  With ``offset`` (the flat layout, :class:`~adadelta_optax.FlatAdadeltaState`), the
  ``accum_grads`` and ``accum_vars`` of ``arrays`` are each the dtype's one accumulator buffer,
  whose elements from ``offset`` on belong to these leaves in order; they come back as one
  buffer each.
  """
  grads, params, accum_grads, accum_vars = arrays
  n = len(grads)
  flat = offset is not None
  dtype = accum_grads.dtype if flat else accum_grads[0].dtype
  shapes = [jax.ShapeDtypeStruct(jnp.shape(g), dtype) for g in grads]
  accums = [accum_grads, accum_vars] if flat else [*accum_grads, *accum_vars]
  has_params = params is not None
  first_accum = 2 + (2 if has_params else 1) * n  # after hyper, flags, grads and params
  aliases = {first_accum + i: n + i for i in range(len(accums))}
  if apply:
    aliases.update({2 + n + i: i for i in range(n)})
  else:
    aliases.update({2 + i: i for i in range(n)})
  results = [jax.ShapeDtypeStruct(a.shape, dtype) for a in accums]
  kind = "flat" if flat else "tree"
  call = jax.ffi.ffi_call(
    f"adadelta_optax_{kind}_{dtype.name.replace('float', 'f')}",
    [*shapes, *results],
    input_output_aliases=aliases,
  )
  attributes = {} if offset is None else {"offset": np.int64(offset)}
  out = call(
    hyper_rows,
    jnp.asarray(flags, jnp.int32),
    *grads,
    *(params or []),
    *accums,
    mode=np.int32(apply | (has_params << 1)),
    **attributes,
  )
  if flat:
    return list(out[:n]), out[n], out[n + 1]
  return list(out[:n]), list(out[n : 2 * n]), list(out[2 * n :])


def _batched_kernel_call(flags: np.ndarray, apply: bool, offset: int | None) -> Any:
  """:func:`kernel_call` with a :func:`jax.vmap` rule: the kernel serves the whole batch.

  The step is elementwise within a leaf except per-leaf norm clipping, whose norms the kernel
  takes per segment. A batch of ``B`` problems is therefore one call on the ``(B, ...)`` leaves
  with ``B`` hyperparameter rows per row before (a hyperparameter that is not batched, e.g. a
  constant learning rate, is repeated; an unbatched leaf is broadcast). Nested vmaps multiply the
  rows again, through the same rule.

  In the flat layout the accumulator buffers batch to ``(B, N)``: one row per problem, which
  the kernel takes as the rows of its segments.
  """

  @jax.custom_batching.custom_vmap
  def call(arrays: GroupArrays, hyper_rows: jax.Array) -> tuple[list[jax.Array], Any, Any]:
    return kernel_call(arrays, hyper_rows, flags=flags, apply=apply, offset=offset)

  @call.def_vmap
  def rule(axis_size: int, in_batched: Any, *args: Any) -> tuple[Any, Any]:
    def lift(x: jax.Array, batched: bool) -> jax.Array:
      return x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))

    arrays, hyper_rows = jax.tree.map(lift, list(args), list(in_batched))
    hyper_rows = hyper_rows.reshape(-1, hyper_rows.shape[-1])
    out = call(GroupArrays(*arrays), hyper_rows)
    return out, jax.tree.map(lambda _: True, out)

  return call


def group_kernel(
  arrays: GroupArrays,
  hyper: jax.Array,
  flags: np.ndarray,
  apply: bool,
  jax_fn: Callable[..., Any],
  offset: int | None = None,
) -> tuple[list[jax.Array], Any, Any]:
  """The kernel's group step, transformable like ``jax_fn``: the same step in plain JAX
  (:func:`adadelta_optax.core._step.group_jax` with these ``flags`` and ``apply``).

  Its derivatives (``jax.jvp``, ``jax.grad``, ``jax.linearize``: hypergradients, meta-learning)
  are those of ``jax_fn``; the primal values stay the kernel's. Under :func:`jax.vmap` the kernel
  takes the whole batch (:func:`_batched_kernel_call`). ``offset``: see :func:`kernel_call`.
  """
  call = _batched_kernel_call(flags, apply, offset)

  @jax.custom_jvp
  def step(arrays: GroupArrays, hyper: jax.Array) -> Any:
    return call(arrays, hyper[None])

  @step.defjvp
  def step_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    _, tangents_out = jax.jvp(jax_fn, primals, tangents)
    return step(*primals), tangents_out

  out, new_accum_grads, new_accum_vars = step(arrays, hyper)
  if offset is not None:
    return list(out), new_accum_grads, new_accum_vars
  return list(out), list(new_accum_grads), list(new_accum_vars)


def kernel_bytes(config: AdadeltaConfig, params: Any, accum_grad: Any, *, apply: bool) -> int:
  """Bytes the CPU kernel reads and writes in one step, by construction of its loop.

  Per element of a leaf it takes: read gradient and both accumulators, write both accumulators,
  and for ``apply`` read and write the parameter (else write the update, and read the parameter
  only for weight decay); one more read of the gradient for per-leaf norm clipping.
  """
  total = 0
  for x, a in zip(jax.tree.leaves(params), jax.tree.leaves(accum_grad), strict=True):
    dtype = jnp.result_type(a)
    if dtype not in KERNEL_DTYPES or jnp.result_type(x) != dtype:
      continue
    arrays = 7 if apply else 6 + (0 if is_disabled(config.weight_decay) else 1)
    arrays += 1 if config.clipnorm is not None else 0
    total += arrays * dtype.itemsize * int(np.prod(jnp.shape(a)))
  return total
