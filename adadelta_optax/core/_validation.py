"""Early, explicit checks of hyperparameters and of the trees the optimizer sees.

Every check names the argument (or the tree path), the value it was given and what is allowed.
Hyperparameters that are JAX tracers (inside ``jax.jit`` or ``optax.inject_hyperparams``) cannot
be inspected and are accepted as they are.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def is_tracer(value: Any) -> bool:
  """Whether ``value`` is an abstract JAX value whose number cannot be read."""
  return isinstance(value, jax.core.Tracer)


def _concrete_float(name: str, value: Any) -> float | None:
  """``value`` as a Python float, ``None`` for a tracer; a clear error for anything else."""
  if is_tracer(value):
    return None
  if isinstance(value, bool) or isinstance(value, str):
    raise TypeError(f"{name} must be a real number, got {value!r:.80} ({type(value).__name__}).")
  try:
    array = np.asarray(value)
  except Exception as error:  # noqa: BLE001 - any failure means "not a number"
    raise TypeError(f"{name} must be a real number, got {value!r}.") from error
  if array.shape != () or not (
    np.issubdtype(array.dtype, np.floating)
    or np.issubdtype(array.dtype, np.integer)
    or array.dtype == jnp.bfloat16
  ):
    raise TypeError(
      f"{name} must be a real scalar (float, int or 0-d array), got {value!r:.80} "
      f"with shape {array.shape} and dtype {array.dtype}."
    )
  return float(array)


def check_number(
  name: str,
  value: Any,
  *,
  low: float | None = None,
  high: float | None = None,
  low_inclusive: bool = True,
  allowed: str,
) -> None:
  """Checks that a scalar hyperparameter is finite and within ``[low, high]``.

  ``allowed`` is the human description of the range used in the error message.
  """
  number = _concrete_float(name, value)
  if number is None:
    return
  too_low = low is not None and (number < low or (not low_inclusive and number == low))
  too_high = high is not None and number > high
  if not math.isfinite(number) or too_low or too_high:
    raise ValueError(f"{name} must be {allowed}, got {value!r}.")


def check_learning_rate(value: Any) -> None:
  """A learning rate is a non-negative finite number or a schedule (callable of the count)."""
  if callable(value):
    return
  check_number("learning_rate", value, low=0.0, allowed="a finite number >= 0 or a schedule")


def check_optional_positive(name: str, value: Any) -> None:
  """Clipping thresholds: ``None`` (off) or a finite number > 0."""
  if value is None:
    return
  check_number(name, value, low=0.0, low_inclusive=False, allowed="None or a finite number > 0")


def canonical_state_dtype(state_dtype: Any) -> jnp.dtype | None:
  """``None`` or the real floating dtype named by ``state_dtype``."""
  if state_dtype is None:
    return None
  try:
    dtype = jnp.dtype(state_dtype)
  except TypeError as error:
    raise TypeError(
      f"state_dtype must be None or a floating dtype ({', '.join(_FLOAT_DTYPES)}), "
      f"got {state_dtype!r}."
    ) from error
  if dtype.name not in _FLOAT_DTYPES:
    raise TypeError(
      f"state_dtype must be None or a floating dtype ({', '.join(_FLOAT_DTYPES)}), "
      f"got {state_dtype!r}."
    )
  canonical: np.dtype[Any] = np.dtype(dtype)
  return canonical


def keras_floatx(floatx: Any) -> np.dtype:
  """The dtype named by Keras' ``floatx`` (the dtype of its learning-rate variables)."""
  if not isinstance(floatx, str) or floatx not in _FLOAT_DTYPES:
    raise ValueError(f"floatx must be one of {', '.join(_FLOAT_DTYPES)}, got {floatx!r}.")
  return np.dtype(jnp.dtype(floatx))


def check_x64(dtype: jnp.dtype, what: str) -> None:
  """64-bit dtypes silently become 32-bit unless ``jax_enable_x64`` is on: refuse that."""
  is_64 = jnp.dtype(dtype) in (jnp.dtype("float64"), jnp.dtype("complex128"))
  if is_64 and jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:  # x64 is off
    raise ValueError(
      f"{what} is {jnp.dtype(dtype).name}, but jax_enable_x64 is off, so JAX would silently "
      "compute in 32 bits. Enable it with jax.config.update('jax_enable_x64', True)."
    )


def path_name(path: tuple[Any, ...]) -> str:
  """A readable name for a pytree path, e.g. ``params['dense']['kernel']``."""
  return "tree" + jax.tree_util.keystr(path) if path else "tree (root leaf)"


