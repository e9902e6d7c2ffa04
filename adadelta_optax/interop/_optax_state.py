"""``optax.adadelta``'s state in: ``ScaleByAdaDeltaState(e_g, e_x)`` (and a schedule's count)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

from adadelta_optax.core import _validation, _weights


def _find(tree: Any, cls: type) -> list[Any]:
  return [
    n for n in jax.tree.leaves(tree, is_leaf=lambda n: isinstance(n, cls)) if isinstance(n, cls)
  ]


def load_optax_state(state: Any, optax_state: Any, *, count: int | None = None) -> Any:
  """A copy of ``state`` continuing ``optax.adadelta``'s ``optax_state``.

  ``e_g`` becomes ``accum_grad`` and ``e_x`` ``accum_var`` (the same quantities: optax's rule is
  this package's for real leaves). optax counts steps only when its learning rate is a schedule
  (``ScaleByScheduleState.count``); otherwise pass ``count`` (it matters for schedules and
  ``decay`` here), or the count in ``state`` is kept.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import adadelta_optax
    >>> theirs = optax.adadelta(1.0, rho=0.9, eps=1e-6)
    >>> params = jnp.ones(2)
    >>> _, optax_state = theirs.update(jnp.ones(2), theirs.init(params), params)
    >>> tx = adadelta_optax.presets.optax()
    >>> state = adadelta_optax.interop.load_optax_state(tx.init(params), optax_state, count=1)
    >>> print(state.accum_grad, int(state.count))
    [0.1 0.1] 1

  Raises:
    ValueError: no (or more than one) ``ScaleByAdaDeltaState`` / ``ScaleByScheduleState``, a
      tree that differs from ``state``'s (keys, containers, shapes), or an entry with the wrong
      value (named).
  """
  found = _find(optax_state, optax.ScaleByAdaDeltaState)
  if len(found) != 1:
    raise ValueError(f"optax_state must hold one ScaleByAdaDeltaState, found {len(found)}.")
  (adadelta_state,) = found
  schedules = _find(optax_state, optax.ScaleByScheduleState)
  if len(schedules) > 1:
    raise ValueError(f"optax_state holds {len(schedules)} ScaleByScheduleState, expected <= 1.")
  if schedules and count is not None and int(schedules[0].count) != count:
    raise ValueError(
      f"count={count} differs from optax's schedule count {int(schedules[0].count)}."
    )
  if schedules:
    count = int(schedules[0].count)
  inner = _weights.find_state(state)
  # The same tree (keys, containers, shapes), not only as many leaves: {x, y} is not {a, b}.
  for name in ("e_g", "e_x"):
    _validation.check_same_tree(
      inner.accum_grad,
      getattr(adadelta_state, name),
      reference_name="state's accum_grad",
      other_name=f"optax_state's {name}",
    )
  e_g, e_x = jax.tree.leaves(adadelta_state.e_g), jax.tree.leaves(adadelta_state.e_x)
  weights = [np.asarray(inner.count if count is None else count), *e_g, *e_x]
  return _weights.set_weights(state, weights)
