"""Keras' ``get_gradients``: gradients of a scalar loss, with an error where none exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adadelta_optax.core import _validation


def get_gradients(loss_fn: Callable[..., Any], params: Any, *args: Any) -> Any:
  """``jax.grad(loss_fn)(params, *args)``, refusing what has no gradient.

  Raises:
    ValueError: a params leaf is not floating point, or the loss is not a real scalar.
  """
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
      raise ValueError(
        f"No gradient can be computed for params leaf at {_validation.path_name(path)}: its "
        f"dtype is {dtype}, and only floating point leaves are differentiable."
      )
  out = jax.eval_shape(loss_fn, params, *args)
  if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(
      "loss_fn must return a real floating point scalar to be differentiated, got "
      f"{getattr(out, 'shape', type(out))} {getattr(out, 'dtype', '')}."
    )
  return jax.grad(loss_fn)(params, *args)
