"""The fused fast path: the whole Adadelta step of every leaf in one pass over memory.

On CPU, the float32 and float64 leaves go to a C++ XLA FFI kernel (``_kernel/adadelta_cpu.cc``),
up to :data:`MAX_LEAVES_PER_CALL` leaves per call, which reads each gradient, parameter and
accumulator once and writes the parameter and accumulators once, in place: 28 bytes per float32
parameter (32 with norm clipping, whose norm needs one more read of the gradient). On every other
platform, and for leaves the kernel does not take (complex, bfloat16/float16, accumulators in
another dtype), the same step runs as plain JAX built from the functions of the reference path
(:func:`adadelta_optax._core.adadelta_step` and friends), which XLA fuses on GPU and TPU. The
choice is made by :func:`jax.lax.platform_dependent` at lowering time, so one jitted or exported
function serves CPU, GPU and TPU."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import re
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adadelta_optax import _clipping, _core
from adadelta_optax._config import AdadeltaConfig
from adadelta_optax._learning_rate import decayed_learning_rate
from adadelta_optax._weight_decay import is_disabled, resolve_mask

# Bit flags and hyperparameter layout shared with _kernel/adadelta_cpu.cc. NORM_FIRST (with
# NORM_CLIP): tf.keras 1.x order, the leaf's norm over the raw gradient and the value clip after.
CLIP_VALUE, SCALE, COUPLED, DECOUPLED, NORM_CLIP, NORM_FIRST = 1, 2, 4, 8, 32, 64
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
KERNEL_DTYPES = (jnp.dtype("float32"), jnp.dtype("float64"))
# XLA's compile time grows faster than linearly in the operands of one instruction (alias and
# copy analysis), so a group of leaves is split into calls of at most this many leaves.
MAX_LEAVES_PER_CALL = 32
_SYMBOLS = {
  "adadelta_optax_tree_f32": "AdadeltaTreeF32",
  "adadelta_optax_tree_f64": "AdadeltaTreeF64",
}


# XLA checks the FFI API version a handler was compiled against when it is registered
# (xla/ffi/ffi_api.cc, RegisterHandler): same major, at least its minimum (0.1 in every jaxlib from
# 0.8.1 to 0.10.2) and at most the running jaxlib's own; jaxlib 0.4.36 to 0.8.0 speak 0.1 and
# refuse anything newer (0.4.30 speaks 0.0 and checks nothing). A refused handler fails the start
# of JAX's whole CPU backend, so the versions are compared here first and nothing is registered
# when they do not fit.
FFI_API_MIN = (0, 1)
# The header of the running jaxlib that defines its FFI API version.
_FFI_API_HEADER = Path("xla", "ffi", "api", "c_api.h")
_FFI_API_DEFINE = re.compile(r"^#define XLA_FFI_API_(MAJOR|MINOR) (\d+)", re.MULTILINE)


class KernelUnavailableWarning(UserWarning):
  """The C++ CPU kernel cannot run here, so ``adadelta()`` runs the fused JAX path instead."""


def kernel_file() -> Path | None:
  """The compiled kernel next to this module: ``_adadelta_cpu.so``, as setup.py names it, else one
  with a CPython suffix (a build of an older setup.py); None when there is none."""
  directory = Path(__file__).parent
  if (directory / "_adadelta_cpu.so").is_file():
    return directory / "_adadelta_cpu.so"
  return next(iter(sorted(directory.glob("_adadelta_cpu*.so"))), None)


def _format_api(version: tuple[int, int] | None) -> str:
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
      f"API {_format_api(built)}) is not registered"
    )
  if built[0] == running[0] and FFI_API_MIN <= built <= running:
    return None
  return (
    f"the kernel was compiled against XLA FFI API {_format_api(built)} but the installed jaxlib "
    f"{jaxlib_version} speaks FFI API {_format_api(running)} and accepts handlers of API "
    f"{_format_api(FFI_API_MIN)} to {_format_api(running)} only; rebuild the kernel against this "
    f"jaxlib: {rebuild_command()}"
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
    mismatch = ffi_api_mismatch(built_ffi_api(library), running_ffi_api(), _jaxlib_version())
    if mismatch is not None:
      return mismatch
    for target, symbol in _SYMBOLS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), "cpu")
  except (OSError, AttributeError) as error:
    return f"the compiled kernel {path.name} could not be loaded: {error}"
  return None


def kernel_available() -> bool:
  """Whether the CPU kernel was built, loads on this machine and fits the installed jaxlib."""
  return _load() is None


def kernel_unavailable_reason() -> str | None:
  """Why :func:`kernel_available` is False (``None`` when it is True)."""
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
  package = Path(__file__).resolve().parent
  frame: types.FrameType | None = sys._getframe(1)  # noqa: SLF001 - CPython's frame accessor
  level = 1
  while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(package):
    frame, level = frame.f_back, level + 1
  return level


def hyper_vector(accum_dtype: Any, **values: Any) -> jax.Array:
  """A leaf's hyperparameter vector (in :func:`compute_dtype`), in the kernel's layout."""
  dtype = compute_dtype(accum_dtype)
  return jnp.stack([jnp.asarray(values[name], dtype) for name in HYPER_FIELDS])


def compute_dtype(accum_dtype: Any) -> jnp.dtype:
  """The dtype of a leaf's hyperparameter vector: its real dtype, at least float32."""
  real = jnp.real(jnp.zeros((), accum_dtype)).dtype
  return jnp.promote_types(real, jnp.float32)


