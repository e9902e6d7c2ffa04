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

import hashlib
import json
from collections.abc import Iterable
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


class TreeSpec:
  """The leaves a :class:`FlatAdadeltaState` was made for: each one's path, shape and
  accumulator dtype, in ``jax.tree.leaves`` order.

  The flat buffers alone cannot tell a ``(3, 4)`` kernel from a ``(4, 3)`` one, or two layers
  that swapped places: the same element count fills them. The spec can, so the state refuses a
  tree it was not made for, naming the first leaf that differs, as the tree layout does. Paths
  are ``jax.tree_util.keystr`` without ``.value`` attributes, so Flax's boxed params
  (``nnx.Param``) and their plain arrays have the same spec.

  It is static: a pytree node without leaves (its content is part of the state's tree
  structure), so it costs no buffer and no work in a jitted step, and passes through ``jit``,
  ``vmap``, ``jax.export`` and checkpoints (whose manifest records the structure) unchanged.
  Compare two with ``==``; ``repr`` shows the leaf count and a SHA-256 digest of the content.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.adadelta(state_layout="flat")
    >>> state = tx.init({"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)})
    >>> state.spec.paths, state.spec.shapes, state.spec.dtypes
    (("['bias']", "['kernel']"), ((4,), (3, 4)), ('float32', 'float32'))
    >>> try:  # the same 16 elements, the kernel transposed
    ...   tx.update({"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(4)}, state)
    ... except ValueError as error:
    ...   print(str(error)[:64])
    the gradient tree does not fit the flat optimizer state: leaf 1
  """

  __slots__ = ("_digest", "_hash", "dtypes", "paths", "shapes")

  paths: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[str, ...]

  def __init__(
    self,
    paths: tuple[str, ...],
    shapes: tuple[tuple[int, ...], ...],
    dtypes: tuple[str, ...],
  ) -> None:
    if not len(paths) == len(shapes) == len(dtypes):
      raise ValueError(
        f"TreeSpec needs one path, shape and dtype per leaf, got {len(paths)} paths, "
        f"{len(shapes)} shapes and {len(dtypes)} dtypes."
      )
    self.paths = tuple(str(p) for p in paths)
    self.shapes = tuple(tuple(int(n) for n in shape) for shape in shapes)
    self.dtypes = tuple(np.dtype(d).name for d in dtypes)
    content = repr((self.paths, self.shapes, self.dtypes)).encode()
    self._digest = hashlib.sha256(content).hexdigest()[:16]  # the same in every process
    self._hash = hash((self.paths, self.shapes, self.dtypes))

  @classmethod
  def of(cls, tree: Any, state_dtype: Any) -> TreeSpec:
    """The spec of ``tree`` (params or gradients) for an optimizer with ``state_dtype``."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return cls(
      tuple(_path_name(path) for path, _ in flat),
      tuple(np.shape(leaf) for _, leaf in flat),
      tuple(accumulator_dtype(jnp.result_type(leaf), state_dtype).name for _, leaf in flat),
    )

  def layout(self) -> Layout:
    """Each leaf's place in the flat buffers: ``(dtype name, offset, size)``."""
    return _places(zip(self.dtypes, self.shapes, strict=True))

  def first_difference(self, other: TreeSpec) -> str | None:
    """Where ``other`` first differs from this spec, in words; ``None`` if it does not."""
    leaves = zip(self.paths, self.shapes, self.dtypes, strict=True)
    others = zip(other.paths, other.shapes, other.dtypes, strict=True)
    for i, (mine, theirs) in enumerate(zip(leaves, others, strict=False)):  # the shorter's length
      if mine != theirs:
        return (
          f"leaf {i} is {_describe_leaf(*theirs)}, the state was made for {_describe_leaf(*mine)}"
        )
    if len(self.paths) != len(other.paths):
      return f"it has {len(other.paths)} leaves, the state was made for {len(self.paths)}"
    return None

  def __eq__(self, other: object) -> bool:
    if self is other:
      return True
    if not isinstance(other, TreeSpec):
      return NotImplemented
    return (self._hash, self.paths, self.shapes, self.dtypes) == (
      hash(other),
      other.paths,
      other.shapes,
      other.dtypes,
    )

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f"TreeSpec({len(self.paths)} leaves, sha256 {self._digest})"


def _path_name(path: tuple[Any, ...]) -> str:
  """``keystr`` of ``path`` without ``.value`` attributes: Flax boxes a param in a ``Variable``
  whose one child is ``.value``, and ``nnx.Optimizer`` makes the state from the boxed params but
  steps it with their plain arrays. Leaving the box out is one-to-one within a tree (a node
  holding ``.value`` is no leaf)."""
  value = jax.tree_util.GetAttrKey("value")
  return jax.tree_util.keystr(tuple(key for key in path if key != value))


