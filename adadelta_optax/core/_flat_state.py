"""The flat state layout (``state_layout="flat"``): one accumulator buffer per dtype.

A jitted step pays a fixed cost for every buffer it returns (on CPU a few microseconds each, in
JAX's runtime and in the allocator), so for a tree of thousands of small leaves the optimizer
state's two buffers per leaf cost more than the arithmetic. :class:`FlatAdadeltaState` keeps
:math:`E[g^2]` and :math:`E[\\Delta x^2]` as one 1-D buffer per accumulator dtype instead: the
step returns the params (one buffer per leaf, as the user's tree has them) and two buffers per
dtype, whatever the number of leaves. The user's params, gradients and loss stay trees.

The layout is that of :func:`adadelta_optax.flatten_params` applied to the tree state's
accumulators: each dtype's leaves ravelled and concatenated in ``jax.tree.leaves`` order.
:func:`flat_state` and :func:`tree_state` convert between the layouts exactly (bit for bit), so
everything that reads the documented :class:`~adadelta_optax.AdadeltaState` (``get_weights``,
the torch and Keras interop, the tf.keras checkpoint layout) takes ``tree_state(state, params)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.export  # a submodule: `import jax` loads it only from jax 0.8 on
import jax.numpy as jnp
import numpy as np

from adadelta_optax.core import _validation
from adadelta_optax.core._dtypes import real_dtype
from adadelta_optax.core._flat import flatten_params
from adadelta_optax.core._rule import accumulator_dtype
from adadelta_optax.core._state import AdadeltaState

#: Per leaf, in ``jax.tree.leaves`` order: (accumulator dtype name, offset in its buffer, size).
Layout = list[tuple[str, int, int]]


class FlatAdadeltaState(NamedTuple):
  """State of :func:`adadelta_optax.adadelta` with ``state_layout="flat"``.

  Attributes:
    count: number of updates applied so far, int32 (as in :class:`AdadeltaState`).
    accum_grad: :math:`E[g^2]` as a dict from accumulator dtype name (``"float32"``,
      ``"bfloat16"``, ...) to one 1-D buffer: that dtype's leaves, ravelled and concatenated in
      ``jax.tree.leaves(params)`` order.
    accum_var: :math:`E[\\Delta x^2]`, in the same layout.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> tx = adadelta_optax.adadelta(state_layout="flat")
    >>> state = tx.init(params)
    >>> {name: buffer.shape for name, buffer in state.accum_grad.items()}
    {'float32': (9,)}
    >>> tree = adadelta_optax.tree_state(state, params)
    >>> jax.tree.map(jnp.shape, tree.accum_grad)
    {'b': (3,), 'w': (2, 3)}
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
  accum_grad: dict[str, jax.Array]
  accum_var: dict[str, jax.Array]


jax.export.register_namedtuple_serialization(
  FlatAdadeltaState, serialized_name="adadelta_optax.FlatAdadeltaState"
)


def layout(tree: Any, state_dtype: Any) -> Layout:
  """Each leaf's place in the flat buffers: ``(dtype name, offset, size)`` in leaf order.

  A leaf's accumulators have its dtype, or ``state_dtype`` where given (kept complex for a
  complex leaf), as in the tree state (:func:`adadelta_optax.core._rule.accumulator_dtype`).
  """
  places: Layout = []
  ends: dict[str, int] = {}
  for leaf in jax.tree.leaves(tree):
    name = accumulator_dtype(jnp.result_type(leaf), state_dtype).name
    size = int(np.prod(np.shape(leaf), dtype=np.int64))
    places.append((name, ends.get(name, 0), size))
    ends[name] = ends.get(name, 0) + size
  return places


def buffer_sizes(places: Layout) -> dict[str, int]:
  """The length of each dtype's buffer."""
  sizes: dict[str, int] = {}
  for name, offset, size in places:
    sizes[name] = offset + size
  return sizes


def zeros(tree: Any, state_dtype: Any) -> dict[str, jax.Array]:
  """Zero accumulators for ``tree`` in the flat layout."""
  sizes = buffer_sizes(layout(tree, state_dtype))
  return {name: jnp.zeros((n,), name) for name, n in sizes.items()}


def _shapes(buffers: dict[str, Any]) -> dict[str, tuple[int, ...]]:
  return {name: tuple(np.shape(b)) for name, b in buffers.items()}