def check_float_leaves(tree: Any, what: str) -> None:
  """Every leaf must be a real or complex floating array (integer leaves have no gradient)."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
        f"{what} leaf at {path_name(path)} has dtype {dtype}; Adadelta only updates floating "
        "point (real or complex) leaves. Exclude it with optax.masked(adadelta_optax.adadelta("
        "...), mask) or optax.multi_transform(...)."
      )


def check_same_tree(reference: Any, other: Any, *, reference_name: str, other_name: str) -> None:
  """``other`` must have the structure and leaf shapes of ``reference``."""
  ref_def: Any = jax.tree.structure(reference)  # PyTreeDefs (opaque to type checkers)
  other_def: Any = jax.tree.structure(other)
  if ref_def != other_def:
    raise ValueError(
      f"{other_name} tree structure differs from the {reference_name}: expected {ref_def}, "
      f"got {other_def}."
    )
  ref_leaves = jax.tree_util.tree_flatten_with_path(reference)[0]
  for (path, ref_leaf), leaf in zip(ref_leaves, jax.tree.leaves(other), strict=True):
    if jnp.shape(ref_leaf) != jnp.shape(leaf):
      raise ValueError(
        f"{other_name} leaf at {path_name(path)} has shape {jnp.shape(leaf)}, but the "
        f"{reference_name} has shape {jnp.shape(ref_leaf)}."
      )


def check_count(count: Any, what: str) -> None:
  """A state's step count (``what``: e.g. ``"state.count"``): an int32 scalar (a JAX or NumPy
  array, or ``np.int32``), as ``init`` makes it and optax's states keep it, from 0 to
  2**31 - 1 where its value can be read."""
  dtype = count.dtype if isinstance(count, (np.ndarray, np.integer, jax.Array)) else None
  if dtype != np.dtype(np.int32) or np.shape(count) != ():
    shown = (
      f"{count!r:.80} ({type(count).__name__})"
      if dtype is None
      else f"dtype {dtype} and shape {np.shape(count)}"
    )
    raise TypeError(
      f"{what} must be an int32 scalar as init makes it (jnp.asarray(n, jnp.int32)), got {shown}."
    )
  if not is_tracer(count) and int(count) < 0:
    raise ValueError(f"{what} must be a step count from 0 to 2**31 - 1, got {int(count)}.")


def check_mask(mask: Any) -> None:
  """``weight_decay_mask``: ``None``, a callable of the params, or a pytree of bools."""
  if mask is None or callable(mask):
    return
  for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]:
    if not isinstance(leaf, (bool, np.bool_)) and not (
      hasattr(leaf, "dtype") and jnp.result_type(leaf) == jnp.bool_ and jnp.ndim(leaf) == 0
    ):
      raise TypeError(
        f"weight_decay_mask leaf at {path_name(path)} must be a bool, got {leaf!r}; "
        "weight_decay_mask is None, a pytree of bools or a callable returning one."
      )


def check_bool(name: str, value: Any) -> bool:
  """``value`` as a bool: a Python or NumPy bool only (``bool('False')`` would be True)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__}).")
  return bool(value)


def check_fits_dtype(name: str, value: Any, dtype: Any, *, positive: bool = False) -> None:
  """``value`` must stay finite (and, if ``positive``, non-zero) when cast to ``dtype``.

  The step computes with the hyperparameters in each leaf's step dtype (at least float32):
  ``epsilon=3.5e38`` or ``clipnorm=1e39`` become inf in float32 and turn the params into NaN;
  ``epsilon=1e-50`` becomes 0 in float32 and a zero gradient gives ``0 / 0``. Tracers and
  ``None`` are not checked.
  """
  number = None if value is None or callable(value) else _concrete_float(name, value)
  if number is None:
    return
  dtype = jnp.dtype(dtype)
  with np.errstate(over="ignore", under="ignore"):
    cast = float(np.asarray(number).astype(dtype))
  finfo = ml_dtypes.finfo(dtype)
  if not math.isfinite(cast):
    raise ValueError(
      f"{name}={value!r} overflows {dtype.name} (largest finite {float(finfo.max):.4g}), the "
      f"dtype the step computes in for these params: it would turn them into NaN."
    )
  if positive and cast == 0.0:
    raise ValueError(
      f"{name}={value!r} is 0 in {dtype.name} (smallest positive "
      f"{float(finfo.smallest_subnormal):.4g}), the dtype the step computes in for these params: "
      "a zero gradient would give 0 / 0 = NaN. Use a larger value or a wider state_dtype."
    )
