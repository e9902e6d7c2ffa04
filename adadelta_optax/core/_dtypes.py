"""The dtypes the step computes in, chosen explicitly.

JAX's implicit promotion would pick the same ones, but ``jax.numpy_dtype_promotion("strict")``
(which mixed-precision users turn on to catch silent upcasts) refuses it, and JAX never promotes
8-bit floats implicitly: so every cast in the step is written out with these.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def real_dtype(dtype: Any) -> np.dtype:
  """The real dtype of ``dtype``: float32 for complex64, float64 for complex128, else itself."""
  real: np.dtype = np.real(np.zeros((), jnp.dtype(dtype))).dtype
  return real


def step_dtype(dtype: Any) -> np.dtype:
  """The dtype a leaf's step is computed in, for accumulators of ``dtype``: ``dtype`` itself
  from 32 bits up (complex included), float32 below it (float16, bfloat16, float8).

  A 16-bit step computed in 16 bits loses an ``epsilon`` of 1e-8 (0 in float16: a zero gradient
  then gives 0/0) and rounds after every operation. Like torch's fused optimizers for
  half-precision params (their ``opmath`` type), the step reads the 16-bit values, computes
  in float32 in registers and rounds once on the way out: the accumulators to their dtype, the
  params or the update to theirs. The same bytes move, so it costs no time.
  """
  d: np.dtype = np.dtype(dtype)
  return d if jnp.finfo(real_dtype(d)).bits >= 32 else np.dtype("float32")


def compute_dtype(dtype: Any) -> np.dtype:
  """The real dtype of :func:`step_dtype`: where the hyperparameters and the learning rate act,
  at least float32 (tf.keras casts the learning rate to each variable's dtype; below float32
  that loses the schedule)."""
  return real_dtype(step_dtype(dtype))


def sum_dtype(a: Any, b: Any) -> np.dtype:
  """The dtype in which ``a + b`` is formed without rounding either: the one that holds the
  other's range and precision, float32 where neither does (float16 and bfloat16), complex when
  either is. What ``jnp.promote_types`` gives, chosen explicitly (see the module docstring)."""
  first: np.dtype = np.dtype(a)
  second: np.dtype = np.dtype(b)
  if first == second:
    return first
  ra, rb = real_dtype(first), real_dtype(second)
  fa, fb = jnp.finfo(ra), jnp.finfo(rb)
  if fa.nmant >= fb.nmant and fa.maxexp >= fb.maxexp:
    real = ra
  elif fb.nmant >= fa.nmant and fb.maxexp >= fa.maxexp:
    real = rb
  else:
    real = np.dtype("float32") if max(fa.bits, fb.bits) <= 32 else np.dtype("float64")
  if jnp.issubdtype(first, jnp.complexfloating) or jnp.issubdtype(second, jnp.complexfloating):
    return np.dtype("complex128") if real == np.dtype("float64") else np.dtype("complex64")
  return real