def _describe_leaf(path: str, shape: tuple[int, ...], dtype: str) -> str:
  return f"tree{path} with shape {shape} (accumulators {dtype})"


jax.tree_util.register_pytree_node(TreeSpec, lambda spec: ((), spec), lambda spec, _: spec)
jax.export.register_pytree_node_serialization(
  TreeSpec,
  serialized_name="adadelta_optax.TreeSpec",
  serialize_auxdata=lambda spec: json.dumps([spec.paths, spec.shapes, spec.dtypes]).encode(),
  deserialize_auxdata=lambda data: TreeSpec(*json.loads(data)),
)


class FlatAdadeltaState(NamedTuple):
  """State of :func:`adadelta_optax.adadelta` with ``state_layout="flat"``.

  Attributes:
    count: number of updates applied so far, int32 (as in :class:`AdadeltaState`).
    accum_grad: :math:`E[g^2]` as a dict from accumulator dtype name (``"float32"``,
      ``"bfloat16"``, ...) to one 1-D buffer: that dtype's leaves, ravelled and concatenated in
      ``jax.tree.leaves(params)`` order.
    accum_var: :math:`E[\\Delta x^2]`, in the same layout.
    spec: the :class:`TreeSpec` of the params it was made for (static: no buffer). ``update``,
      ``apply_gradients`` and :func:`tree_state` refuse a tree that differs from it.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> tx = adadelta_optax.adadelta(state_layout="flat")
    >>> state = tx.init(params)
    >>> {name: buffer.shape for name, buffer in state.accum_grad.items()}
    {'float32': (9,)}
    >>> state.spec.paths, state.spec.shapes
    (("['b']", "['w']"), ((3,), (2, 3)))
    >>> tree = adadelta_optax.tree_state(state, params)
    >>> jax.tree.map(jnp.shape, tree.accum_grad)
    {'b': (3,), 'w': (2, 3)}
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
  accum_grad: dict[str, jax.Array]
  accum_var: dict[str, jax.Array]
  spec: TreeSpec


jax.export.register_namedtuple_serialization(
  FlatAdadeltaState, serialized_name="adadelta_optax.FlatAdadeltaState"
)


def layout(tree: Any, state_dtype: Any) -> Layout:
  """Each leaf's place in the flat buffers: ``(dtype name, offset, size)`` in leaf order.

  A leaf's accumulators have its dtype, or ``state_dtype`` where given (kept complex for a
  complex leaf), as in the tree state (:func:`adadelta_optax.core._rule.accumulator_dtype`).
  """
  return _places(
    (accumulator_dtype(jnp.result_type(leaf), state_dtype).name, np.shape(leaf))
    for leaf in jax.tree.leaves(tree)
  )


def _places(leaves: Iterable[tuple[str, tuple[int, ...]]]) -> Layout:
  """``(dtype name, offset, size)`` for each ``(accumulator dtype name, shape)``, in order: each
  dtype's leaves follow one another in its buffer."""
  places: Layout = []
  ends: dict[str, int] = {}
  for name, shape in leaves:
    size = int(np.prod(shape, dtype=np.int64))
    places.append((name, ends.get(name, 0), size))
    ends[name] = ends.get(name, 0) + size
  return places


def buffer_sizes(places: Layout) -> dict[str, int]:
  """The length of each dtype's buffer."""
  sizes: dict[str, int] = {}
  for name, offset, size in places:
    sizes[name] = offset + size
  return sizes


def zeros(spec: TreeSpec) -> dict[str, jax.Array]:
  """Zero accumulators in the flat layout of ``spec``."""
  return {name: jnp.zeros((n,), name) for name, n in buffer_sizes(spec.layout()).items()}


def init(tree: Any, state_dtype: Any, count: jax.Array) -> FlatAdadeltaState:
  """The zero state for params ``tree``."""
  spec = TreeSpec.of(tree, state_dtype)
  return FlatAdadeltaState(count, zeros(spec), zeros(spec), spec)


def _shapes(buffers: dict[str, Any]) -> dict[str, tuple[int, ...]]:
  return {name: tuple(np.shape(b)) for name, b in buffers.items()}