def check_fits(state: FlatAdadeltaState, tree: Any, state_dtype: Any, what: str) -> None:
  """A ``ValueError`` unless ``tree``'s leaves (``what``: "gradient", "params") fill exactly the
  buffers of ``state``, with their dtypes."""
  expected = {name: (n,) for name, n in buffer_sizes(layout(tree, state_dtype)).items()}
  for field in ("accum_grad", "accum_var"):
    buffers = getattr(state, field)
    if not isinstance(buffers, dict):
      raise TypeError(
        f"FlatAdadeltaState.{field} must be a dict from dtype name to buffer, got "
        f"{type(buffers).__name__}."
      )
    dtypes = {name: jnp.result_type(b).name for name, b in buffers.items()}
    if _shapes(buffers) != expected or any(name != dtypes[name] for name in dtypes):
      raise ValueError(
        f"the {what} tree does not fit the flat optimizer state: its leaves need buffers "
        f"{expected}, state.{field} holds {_shapes(buffers)} (dtypes {dtypes}). The {what} must "
        "have the structure, shapes and dtypes of the params the state was made for."
      )


def flat_state(state: AdadeltaState) -> FlatAdadeltaState:
  """The :class:`FlatAdadeltaState` holding exactly ``state``'s accumulators (no rounding).

  Args:
    state: an :class:`~adadelta_optax.AdadeltaState` (``state_layout="tree"``).

  Returns:
    The same count and accumulators, each dtype's leaves concatenated in leaf order; a
    ``state_layout="flat"`` optimizer with the same options continues from it exactly.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> state = adadelta_optax.adadelta().init(params)
    >>> flat = adadelta_optax.flat_state(state)
    >>> flat.accum_grad["float32"].shape
    (9,)
  """
  if not isinstance(state, AdadeltaState):
    raise TypeError(f"flat_state takes an AdadeltaState, got {type(state).__name__}.")
  # The accumulators' own dtypes decide the buffers (state_dtype is already applied to them):
  # flatten_params's buffers, which are this layout.
  (accum_grad, _), (accum_var, _) = (
    flatten_params(state.accum_grad),
    flatten_params(state.accum_var),
  )
  return FlatAdadeltaState(state.count, accum_grad, accum_var)


def tree_state(state: FlatAdadeltaState, params: Any, *, state_dtype: Any = None) -> AdadeltaState:
  """The :class:`~adadelta_optax.AdadeltaState` holding exactly ``state``'s accumulators.

  Its accumulators are trees shaped like ``params``, as ``state_layout="tree"`` keeps them: what
  :func:`adadelta_optax.get_weights`, the torch and Keras interop and a tree optimizer take.

  Args:
    state: a :class:`FlatAdadeltaState`.
    params: the params it was made for (or any tree with their structure, shapes and dtypes,
      such as the gradients).
    state_dtype: the optimizer's ``state_dtype``, if any. Found from the buffers when omitted:
      ``None`` if they fit the params' own dtypes, else the one dtype they all have.

  Raises:
    ValueError: if ``params`` do not fill the buffers exactly.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.ones((2, 3), jnp.bfloat16)}
    >>> tx = adadelta_optax.adadelta(state_layout="flat", state_dtype="float32")
    >>> tree = adadelta_optax.tree_state(tx.init(params), params)
    >>> tree.accum_grad["w"].dtype, tree.accum_grad["w"].shape
    (dtype('float32'), (2, 3))
  """
  if not isinstance(state, FlatAdadeltaState):
    raise TypeError(f"tree_state takes a FlatAdadeltaState, got {type(state).__name__}.")
  if state_dtype is None:
    state_dtype = _infer_state_dtype(state, params)
  else:
    state_dtype = _validation.canonical_state_dtype(state_dtype)  # "float32", jnp.float32, ...
  check_fits(state, params, state_dtype, "params")
  places = layout(params, state_dtype)
  leaves, treedef = jax.tree.flatten(params)

  def rebuild(buffers: dict[str, jax.Array]) -> Any:
    return jax.tree.unflatten(
      treedef,
      [
        jax.lax.slice(buffers[name], (offset,), (offset + size,)).reshape(np.shape(leaf))
        for leaf, (name, offset, size) in zip(leaves, places, strict=True)
      ],
    )

  return AdadeltaState(state.count, rebuild(state.accum_grad), rebuild(state.accum_var))


def _infer_state_dtype(state: FlatAdadeltaState, params: Any) -> Any:
  """``None`` if the buffers fit the params' own dtypes, else the one real dtype they hold (a
  complex buffer holds its real counterpart: complex128 for a float64 ``state_dtype``)."""
  if not isinstance(state.accum_grad, dict):
    return None  # check_fits explains
  own = buffer_sizes(layout(params, None))
  if own == {name: int(np.size(b)) for name, b in state.accum_grad.items()}:
    return None
  real = {real_dtype(name) for name in state.accum_grad}
  return real.pop() if len(real) == 1 else None
