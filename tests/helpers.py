"""Shared test helpers: random pytrees, trajectories and tolerant comparisons."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import reference

#: The installed jax as (major, minor): for tests of what XLA's code does, which differs by release.
JAX_VERSION = tuple(int(part) for part in jax.__version__.split(".")[:2])


def enable_x64(enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
  """``jax.enable_x64(enabled)``: a public context manager from jax 0.8 on; before it, the same
  setting is ``jax.experimental.enable_x64`` / ``disable_x64`` (deprecated since 0.8)."""
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(enabled)
  from jax import experimental

  return experimental.enable_x64() if enabled else experimental.disable_x64()


@functools.cache
def float16_compile_error() -> str | None:
  """None where XLA compiles float16 arithmetic for this CPU, else its error.

  XLA's CPU backend converts float16 with the F16C instructions; where they are not available
  (``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``, or a CPU older than Ivy Bridge) jaxlib 0.10.2 and
  0.12.1 fail to compile any float16 computation ("Symbols not found: [ __extendhfsf2 ]"), plain
  ``jnp.float16`` arithmetic included: a limitation of JAX there, not of this package.
  """
  try:
    jax.block_until_ready(jax.jit(lambda x: x.astype(jnp.float32) * 2)(jnp.ones(2, jnp.float16)))
  except Exception as error:  # XLA raises JaxRuntimeError, whose class moved between releases
    return f"{type(error).__name__}: {str(error).splitlines()[0]}"
  return None


def require_float16() -> None:
  """Skips the calling test, with XLA's error, where XLA cannot compile float16 here."""
  import pytest

  error = float16_compile_error()
  if error is not None:
    pytest.skip(f"XLA cannot compile float16 arithmetic on this CPU (no F16C): {error}")


def random_tree(
  rng: np.random.Generator, dtype: Any = np.float64, complex_leaf: bool = False
) -> Any:
  """A nested dict/list pytree with a scalar, an empty leaf and mixed shapes."""

  def leaf(shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape).astype(dtype)

  tree = {
    "dense": {"kernel": leaf((4, 3)), "bias": leaf((3,))},
    "layers": [leaf(()), leaf((2, 1, 2)), {"empty": leaf((0,)), "w": leaf((5,))}],
    "scalar": leaf(()),
  }
  if complex_leaf:
    cdtype = np.complex128 if np.dtype(dtype) == np.float64 else np.complex64
    tree["phase"] = (rng.normal(size=(3,)) + 1j * rng.normal(size=(3,))).astype(cdtype)
  return tree


def random_grads(rng: np.random.Generator, tree: Any, steps: int, scale: float = 1.0) -> list[Any]:
  """``steps`` gradient trees shaped like ``tree``, with magnitudes varying over decades."""
  out = []
  for t in range(steps):
    magnitude = scale * 10.0 ** rng.uniform(-2, 1)

    def draw(x: np.ndarray, magnitude: float = magnitude) -> np.ndarray:
      g = rng.normal(size=x.shape) * magnitude
      if np.iscomplexobj(x):
        g = g + 1j * rng.normal(size=x.shape) * magnitude
      return g.astype(x.dtype)

    out.append(jax.tree.map(draw, tree))
    del t
  return out


def run_jax(
  tx: optax.GradientTransformation, params: Any, grads: list[Any], *, jit: bool
) -> tuple[Any, Any]:
  """Params and state after applying ``grads`` one by one with ``tx``."""
  params = jax.tree.map(jnp.asarray, params)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in grads:
    updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def run_reference(params: Any, grads: list[Any], options: reference.Options) -> reference.Reference:
  return reference.run(jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], options)


@contextlib.contextmanager
def count_compiles() -> Iterator[list[str]]:
  """The functions XLA compiles while the block runs, by name (``"jit(step)"``), in order.

  Under :func:`jax.log_compiles` JAX logs ``Compiling jit(<name>) ...`` to its ``jax`` loggers
  once per compilation (a cached executable logs nothing); a handler records the names.
  """
  compiled: list[str] = []

  class Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
      message = record.getMessage()
      if message.startswith("Compiling "):
        compiled.append(message.split()[1])

  logger = logging.getLogger("jax")
  handler = Recorder()
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      yield compiled
  finally:
    logger.removeHandler(handler)


