"""Weight decay: coupled L2 (torch, optax) before the rule, or decoupled (Keras 3) after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from adadelta_optax.core import _validation

MaskOrFn = Any | Callable[[optax.Params], Any] | None


def resolve_mask(mask: MaskOrFn, params: optax.Params) -> Any:
  """A full tree of bools with the structure of ``params`` (a prefix mask is broadcast)."""
  if mask is None:
    return jax.tree.map(lambda _: True, params)
  tree = mask(params) if callable(mask) else mask
  try:
    return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), tree, params)
  except ValueError as error:
    raise ValueError(
      f"weight_decay_mask must have the structure of the params (or a prefix of it): {error}"
    ) from error


def is_disabled(weight_decay: Any) -> bool:
  """A concrete zero needs no params; a traced value may be anything, so it is applied."""
  return not _validation.is_tracer(weight_decay) and float(weight_decay) == 0.0


def require_params(updates: optax.Updates, params: optax.Params | None) -> None:
  """Weight decay (and applying the update) needs params shaped like the gradient."""
  if params is None:
    raise ValueError(
      "weight_decay needs the params: call update(grads, state, params). (Under "
      "optax.inject_hyperparams a traced weight_decay may be non-zero, so params are "
      "required there too; pass static_args=('weight_decay',) to fix it at 0.)"
    )
  _validation.check_same_tree(updates, params, reference_name="gradient", other_name="params")


def add_decayed_weights(
  weight_decay: float | jax.Array = 0.0, mask: MaskOrFn = None
) -> optax.GradientTransformation:
  r"""Adds :math:`\lambda x` to the updates of the leaves selected by ``mask``.

  Placed before the Adadelta rule this is coupled L2 regularisation (``g += wd * x``, torch and
  optax); placed after the rule and before the learning rate it is Keras 3's decoupled decay
  (``x -= lr * wd * x``). A weight decay of exactly 0 is a no-op that needs no params.

  Args:
    weight_decay: the factor :math:`\lambda \ge 0`.
    mask: ``None`` (all leaves), a pytree of bools (or a prefix of the params tree), or a callable
      returning one from the params, as in :func:`optax.add_decayed_weights`.

  Returns:
    A stateless :class:`optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([1.0])}
    >>> tx = adadelta_optax.add_decayed_weights(0.5, mask={"w": True, "b": False})
    >>> grads = {"w": jnp.zeros(2), "b": jnp.zeros(1)}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> updates["w"].tolist(), updates["b"].tolist()
    ([0.5, 1.0], [0.0])
  """

  def decay(updates: optax.Updates, params: optax.Params | None) -> optax.Updates:
    if is_disabled(weight_decay):
      return updates
    require_params(updates, params)
    selected = resolve_mask(mask, params)
    updates = jax.tree.map(
      lambda g, x, m: g + (weight_decay * x).astype(g.dtype) if m else g,
      updates,
      params,
      selected,
    )
    return updates

  return optax.stateless(decay)
