"""Keras' ``get_weights`` / ``set_weights`` on the optimizer state, in tf.keras' list layouts.

tf.keras 2.x (``OptimizerV2.weights``): ``[iterations, accum_grad of each variable...,
accum_var of each variable...]``. tf.keras 1.x (``keras.optimizers.Adadelta.weights``):
``[accumulators..., delta_accumulators...]``, without iterations. Parameter leaves are taken in
pytree order (``jax.tree.leaves``), which is the variable order to give the Keras model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adadelta_optax.core._flat_state import FlatAdadeltaState
from adadelta_optax.core._state import AdadeltaState


def _is_adadelta_state(node: Any) -> bool:
  return isinstance(node, AdadeltaState)


def _is_either_state(node: Any) -> bool:
  return isinstance(node, (AdadeltaState, FlatAdadeltaState))


def find_state(state: Any) -> Any:
  """The one :class:`AdadeltaState` inside ``state`` (an error naming how many were found)."""
  states = [
    node for node in jax.tree.leaves(state, is_leaf=_is_either_state) if _is_either_state(node)
  ]
  found = [node for node in states if isinstance(node, AdadeltaState)]
  if not found and states:
    raise TypeError(
      "state holds a FlatAdadeltaState (state_layout='flat'); this takes the tree layout: "
      "convert it with adadelta_optax.tree_state(state, params) first."
    )
  if len(found) != 1:
    raise ValueError(
      f"state must contain exactly one AdadeltaState (the state of adadelta_optax.adadelta, "
      f"possibly inside optax wrappers), found {len(found)}."
    )
  return found[0]


def get_weights(state: Any) -> list[np.ndarray]:
  """The optimizer state as the list tf.keras 2.x ``Optimizer.get_weights()`` returns.

  Args:
    state: an :class:`AdadeltaState`, or any state holding exactly one (e.g. the state of
      ``optax.inject_hyperparams(adadelta)`` or ``optax.MultiSteps``).

  Returns:
    ``[iterations (int64), accum_grad per leaf..., accum_var per leaf...]`` as NumPy arrays.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> state = adadelta_optax.adadelta().init({"b": jnp.zeros(2), "w": jnp.zeros((2, 3))})
    >>> [w.shape for w in adadelta_optax.get_weights(state)]  # iterations, accum_grad, accum_var
    [(), (2,), (2, 3), (2,), (2, 3)]
  """
  inner = find_state(state)
  return (
    [np.asarray(inner.count, dtype=np.int64)]
    + [np.asarray(leaf) for leaf in jax.tree.leaves(inner.accum_grad)]
    + [np.asarray(leaf) for leaf in jax.tree.leaves(inner.accum_var)]
  )


def as_numpy(entry: str, value: Any) -> np.ndarray:
  """``value`` (an array, a list, a NumPy/JAX/torch array or tensor) as a NumPy array copy.

  torch tensors are detached (one that requires grad is fine) and bfloat16 ones converted
  exactly (NumPy has no bfloat16; ``ml_dtypes`` has), without importing torch.

  Raises:
    TypeError: naming ``entry``, for something that is no numeric array.
  """
  try:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
      value = value.detach().cpu().resolve_conj()
      # bfloat16 goes through float32 exactly; a copy, as torch keeps updating its tensors.
      bf16 = str(value.dtype) == "torch.bfloat16"
      copied: np.ndarray = (
        value.float().numpy().astype(jnp.bfloat16) if bf16 else value.numpy().copy()
      )
      return copied
    array = np.array(value, copy=True)
  except (TypeError, ValueError, RuntimeError, OverflowError) as error:
    raise TypeError(
      f"{entry} must be a numeric array, got {type(value).__name__}: {error}"
    ) from None
  if array.dtype.kind not in "biufc" and array.dtype != jnp.bfloat16:
    raise TypeError(f"{entry} must be a numeric array, got dtype {array.dtype} ({value!r:.80}).")
  return array


def checked(
  entry: str, value: Any, like: jax.Array, *, accumulator: bool, nonnegative: bool = True
) -> jax.Array:
  """``value`` as an array like ``like``, or an error naming ``entry`` (shape, kind, value).

  ``accumulator``: a finite array, ``>= 0`` if ``nonnegative``, and still finite in the state's
  dtype (1e300 does not fit a float32 state); else a count in the int range.
  """
  array = as_numpy(entry, value)
  if array.shape != np.shape(like):
    raise ValueError(f"{entry}: expected shape {np.shape(like)}, got {array.shape}.")
  want = jnp.dtype(like.dtype)
  kinds = {"f": "floating", "c": "complex", "i": "integer", "b": "bool"}

  def kind(dtype: Any) -> str:
    if jnp.issubdtype(dtype, jnp.complexfloating):
      return "c"
    if jnp.issubdtype(dtype, jnp.floating):
      return "f"
    return "b" if dtype == np.bool_ else "i"

  want_kind, have_kind = kind(want), kind(array.dtype)
  if have_kind != want_kind:
    raise ValueError(
      f"{entry}: expected a {kinds[want_kind]} array (the state holds {want.name}), got "
      f"dtype {array.dtype}."
    )
  if accumulator:
    parts = (array.real, array.imag) if want_kind == "c" else (array,)
    non_finite = sum(int(np.sum(~np.isfinite(p))) for p in parts)
    negative = sum(int(np.sum(p < 0)) for p in parts) if nonnegative else 0
    if non_finite or negative:
      raise ValueError(
        f"{entry}: a moving average of squares must be finite and >= 0 everywhere, got "
        f"{non_finite} non-finite and {negative} negative values."
      )
    finfo = jnp.finfo(want)
    largest = max((float(np.max(np.abs(p))) for p in parts if p.size), default=0.0)
    if largest > float(finfo.max):
      raise ValueError(
        f"{entry}: values up to {largest:.3g} do not fit the state's {want.name} (largest "
        f"finite {float(finfo.max):.3g}); they would become inf."
      )
  else:
    limit = np.iinfo(want).max
    if array.ndim or not 0 <= int(array) <= limit:
      raise ValueError(f"{entry}: iterations must be in [0, {limit}] (one integer), got {array}.")
  return jnp.array(array, dtype=want, copy=True)  # never alias the caller's (mutable) buffers


def set_weights(state: Any, weights: list[Any]) -> Any:
  """A copy of ``state`` with the optimizer weights replaced by ``weights``.

  Accepts the tf.keras 2.x layout ``[iterations, accum_grad..., accum_var...]`` (``2n + 1``
  entries for ``n`` parameter leaves) and the tf.keras 1.x layout without iterations (``2n``
  entries; the count is then left as it is). Everything is checked before anything is replaced.

  Raises:
    ValueError: wrong number of entries, or an entry with the wrong shape, dtype kind (integer /
      floating / complex) or value (negative or non-finite accumulators), naming the entry.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> import adadelta_optax
    >>> state = adadelta_optax.adadelta().init({"w": jnp.zeros(3)})
    >>> weights = [np.int64(10), np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)]
    >>> state = adadelta_optax.set_weights(state, weights)
    >>> int(state.count), state.accum_grad["w"].tolist()
    (10, [0.5, 0.5, 0.5])
    >>> adadelta_optax.set_weights(state, weights[:1])
    Traceback (most recent call last):
    ...
    ValueError: ...
  """
  inner = find_state(state)
  paths = [
    jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(inner.accum_grad)[0]
  ]
  n = len(paths)
  weights = list(weights)
  if len(weights) not in (2 * n + 1, 2 * n):
    raise ValueError(
      f"weights has {len(weights)} entries; for {n} parameter leaves expected {2 * n + 1} "
      f"(tf.keras 2.x: iterations, {n} accum_grad, {n} accum_var) or {2 * n} (tf.keras 1.x, "
      "no iterations)."
    )
  offset = len(weights) - 2 * n
  count = inner.count
  if offset:
    count = checked("weights[0] (iterations)", weights[0], inner.count, accumulator=False)
  treedef: Any = jax.tree.structure(inner.accum_grad)  # a PyTreeDef (opaque to type checkers)
  new = {}
  for slot_index, slot in enumerate(("accum_grad", "accum_var")):
    old_leaves = jax.tree.leaves(getattr(inner, slot))
    leaves = []
    for i, (path, old) in enumerate(zip(paths, old_leaves, strict=True)):
      k = offset + slot_index * n + i
      leaves.append(
        checked(f"weights[{k}] ({slot} of {path or 'root'})", weights[k], old, accumulator=True)
      )
    new[slot] = treedef.unflatten(leaves)
  return replace_state(state, inner, inner._replace(count=count, **new))


def replace_state(state: Any, inner: AdadeltaState, replacement: AdadeltaState) -> Any:
  """A copy of ``state`` with its :class:`AdadeltaState` ``inner`` replaced."""
  return jax.tree.map(
    lambda node: replacement if node is inner else node, state, is_leaf=_is_adadelta_state
  )