#: The leaf-max floor of :func:`assert_trees_close`: ``rtol * max|expected|`` of each leaf.
LEAF_MAX = "leaf_max"

#: A few ulps, for comparing two JAX paths whose sums run in another order.
ULPS = {np.float64: 8 * np.finfo(np.float64).eps, np.float32: 8 * np.finfo(np.float32).eps}


def assert_trees_close(
  actual: Any,
  expected: Any,
  *,
  rtol: float | Mapping[Any, float],
  atol: float = 0.0,
  floor: str | float | None = None,
  check_dtype: bool = False,
  what: str = "tree",
) -> float:
  """Asserts that two pytrees agree leaf by leaf; returns the largest error relative to the scale.

  Structure: where both are pytrees their tree structures must be equal. A ``list`` on either side
  is a flat list of leaves (what ``tests/reference.py`` and the other frameworks return): it is
  compared with the other side's ``jax.tree.leaves``, in that order, leaf count first.

  Each pair of leaves must have the same shape (and dtype, with ``check_dtype``). Leaves whose
  expected dtype is not inexact (counts, flags) must be equal. Float and complex leaves are
  compared in float64/complex128, elementwise::

      |actual - expected| <= atol + rtol * |expected| + rtol * floor

  where ``floor`` is 0 (``None``), the leaf's own ``max|expected|`` (:data:`LEAF_MAX`: entries
  that pass near zero are judged against the magnitude the leaf carries), or a given number.
  ``rtol`` may map the expected leaf's real dtype to a tolerance. NaNs must match NaNs.

  The returned number is the largest ``max|actual - expected| / scale`` over the leaves, where
  ``scale`` is ``floor`` if given, else ``max|expected|`` (the difference itself where that is 0).
  """
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert len(a_leaves) == len(e_leaves), f"{what}: {len(a_leaves)} != {len(e_leaves)} leaves"
  if not isinstance(actual, list) and not isinstance(expected, list):
    assert a_def == e_def, f"{what}: tree structure {a_def} != {e_def}"
  names = [jax.tree_util.keystr(path) for path, _ in jax.tree.leaves_with_path(expected)]
  worst = 0.0
  for name, a, e in zip(names, a_leaves, e_leaves, strict=True):
    a, e = np.asarray(a), np.asarray(e)
    where = f"{what}{name}"
    assert a.shape == e.shape, f"{where}: shape {a.shape} != {e.shape}"
    if check_dtype:
      assert a.dtype == e.dtype, f"{where}: dtype {a.dtype} != {e.dtype}"
    if e.dtype.kind not in "fc":
      np.testing.assert_array_equal(a, e, err_msg=where)
      continue
    if e.size == 0:
      continue
    tol = rtol[np.real(e).dtype] if isinstance(rtol, Mapping) else rtol
    wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(e) else np.float64
    a, e = a.astype(wide), e.astype(wide)
    leaf_max = float(np.max(np.abs(e)))
    scale = leaf_max if floor in (None, LEAF_MAX) else float(floor)
    floor_value = 0.0 if floor is None else scale
    np.testing.assert_allclose(a, e, rtol=tol, atol=atol + tol * floor_value, err_msg=where)
    diff = float(np.max(np.abs(a - e)))
    worst = max(worst, diff / scale if scale else diff)
  return worst


def assert_bitwise(actual, expected, what="tree"):
  """Same structure, and every leaf the same dtype, shape and bytes."""
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def, f"{what}: tree structure {a_def} != {e_def}"
  for (path, e), a in zip(jax.tree.leaves_with_path(expected), a_leaves, strict=True):
    where = what + jax.tree_util.keystr(path)
    a, e = np.asarray(a), np.asarray(e)
    assert (a.dtype, a.shape) == (e.dtype, e.shape), (
      f"{where}: {a.dtype}{a.shape} != {e.dtype}{e.shape}"
    )
    if a.tobytes() != e.tobytes():
      wide_a, wide_e = a.astype(np.float64), e.astype(np.float64)
      differ = int(np.sum(wide_a != wide_e))
      worst = float(np.max(np.abs(wide_a - wide_e) / np.maximum(np.abs(wide_e), 1e-300)))
      raise AssertionError(
        f"{where}: not bitwise equal ({differ} of {a.size} elements differ, largest relative "
        f"difference {worst:.3g})"
      )


