"""Gradient clipping with tf.keras' exact formulas and order.

tf.keras 2.x (``OptimizerV2._transform_gradients``) and Keras 3 clip in the order clipvalue, then
clipnorm, then global_clipnorm; tf.keras 1.x (``keras.optimizers.Optimizer.get_gradients``) clips
clipnorm first, then clipvalue (``clip_order="norm_then_value"``). Both use the formulas of
``tf.clip_by_value``, ``tf.clip_by_norm`` and ``tf.clip_by_global_norm``, with one rounding
difference: a clipped leaf is ``g * (c / max(||g||, c))`` (:func:`norm_scale`, the one formula
that the fused step and the C++ kernel use too), where TF multiplies by ``c`` and then divides, so
a clipped leaf may differ from TensorFlow's in the last bit (below the threshold ours is exactly
``g``, TF's ``(g * c) / c`` may not be). The global scale is TF's ``c * min(1 / norm, 1 / c)``,
which is not exactly 1 for every ``c`` (e.g. ``49 * (1 / 49) != 1`` in float64). A non-finite
global norm turns every gradient into NaN, as in TensorFlow.

Complex leaves: norms use :math:`|g|^2 = \\mathrm{re}^2 + \\mathrm{im}^2`; clipvalue clips the real
and imaginary parts independently (the same convention as the Adadelta accumulators).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adadelta_optax.core._dtypes import real_dtype, sum_dtype
from adadelta_optax.core._global_norm import abs_square, squared_norms


def _squared_norm(leaf: jax.Array) -> jax.Array:
  return jnp.sum(abs_square(leaf))


def _as_real_dtype(leaf: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """``leaf`` with real dtype ``dtype`` (its complex counterpart for a complex leaf)."""
  if jnp.iscomplexobj(leaf):
    return leaf.astype(sum_dtype(dtype, jnp.complex64))
  return leaf.astype(dtype)


def clip_value(leaf: jax.Array, clipvalue: Any) -> jax.Array:
  """``tf.clip_by_value(g, -c, c)``; complex parts clipped independently."""
  if jnp.iscomplexobj(leaf):
    return jax.lax.complex(
      clip_value(jnp.real(leaf), clipvalue), clip_value(jnp.imag(leaf), clipvalue)
    )
  c = jnp.asarray(clipvalue, leaf.dtype)
  return jnp.clip(leaf, -c, c)


def leaf_norm(leaf: jax.Array) -> jax.Array:
  """A leaf's L2 norm, with ``tf.clip_by_norm``'s safe square root at zero."""
  l2sum = _squared_norm(leaf)
  positive = l2sum > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, l2sum, 1)), l2sum)


def norm_scale(norm: jax.Array, clipnorm: Any) -> jax.Array:
  """The factor of ``tf.clip_by_norm``: ``c / max(||g||, c)``, in ``norm``'s dtype.

  The one formula of per-leaf norm clipping: :func:`clip_norm`, the fused step and the C++
  kernel (``leaf_hyper[kGradScale]``) all multiply the gradient by it.
  """
  c = jnp.asarray(clipnorm, norm.dtype)
  return c / jnp.maximum(norm, c)


def clip_norm(leaf: jax.Array, clipnorm: Any) -> jax.Array:
  """``tf.clip_by_norm(g, c)``: ``g * (c / max(||g||, c))`` with TF's safe norm at zero."""
  return leaf * norm_scale(leaf_norm(leaf), clipnorm).astype(leaf.dtype)