def leaf_step_jax(
  grad: jax.Array,
  param: jax.Array | None,
  accum_grad: jax.Array,
  accum_var: jax.Array,
  hyper: jax.Array,
  flags: int,
  apply: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The fused step in plain JAX: the reference path's functions, applied to one leaf.

  Hyperparameters act in the leaf's (real) dtype, as Python scalars do in the reference path;
  the learning rate multiplies in at least float32, as in ``scale_by_decayed_learning_rate``.
  """
  real = jnp.real(jnp.zeros((), accum_grad.dtype)).dtype
  h = {name: value.astype(real) for name, value in zip(HYPER_FIELDS, hyper, strict=True)}
  g = grad.astype(accum_grad.dtype)
  if flags & CLIP_VALUE and not flags & NORM_FIRST:
    g = _clipping.clip_value(g, h["clipvalue"])
  if flags & SCALE:
    g = g * h["grad_scale"]
  if flags & CLIP_VALUE and flags & NORM_FIRST:
    g = _clipping.clip_value(g, h["clipvalue"])
  x = None if param is None else param.astype(accum_grad.dtype)
  if flags & COUPLED:
    g = g + h["wd_coupled"] * x
  update, new_accum_grad, new_accum_var = _core.adadelta_step(
    g, accum_grad, accum_var, h["rho"], h["epsilon"], h["one_minus_rho"]
  )
  if flags & DECOUPLED:
    update = update + h["wd_decoupled"] * x
  step = (hyper[HYPER_FIELDS.index("neg_lr")] * update).astype(update.dtype)
  if apply:
    assert param is not None  # apply needs the params (checked by the caller)
    # Formed in the wider of the param's and the state's dtype, rounded once: a bfloat16 param
    # with a float32 state gains the state's precision, and a float32 param with a bfloat16
    # state keeps its own (forming it in bfloat16 would round the param itself every step).
    wide = jnp.promote_types(param.dtype, update.dtype)
    new_param = param.astype(wide) + step.astype(wide)
    return new_param.astype(param.dtype), new_accum_grad, new_accum_var
  return step.astype(grad.dtype), new_accum_grad, new_accum_var


def _kernel_call(
  grads: list[jax.Array],
  params: list[jax.Array] | None,
  accum_grads: list[jax.Array],
  accum_vars: list[jax.Array],
  hyper_rows: jax.Array,
  *,
  flags: np.ndarray,
  apply: bool,
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """All leaves of one dtype through one call of the C++ kernel, updated in place.

  ``hyper_rows`` has shape ``(segments, len(HYPER_FIELDS))``: each leaf is cut into ``segments``
  equal runs of elements, run ``s`` stepped with row ``s`` (one row for a plain step; one per
  batch element under :func:`jax.vmap`, see :func:`_batched_kernel_call`).

  ``apply`` writes the new params over the params; otherwise the update goes over the gradient,
  which in a train step dies there (XLA copies a gradient that is still needed first): in a step
  that computes the gradient and calls ``update`` then ``optax.apply_updates`` (``nnx.Optimizer``,
  linen's ``TrainState``) the update needs no buffer of its own.
  """
  n = len(grads)
  dtype = accum_grads[0].dtype
  shapes = [jax.ShapeDtypeStruct(a.shape, dtype) for a in accum_grads]
  has_params = params is not None
  leaf_args = [*grads, *(params or []), *accum_grads, *accum_vars]
  first_accum = 2 + (2 if has_params else 1) * n  # after hyper, flags, grads and params
  aliases = {first_accum + i: n + i for i in range(2 * n)}
  if apply:
    aliases.update({2 + n + i: i for i in range(n)})
  else:
    aliases.update({2 + i: i for i in range(n)})
  call = jax.ffi.ffi_call(
    f"adadelta_optax_tree_{dtype.name.replace('float', 'f')}",
    shapes * 3,
    input_output_aliases=aliases,
  )
  out = call(
    hyper_rows, jnp.asarray(flags, jnp.int32), *leaf_args, mode=np.int32(apply | (has_params << 1))
  )
  return list(out[:n]), list(out[n : 2 * n]), list(out[2 * n :])


def _batched_kernel_call(flags: np.ndarray, apply: bool) -> Any:
  """:func:`_kernel_call` with a :func:`jax.vmap` rule: the kernel serves the whole batch.

  The step is elementwise within a leaf except per-leaf norm clipping, whose norms the kernel
  takes per segment. A batch of ``B`` problems is therefore one call on the ``(B, ...)`` leaves
  with ``B`` hyperparameter rows per row before (a hyperparameter that is not batched, e.g. a
  constant learning rate, is repeated; an unbatched leaf is broadcast). Nested vmaps multiply the
  rows again, through the same rule.
  """

  @jax.custom_batching.custom_vmap
  def call(
    grads: Any, params: Any, accum_grads: Any, accum_vars: Any, hyper_rows: jax.Array
  ) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    return _kernel_call(
      grads, params, accum_grads, accum_vars, hyper_rows, flags=flags, apply=apply
    )

  @call.def_vmap
  def rule(axis_size: int, in_batched: Any, *args: Any) -> tuple[Any, Any]:
    def lift(x: jax.Array, batched: bool) -> jax.Array:
      return x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))

    lifted = jax.tree.map(lift, list(args), list(in_batched))
    grads, params, accum_grads, accum_vars, hyper_rows = lifted
    hyper_rows = hyper_rows.reshape(-1, hyper_rows.shape[-1])
    out = call(grads, params, accum_grads, accum_vars, hyper_rows)
    return out, jax.tree.map(lambda _: True, out)

  return call


def _group_kernel(
  grads: list[jax.Array],
  params: list[jax.Array] | None,
  accum_grads: list[jax.Array],
  accum_vars: list[jax.Array],
  hyper: jax.Array,
  flags: np.ndarray,
  apply: bool,
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """The kernel's group step, transformable like :func:`_group_jax`.

  Its derivatives (``jax.jvp``, ``jax.grad``, ``jax.linearize``: hypergradients, meta-learning)
  are those of :func:`_group_jax`, the same step in plain JAX; the primal values stay the
  kernel's. Under :func:`jax.vmap` the kernel takes the whole batch (:func:`_batched_kernel_call`).
  """
  call = _batched_kernel_call(flags, apply)
  jax_fn = functools.partial(_group_jax, flags=flags, apply=apply)

  @jax.custom_jvp
  def step(grads: Any, params: Any, accum_grads: Any, accum_vars: Any, hyper: jax.Array) -> Any:
    return call(grads, params, accum_grads, accum_vars, hyper[None])

  @step.defjvp
  def step_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    _, tangents_out = jax.jvp(jax_fn, primals, tangents)
    return step(*primals), tangents_out

  out, new_accum_grads, new_accum_vars = step(grads, params, accum_grads, accum_vars, hyper)
  return list(out), list(new_accum_grads), list(new_accum_vars)


def _group_jax(
  grads: list[jax.Array],
  params: list[jax.Array] | None,
  accum_grads: list[jax.Array],
  accum_vars: list[jax.Array],
  hyper: jax.Array,
  flags: np.ndarray,
  apply: bool,
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """The same as :func:`_group_kernel` in plain JAX (other platforms and other dtypes)."""
  results = []
  for i, (g, a, d) in enumerate(zip(grads, accum_grads, accum_vars, strict=True)):
    x = None if params is None else params[i]
    leaf_flags = int(flags[i])
    leaf_hyper = hyper
    if leaf_flags & NORM_CLIP:
      c = hyper[HYPER_FIELDS.index("clipnorm")]
      clipped = g.astype(a.dtype)
      if leaf_flags & CLIP_VALUE and not leaf_flags & NORM_FIRST:
        clipped = _clipping.clip_value(clipped, hyper[HYPER_FIELDS.index("clipvalue")])
      norm = _clipping.leaf_norm(clipped).astype(hyper.dtype)
      index = HYPER_FIELDS.index("grad_scale")
      leaf_hyper = hyper.at[index].set(hyper[index] * _clipping.norm_scale(norm, c))
      leaf_flags |= SCALE
    results.append(leaf_step_jax(g, x, a, d, leaf_hyper, leaf_flags, apply))
  return [r[0] for r in results], [r[1] for r in results], [r[2] for r in results]


def group_step(
  grads: list[jax.Array],
  params: list[jax.Array] | None,
  accum_grads: list[jax.Array],
  accum_vars: list[jax.Array],
  hyper: jax.Array,
  flags: np.ndarray,
  apply: bool,
  use_kernel: bool,
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """A group of leaves sharing an accumulator dtype: ``(outs, accum_grads, accum_vars)``.

  With ``use_kernel`` and a float32/float64 group whose gradients and params have that dtype too,
  CPU runs the C++ kernel (one call for the group) and every other platform :func:`_group_jax`,
  chosen at lowering time by :func:`jax.lax.platform_dependent`.
  """
  dtype = accum_grads[0].dtype
  takes = (
    use_kernel
    and dtype in KERNEL_DTYPES
    and all(jnp.result_type(g) == dtype for g in grads)
    and all(jnp.result_type(x) == dtype for x in params or [])
  )
  jax_fn = functools.partial(_group_jax, flags=flags, apply=apply)
  if not takes:
    return jax_fn(grads, params, accum_grads, accum_vars, hyper)
  kernel_fn = functools.partial(_group_kernel, flags=flags, apply=apply)
  outs, new_accum_grads, new_accum_vars = jax.lax.platform_dependent(
    grads, params, accum_grads, accum_vars, hyper, cpu=kernel_fn, default=jax_fn
  )
  return outs, new_accum_grads, new_accum_vars


def tree_step(
  config: AdadeltaConfig,
  grads: Any,
  accum_grad: Any,
  accum_var: Any,
  count: jax.Array,
  params: Any,
  *,
  apply: bool,
  use_kernel: bool,
) -> tuple[Any, Any, Any]:
  """The fused step over a whole tree: ``(new params or updates, new accum_grad, new accum_var)``.

  Tree-wide quantities (the learning rate at ``count``, the global clipping scale, weight-decay
  masks) are computed first with the reference path's functions; then the leaves are grouped by
  accumulator dtype and each group takes one :func:`group_step`. ``grads`` and ``params`` are
  already checked; ``params`` is given wherever weight decay or ``apply`` needs it.
  """
  c = config
  treedef: Any = jax.tree.structure(accum_grad)  # a PyTreeDef (opaque to type checkers)
  g_leaves = treedef.flatten_up_to(grads)
  a_leaves = treedef.flatten_up_to(accum_grad)
  d_leaves = treedef.flatten_up_to(accum_var)
  p_leaves = None if params is None else treedef.flatten_up_to(params)
  clipvalue, clipnorm, global_clipnorm = c.clipvalue, c.clipnorm, c.global_clipnorm
  sign = -1.0 if c.maximize else 1.0
  global_scale: Any = 1.0
  if global_clipnorm is not None:
    # Norms of the value-clipped gradient in the accumulator dtype (tf.keras order and casts).
    clipped = [
      g.astype(a.dtype) if clipvalue is None else _clipping.clip_value(g.astype(a.dtype), clipvalue)
      for g, a in zip(g_leaves, a_leaves, strict=True)
    ]
    global_scale = _clipping.global_norm_scale(clipped, global_clipnorm)
  wd = c.weight_decay
  selected = (
    [False] * len(a_leaves)
    if is_disabled(wd)
    else treedef.flatten_up_to(resolve_mask(c.weight_decay_mask, params))
  )
  base_flags = (CLIP_VALUE if clipvalue is not None else 0) | (
    SCALE if global_clipnorm is not None or c.maximize else 0
  )
  if clipnorm is not None:
    base_flags |= NORM_CLIP | (NORM_FIRST if c.clip_order == "norm_then_value" else 0)
  rate = c.learning_rate
  rate = rate(count) if callable(rate) else rate
  one_minus_rho = 1 - c.rho  # a Python float stays Python, as in the reference path

  groups: dict[Any, list[int]] = {}
  for i, a in enumerate(a_leaves):
    groups.setdefault(a.dtype, []).append(i)
  groups = {
    (dtype, start): indices[start : start + MAX_LEAVES_PER_CALL]
    for dtype, indices in groups.items()
    for start in range(0, len(indices), MAX_LEAVES_PER_CALL)
  }
  outs: list[Any] = [None] * len(a_leaves)
  new_a: list[Any] = [None] * len(a_leaves)
  new_d: list[Any] = [None] * len(a_leaves)
  decay_flag = DECOUPLED if c.decoupled_weight_decay else COUPLED
  for (accum_dtype, _), indices in groups.items():
    dtype = compute_dtype(accum_dtype)
    flags = np.array([base_flags | (decay_flag if selected[i] else 0) for i in indices], np.int32)
    lr = decayed_learning_rate(rate, c.decay, count, dtype)
    hyper = hyper_vector(
      accum_dtype,
      rho=c.rho,
      one_minus_rho=one_minus_rho,
      epsilon=c.epsilon,
      neg_lr=-lr,
      grad_scale=sign * jnp.asarray(global_scale, dtype),
      clipvalue=0.0 if clipvalue is None else clipvalue,
      clipnorm=1.0 if clipnorm is None else clipnorm,
      wd_coupled=wd if not c.decoupled_weight_decay and any(selected) else 0.0,
      wd_decoupled=wd if c.decoupled_weight_decay and any(selected) else 0.0,
    )
    needs_params = apply or any(flags & (COUPLED | DECOUPLED))
    result = group_step(
      [g_leaves[i] for i in indices],
      [p_leaves[i] for i in indices] if needs_params and p_leaves is not None else None,
      [a_leaves[i] for i in indices],
      [d_leaves[i] for i in indices],
      hyper,
      flags,
      apply,
      use_kernel,
    )
    for k, i in enumerate(indices):
      outs[i], new_a[i], new_d[i] = result[0][k], result[1][k], result[2][k]
  return treedef.unflatten(outs), treedef.unflatten(new_a), treedef.unflatten(new_d)


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