def assert_matches_reference(
  params: Any, state: Any, ref: reference.Reference, rtol: float
) -> None:
  assert_trees_close(params, ref.params, rtol=rtol, floor=LEAF_MAX, what="params")
  assert_trees_close(state.accum_grad, ref.accum_grad, rtol=rtol, floor=LEAF_MAX, what="accum_grad")
  assert_trees_close(state.accum_var, ref.accum_var, rtol=rtol, floor=LEAF_MAX, what="accum_var")
  assert int(state.count) == ref.count


# --- The options of adadelta() exercised by the trajectory tests ------------------------


def _exp_schedule(count):
  """A learning-rate schedule that works on a JAX count and on the reference's Python int."""
  return 0.8 * 0.97**count


def _mask_fn(params):
  return jax.tree.map(lambda x: jnp.ndim(x) > 1, params)


# (adadelta kwargs, reference overrides). Masks are given to the reference as one bool per leaf.
OPTIONS = {
  "defaults": ({}, {}),
  "lr_rho_eps": (dict(learning_rate=0.5, rho=0.9, epsilon=1e-6), {}),
  "lr_array": (dict(learning_rate=np.float64(0.3)), dict(learning_rate=0.3)),
  "schedule": (dict(learning_rate=_exp_schedule), {}),
  "decay": (dict(decay=0.05), {}),
  "schedule_and_decay": (dict(learning_rate=_exp_schedule, decay=0.02), {}),
  "clipvalue": (dict(clipvalue=0.5), {}),
  "clipnorm": (dict(clipnorm=0.7), {}),
  "global_clipnorm": (dict(global_clipnorm=1.5), {}),
  "clipvalue_clipnorm": (dict(clipvalue=0.4, clipnorm=0.9), {}),
  "clipnorm_then_clipvalue": (dict(clipvalue=0.4, clipnorm=0.9, clip_order="norm_then_value"), {}),
  "clipvalue_global": (dict(clipvalue=0.4, global_clipnorm=1.1), {}),
  "coupled_wd": (dict(weight_decay=0.01), {}),
  "decoupled_wd": (dict(weight_decay=0.02, decoupled_weight_decay=True), {}),
  "maximize": (dict(maximize=True), {}),
  "maximize_coupled_wd": (dict(maximize=True, weight_decay=0.05), {}),
  "maximize_decoupled_wd": (
    dict(maximize=True, weight_decay=0.05, decoupled_weight_decay=True),
    {},
  ),
  "everything": (
    dict(
      learning_rate=_exp_schedule,
      rho=0.9,
      epsilon=1e-5,
      decay=0.01,
      clipvalue=2.0,
      global_clipnorm=3.0,
      weight_decay=0.03,
      decoupled_weight_decay=True,
      maximize=True,
    ),
    {},
  ),
}


def _options(kwargs, overrides):
  fields = {k: v for k, v in kwargs.items() if k not in ("weight_decay_mask", "state_dtype")}
  fields.update(overrides)
  return reference.Options(**fields)


# --- A small torch.optim.Adadelta state dict (the torch state tests and their property test) ---

TORCH_PARAMS = {"b": np.zeros(2), "w": np.zeros((3, 2))}  # leaves: b, w


def torch_state_dict(step: float = 3.0, **group: Any) -> dict[str, Any]:
  """``state_dict()`` of a torch Adadelta that stepped ``step`` times on TORCH_PARAMS."""
  state = {
    0: {"step": step, "square_avg": np.full(2, 0.1), "acc_delta": np.full(2, 0.2)},
    1: {"step": step, "square_avg": np.full((3, 2), 0.3), "acc_delta": np.full((3, 2), 0.4)},
  }
  groups = [
    dict(
      lr=1.0,
      rho=0.9,
      eps=1e-6,
      weight_decay=0.0,
      foreach=None,
      capturable=False,
      maximize=False,
      differentiable=False,
      params=[0, 1],
      **group,
    )
  ]
  return {"state": state, "param_groups": groups}
