"""Shardings of the optimizer state, for ``out_shardings`` of a jitted ``init`` or step.

Outside ``jit``, ``init`` already gives each accumulator its parameter's sharding
(``jnp.zeros_like`` keeps a committed array's sharding). Under ``jit`` the sharding of a new array
is XLA's choice (with a mesh of ``Auto`` axes it is usually one device), so a jitted init or step
that must keep the layout states it with :func:`state_shardings`.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

from adadelta_optax.core._flat_state import FlatAdadeltaState
from adadelta_optax.core._rule import ScaleByAdadeltaState
from adadelta_optax.core._state import AdadeltaState


def _device_id(device: Any) -> int:
  return int(device.id)


def _single_device(device: Any) -> Sharding:
  """The sharding of one device: ``jax.sharding.make_single_device_sharding`` where it exists
  (jax 0.10 and later; jax 0.12 deprecates the ``SingleDeviceSharding`` class), else the class."""
  make = getattr(jax.sharding, "make_single_device_sharding", None)
  if make is None:
    make = jax.sharding.SingleDeviceSharding
  sharding: Sharding = make(device)
  return sharding


def replicated_like(sharding: Sharding) -> Sharding:
  """A sharding that replicates an array over the devices of ``sharding``."""
  if isinstance(sharding, NamedSharding):
    return NamedSharding(sharding.mesh, PartitionSpec())
  devices = sorted(sharding.device_set, key=_device_id)
  if len(devices) == 1:
    return _single_device(devices[0])
  return NamedSharding(Mesh(np.array(devices), ("replica",)), PartitionSpec())


def _param_shardings(params: Any) -> Any:
  def sharding_of(path: tuple[Any, ...], leaf: Any) -> Sharding:
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(sharding, Sharding):
      raise TypeError(
        f"params{jax.tree_util.keystr(path)} has no sharding (got {type(leaf).__name__}); give "
        "jax.Arrays placed with jax.device_put, or jax.ShapeDtypeStruct(..., sharding=...)."
      )
    return sharding

  return jax.tree_util.tree_map_with_path(sharding_of, params)


def _with_paths(tree: Any) -> list[tuple[str, Sharding]]:
  leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: isinstance(x, Sharding))
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves]


def state_shardings(tx: Any, params: Any) -> Any:
  """The shardings of ``tx.init(params)``: each accumulator sharded like its parameter.

  Works for :func:`adadelta_optax.adadelta` and for any optax transformation whose state holds
  one or more :class:`~adadelta_optax.AdadeltaState` or
  :class:`~adadelta_optax.ScaleByAdadeltaState` (``optax.chain``, ``optax.inject_hyperparams``,
  :func:`adadelta_optax.skip_nonfinite`, ...). Every other state
  leaf (the step count, hyperparameters, counters) is replicated over the parameters' devices,
  and so are the buffers of a :class:`~adadelta_optax.FlatAdadeltaState`, whose params must
  then be replicated too (a ``ValueError`` names a sharded one).

  Args:
    tx: the optimizer.
    params: the parameters, as ``jax.Array`` s or ``jax.ShapeDtypeStruct`` s carrying a sharding.

  Returns:
    A pytree of :class:`jax.sharding.Sharding` shaped like the state, usable as ``out_shardings``
    of a jitted ``init`` and, with the params' shardings, of a jitted training step.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.adadelta()
    >>> params = {"w": jnp.ones((4, 2))}
    >>> shardings = adadelta_optax.distributed.state_shardings(tx, params)
    >>> state = jax.jit(tx.init, out_shardings=shardings)(params)
    >>> state.accum_grad["w"].sharding == params["w"].sharding
    True
  """
  param_shardings = _param_shardings(params)
  leaves = jax.tree.leaves(param_shardings)
  if not leaves:
    return jax.tree.map(lambda _: None, jax.eval_shape(tx.init, params))
  replicated = replicated_like(leaves[0])
  abstract = jax.eval_shape(tx.init, params)

  def is_rule_state(node: Any) -> bool:
    return isinstance(node, (AdadeltaState, ScaleByAdadeltaState, FlatAdadeltaState))

  sharded = [path for path, s in _with_paths(param_shardings) if not s.is_fully_replicated]
  flat = any(
    isinstance(node, FlatAdadeltaState) for node in jax.tree.leaves(abstract, is_leaf=is_rule_state)
  )
  if flat and sharded:
    raise ValueError(
      f"params{sharded[0]} is sharded, but tx has state_layout='flat', whose accumulators are "
      "one buffer per dtype and cannot be sharded like each parameter: use "
      "state_layout='tree' for sharded params (the flat layout is for many small leaves on "
      "one device)."
    )

  def shardings_of(node: Any) -> Any:
    if isinstance(node, AdadeltaState):
      return AdadeltaState(cast(Any, replicated), param_shardings, param_shardings)
    if isinstance(node, ScaleByAdadeltaState):
      return ScaleByAdadeltaState(param_shardings, param_shardings)
    if isinstance(node, FlatAdadeltaState):
      return jax.tree.map(lambda _: replicated, node)
    return replicated

  return jax.tree.map(shardings_of, abstract, is_leaf=is_rule_state)
