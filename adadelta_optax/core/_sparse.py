r"""Sparse (embedding) rows: TensorFlow's ``ResourceSparseApplyAdadelta`` semantics on dense arrays.

TensorFlow applies an ``IndexedSlices`` gradient (an embedding lookup's) with a sparse kernel that
touches only the looked-up rows: the rows of the parameter, of ``accum_grad`` and of ``accum_var``
that no index names keep their values, with no ``rho`` decay of their accumulators. (Duplicate
indices are summed first, ``_deduplicate_indexed_slices``, and the kernel uses the same decayed
learning rate, ``rho`` and ``epsilon`` as the dense one.) A dense JAX gradient carries no index
list, so a row is taken as *not looked up* exactly when its gradient is zero everywhere.

Two differences to TensorFlow remain. A looked-up row whose summed gradient is exactly zero (e.g.
two lookups whose gradients cancel) is updated by TensorFlow (its accumulators decay) and left
alone here; gradients of real embedding lookups are practically never exactly zero. And
TensorFlow clips an ``IndexedSlices`` (``clipvalue``, ``clipnorm``, ``global_clipnorm``) per
lookup, *before* repeated ids are summed, while a dense gradient is clipped after: with clipping
and an id repeated within a batch the two differ (without repeats they agree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adadelta_optax.core._state import AdadeltaState


def touched_rows(grad: jax.Array) -> jax.Array | None:
  """A bool array of shape ``(rows, 1, ..., 1)``: which rows have a non-zero gradient.

  ``None`` for leaves of fewer than two dimensions (they have no rows and are always updated).
  """
  if jnp.ndim(grad) < 2:
    return None
  touched = jnp.any(grad != 0, axis=tuple(range(1, grad.ndim)))
  return touched.reshape((-1,) + (1,) * (grad.ndim - 1))


def keep_untouched(mask: jax.Array | None, new: jax.Array, old: jax.Array) -> jax.Array:
  """``new`` on the touched rows, ``old`` elsewhere (``new`` everywhere for ``mask=None``)."""
  return new if mask is None else jnp.where(mask, new, old)


UpdateFn = Callable[..., tuple[optax.Updates, AdadeltaState]]


def skip_untouched_rows(update_fn: UpdateFn) -> UpdateFn:
  r"""Wraps an Adadelta ``update`` so rows with an all-zero gradient stay completely unchanged.

  For every leaf with ``ndim >= 2`` (rows along the leading axis), the rows whose incoming gradient
  is zero everywhere get a zero update (so the parameter, including any weight decay, is unchanged)
  and keep their ``accum_grad`` and ``accum_var`` (no ``rho`` decay); other rows and leaves of
  ``ndim < 2`` update normally. The count advances as usual (TensorFlow's ``iterations`` too).

  Cost: one ``any(g != 0)`` reduction over each such gradient and three ``where`` selects (update,
  ``accum_grad``, ``accum_var``) per leaf; the full dense step is still computed for every row.

  Args:
    update_fn: the ``update`` of :func:`adadelta_optax.adadelta`, whose state is an
      :class:`~adadelta_optax.AdadeltaState`.

  Returns:
    An ``update`` function with the same signature.
  """

  def update(
    updates: optax.Updates, state: AdadeltaState, params: optax.Params | None = None, **extra: Any
  ) -> tuple[optax.Updates, AdadeltaState]:
    masks = jax.tree.map(touched_rows, updates)
    new_updates, new_state = update_fn(updates, state, params, **extra)

    def select(new: Any, old: Any) -> Any:
      return jax.tree.map(keep_untouched, masks, new, old, is_leaf=lambda x: x is None)

    zeros = jax.tree.map(jnp.zeros_like, new_updates)
    return select(new_updates, zeros), new_state._replace(
      accum_grad=select(new_state.accum_grad, state.accum_grad),
      accum_var=select(new_state.accum_var, state.accum_var),
    )

  return update