def check_fits(state: FlatAdadeltaState, tree: Any, state_dtype: Any, what: str) -> None:
  """A ``ValueError`` unless ``tree``'s leaves (``what``: "gradient", "params") are those the
  state was made for (paths, shapes, accumulator dtypes) and its buffers hold them exactly."""
  if not isinstance(state.spec, TreeSpec):
    raise TypeError(
      f"FlatAdadeltaState.spec must be a TreeSpec, got {type(state.spec).__name__}: make the "
      "state with the optimizer's init or adadelta_optax.flat_state."
    )
  _validation.check_count(state.count, "FlatAdadeltaState.count")
  difference = state.spec.first_difference(TreeSpec.of(tree, state_dtype))
  if difference is not None:
    raise ValueError(
      f"the {what} tree does not fit the flat optimizer state: {difference}. The {what} must "
      "have the structure, shapes and dtypes of the params the state was made for."
    )
  expected = {name: (n,) for name, n in buffer_sizes(state.spec.layout()).items()}
  for field in ("accum_grad", "accum_var"):
    buffers = getattr(state, field)
    if not isinstance(buffers, dict):
      raise TypeError(
        f"FlatAdadeltaState.{field} must be a dict from dtype name to buffer, got "
        f"{type(buffers).__name__}."
      )
    for name, buffer in buffers.items():
      if not isinstance(buffer, (np.ndarray, jax.Array)):
        raise TypeError(
          f"FlatAdadeltaState.{field}[{name!r}] must be an array, got {buffer!r:.80} "
          f"({type(buffer).__name__})."
        )
    dtypes = {name: np.dtype(b.dtype).name for name, b in buffers.items()}
    if _shapes(buffers) != expected or any(name != dtypes[name] for name in dtypes):
      raise ValueError(
        f"FlatAdadeltaState.{field} does not hold the leaves of its spec: they need buffers "
        f"{expected}, it holds {_shapes(buffers)} (dtypes {dtypes})."
      )


def flat_state(state: AdadeltaState) -> FlatAdadeltaState:
  """The :class:`FlatAdadeltaState` holding exactly ``state``'s accumulators (no rounding).

  Args:
    state: an :class:`~adadelta_optax.AdadeltaState` (``state_layout="tree"``).

  Returns:
    The same count and accumulators, each dtype's leaves concatenated in leaf order, with the
    :class:`TreeSpec` of its accumulator trees; a ``state_layout="flat"`` optimizer with the
    same options continues from it exactly.

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
  _validation.check_count(state.count, "state.count")
  for field in ("accum_grad", "accum_var"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(state, field))[0]:
      if not isinstance(leaf, (np.ndarray, jax.Array)) or not jnp.issubdtype(
        leaf.dtype, jnp.inexact
      ):
        raise TypeError(
          f"state.{field} leaf at {_validation.path_name(path)} must be a floating point array, "
          f"got {leaf!r:.80} ({type(leaf).__name__})."
        )
  _validation.check_same_tree(
    state.accum_grad,
    state.accum_var,
    reference_name="state.accum_grad",
    other_name="state.accum_var",
  )
  # The accumulators' own dtypes decide the buffers (state_dtype is already applied to them):
  # flatten_params's buffers, which are this layout.
  (accum_grad, _), (accum_var, _) = (
    flatten_params(state.accum_grad),
    flatten_params(state.accum_var),
  )
  return FlatAdadeltaState(state.count, accum_grad, accum_var, TreeSpec.of(state.accum_grad, None))


def tree_state(state: FlatAdadeltaState, params: Any, *, state_dtype: Any = None) -> AdadeltaState:
  """The :class:`~adadelta_optax.AdadeltaState` holding exactly ``state``'s accumulators.

  Its accumulators are trees shaped like ``params``, as ``state_layout="tree"`` keeps them: what
  :func:`adadelta_optax.get_weights`, the torch and Keras interop and a tree optimizer take.

  Args:
    state: a :class:`FlatAdadeltaState`.
    params: the params it was made for (or any tree with their structure, shapes and dtypes,
      such as the gradients).
    state_dtype: the optimizer's ``state_dtype``, if any. Found from the state's spec when
      omitted: ``None`` if its accumulator dtypes are the params' own, else the one dtype they
      all have.

  Raises:
    ValueError: if ``params`` are not the tree the state was made for (the message names the
      first leaf that differs) or its buffers do not hold that tree exactly.

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
  leaves, treedef = jax.tree.flatten(params)

  def rebuild(buffers: dict[str, jax.Array]) -> Any:
    return jax.tree.unflatten(
      treedef,
      [
        jax.lax.slice(buffers[name], (offset,), (offset + size,)).reshape(np.shape(leaf))
        for leaf, (name, offset, size) in zip(leaves, state.spec.layout(), strict=True)
      ],
    )

  return AdadeltaState(state.count, rebuild(state.accum_grad), rebuild(state.accum_var))


def _infer_state_dtype(state: FlatAdadeltaState, params: Any) -> Any:
  """``None`` if the spec's accumulator dtypes are the params' own, else the one real dtype they
  hold (a complex accumulator holds its real counterpart: complex128 for a float64
  ``state_dtype``)."""
  if not isinstance(state.spec, TreeSpec):
    return None  # check_fits explains
  own = tuple(jnp.result_type(leaf).name for leaf in jax.tree.leaves(params))
  if own == state.spec.dtypes:
    return None
  real = {real_dtype(name) for name in state.spec.dtypes}
  return real.pop() if len(real) == 1 else None