def global_norm_scale(grads: optax.Updates, global_clipnorm: Any) -> jax.Array:
  """``tf.clip_by_global_norm``'s scale ``c * min(1 / norm, 1 / c)``, NaN for a non-finite norm.

  Computed in the widest real dtype among the leaves (TF requires them all equal), each leaf's
  squared norm too. Sharded leaves cost one all-reduce in all
  (:func:`adadelta_optax.core._global_norm.squared_norms`).
  """
  leaves = jax.tree.leaves(grads)
  # The widest, as jnp.result_type gives it, chosen explicitly (strict promotion refuses it).
  reals = [real_dtype(leaf.dtype) for leaf in leaves]
  dtype = functools.reduce(sum_dtype, reals) if reals else np.dtype("float32")
  # One primitive for all the leaves' squared norms, in the one common dtype: on sharded leaves
  # it is exactly one all-reduce, whatever mesh axes each leaf is sharded over.
  squared = squared_norms([_as_real_dtype(leaf, dtype) for leaf in leaves])
  norm = jnp.sqrt(sum(squared, jnp.zeros((), dtype)))
  c = jnp.asarray(global_clipnorm, dtype)
  scale = c * jnp.minimum(1.0 / norm, 1.0 / c)
  return scale + (norm - norm)  # inf - inf = NaN propagates a non-finite norm, as in TF


ClipOrder = Literal["value_then_norm", "norm_then_value"]

#: The allowed values of ``clip_order``.
CLIP_ORDERS: tuple[str, ...] = ("value_then_norm", "norm_then_value")


def check_clip_order(clip_order: Any) -> None:
  """``clip_order`` must be one of :data:`CLIP_ORDERS`."""
  if not isinstance(clip_order, str) or clip_order not in CLIP_ORDERS:
    raise ValueError(f"clip_order must be one of {list(CLIP_ORDERS)}, got {clip_order!r}.")


def clip_gradients(
  clipvalue: float | jax.Array | None = None,
  clipnorm: float | jax.Array | None = None,
  global_clipnorm: float | jax.Array | None = None,
  *,
  clip_order: ClipOrder = "value_then_norm",
) -> optax.GradientTransformation:
  r"""Clips gradients in tf.keras 2.x order: clipvalue, then clipnorm, then global_clipnorm.

  .. math::

    g &\leftarrow \mathrm{clip}(g, -c_v, c_v) \\
    g &\leftarrow \frac{g\, c_n}{\max(\lVert g \rVert_2, c_n)} \quad \text{(each leaf)} \\
    g &\leftarrow g \cdot c_g \min\!\left(\frac{1}{\lVert G \rVert_2}, \frac{1}{c_g}\right)
        \quad \text{(all leaves together)}

  Each step is skipped when its threshold is ``None``. With ``clip_order="norm_then_value"``
  (tf.keras 1.x) the first two steps swap: clipnorm, then clipvalue, then global_clipnorm.
  Arguments are validated by :func:`adadelta_optax.adadelta`, which is the usual entry point.

  Args:
    clipvalue: elementwise bound, or ``None``.
    clipnorm: bound on each leaf's L2 norm, or ``None``.
    global_clipnorm: bound on the L2 norm of all leaves together, or ``None``.
    clip_order: ``"value_then_norm"`` (tf.keras 2.x, Keras 3) or ``"norm_then_value"``
      (tf.keras 1.x).

  Returns:
    A stateless :class:`optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.clip_gradients(clipnorm=1.0)
    >>> updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(None))
    >>> print(updates["w"])
    [0.6 0.8]
  """

  check_clip_order(clip_order)

  def by_value(updates: optax.Updates) -> optax.Updates:
    if clipvalue is None:
      return updates
    return jax.tree.map(lambda g: clip_value(g, clipvalue), updates)

  def by_norm(updates: optax.Updates) -> optax.Updates:
    if clipnorm is None:
      return updates
    return jax.tree.map(lambda g: clip_norm(g, clipnorm), updates)

  def clip(updates: optax.Updates, params: optax.Params | None = None) -> optax.Updates:
    del params
    if clip_order == "value_then_norm":
      updates = by_norm(by_value(updates))
    else:
      updates = by_value(by_norm(updates))
    if global_clipnorm is not None:
      scale = global_norm_scale(updates, global_clipnorm)
      updates = jax.tree.map(lambda g: g * scale.astype(g.dtype), updates)
    return updates

  return optax.stateless(clip)
