"""A flat layout for trees of many small leaves: one contiguous buffer per dtype.

A jitted step pays a fixed cost for every buffer it takes and returns (a donated identity over
8,000 buffers alone costs tens of milliseconds on CPU), which dominates for trees of thousands of
small leaves. Keeping the params (and so the gradients and the optimizer state) as one buffer per
dtype, and rebuilding the tree inside the loss function, makes that cost vanish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def flatten_params(tree: Any) -> tuple[dict[str, jax.Array], Callable[[dict[str, Any]], Any]]:
  """``(buffers, unflatten)``: the leaves of ``tree`` as one 1-D buffer per dtype, and back.

  Unlike :func:`jax.flatten_util.ravel_pytree`, dtypes are kept (a bfloat16 leaf stays
  bfloat16). ``unflatten`` is differentiable and jit-friendly (static slices and reshapes), so
  the gradient of ``loss(unflatten(buffers))`` with respect to ``buffers`` is already flat.

  Per-leaf options of :func:`adadelta_optax.adadelta` (``clipnorm``, ``weight_decay_mask``) then
  see each buffer as one leaf; everything else gives the same numbers as on the tree.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> flat, unflatten = adadelta_optax.flatten_params(params)
    >>> {k: v.shape for k, v in flat.items()}
    {'float32': (9,)}
    >>> jax.tree.map(jnp.shape, unflatten(flat))
    {'b': (3,), 'w': (2, 3)}
  """
  leaves, treedef = jax.tree.flatten(tree)
  layout = []  # (dtype name, offset, shape) per leaf
  sizes: dict[str, int] = {}
  for leaf in leaves:
    name = jnp.result_type(leaf).name
    offset = sizes.get(name, 0)
    shape = tuple(np.shape(leaf))
    layout.append((name, offset, shape))
    sizes[name] = offset + int(np.prod(shape, dtype=np.int64))
  buffers = {
    name: jnp.concatenate(
      [jnp.ravel(leaf) for leaf, (n, _, _) in zip(leaves, layout, strict=True) if n == name]
      or [jnp.zeros((0,), name)]
    )
    for name in sizes
  }

  def unflatten(flat: dict[str, Any]) -> Any:
    if set(flat) != set(sizes) or any(jnp.shape(flat[n]) != (sizes[n],) for n in sizes):
      raise ValueError(
        f"unflatten expects buffers { ({n: (s,) for n, s in sizes.items()}) }, got "
        f"{ ({n: jnp.shape(b) for n, b in flat.items()}) }."
      )
    return jax.tree.unflatten(
      treedef,
      [
        jax.lax.slice(
          flat[name], (offset,), (offset + int(np.prod(shape, dtype=np.int64)),)
        ).reshape(shape)
        for name, offset, shape in layout
      ],
    )

  return buffers, unflatten
