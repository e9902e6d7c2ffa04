r"""Every leaf's squared L2 norm, for the global clipping norm, with public JAX APIs.

:func:`squared_norms` returns :math:`n_i = \sum_j |x_{i,j}|^2` for each leaf :math:`i`. How many
all-reduces a sharded step spends on them depends on what is known of the leaves' shardings when
the step is traced:

- **Explicit mesh axes** (``jax.set_mesh`` of a mesh whose axes are all ``AxisType.Explicit``):
  the sharding is part of each leaf's type, and the sums are one ``jax.shard_map`` over that mesh.
  On device :math:`d`, with :math:`S_{i,d}` the elements of leaf :math:`i` that it holds,

  .. math::

    p_{i,d} = [d \text{ is the first holder of } S_{i,d}] \sum_{j \in S_{i,d}} |x_{i,j}|^2,
    \qquad n_i = \sum_d p_{i,d},

  so that a shard held by several devices (a leaf replicated over some mesh axes) counts once.
  The sum over :math:`d` is one ``psum`` of the vector :math:`(p_{1,d}, \dots, p_{n,d})`: exactly
  one all-reduce of one number per leaf, whatever axes each leaf is sharded over. It lowers,
  exports (also for an ``AbstractMesh``) and transforms (``vmap``, ``grad``) like any JAX code.
- **Otherwise** (``Auto`` axes, the default: shardings given by ``in_shardings`` / ``device_put``
  or chosen by propagation), the shardings are not known at trace time, and the sums are plain
  ``jnp.sum`` per leaf. XLA's SPMD partitioner then reduces each leaf over the mesh axes that
  shard it and merges only all-reduces with the same replica groups: **one all-reduce per distinct
  replica group** (measured: 1 for pure FSDP, 2 for a mixed FSDP x tensor-parallel layout of
  leaves sharded over ``("fsdp", "tp")``, ``"tp"`` and ``"fsdp"``). Correct, exportable and
  transformable like any JAX code.

**Opt-in: one all-reduce on ``Auto`` axes** (``ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM=1`` in the
environment when the step is traced, or ``squared_norms(..., private_partitioning=True)``). The
sums are then a :func:`jax.experimental.custom_partitioning` op whose partition rule runs inside
XLA's partitioner, sees every leaf's final sharding and computes the :math:`p_{i,d}` above (also
masking the padding of uneven shards), followed by one ``psum`` over all devices. Reading a
sharding there needs JAX internals (a sharding's device order and its XLA ``HloSharding``), so
the opt-in is pinned to the JAX versions it is tested on (:data:`PRIVATE_TESTED_JAX_VERSIONS`);
on any other version it warns (:class:`PrivateGlobalNormUnavailableWarning`) and takes the public
path above. Nothing is registered with JAX until the opt-in is first used. Under the opt-in a
leaf sharded in some other way (maximal, partially manual, unreduced) is gathered first; ``vmap``
and derivatives use the plain sums (public ``jax.custom_batching.custom_vmap`` and
``jax.custom_jvp`` rules); a multi-device process cannot lower the step for an ``AbstractMesh``
of ``Auto`` axes, and ``jax.export`` refuses it (``NotImplementedError``: the partitioner's
callback cannot be serialized): export without the opt-in, or on an explicit mesh.

The summation order over devices differs from one device's, so a sharded norm may differ from
the one-device norm in the last bits.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec, Sharding

#: The environment variable that opts in to the one-all-reduce norm on ``Auto`` mesh axes.
PRIVATE_GLOBAL_NORM_ENV = "ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM"
#: The JAX versions whose internals the opt-in is tested on (tests/test_sharding.py).
PRIVATE_TESTED_JAX_VERSIONS: tuple[str, ...] = ("0.10.2",)

# The one mesh axis of the partitioned computation: every device of the step, in partition order.
_AXIS = "adadelta_optax_devices"


class PrivateGlobalNormUnavailableWarning(UserWarning):
  """The one-all-reduce norm was requested but is not available: the public norm is used."""


def abs_square(leaf: jax.Array) -> jax.Array:
  """:math:`|x|^2` elementwise: :math:`\\mathrm{re}^2 + \\mathrm{im}^2` for a complex leaf."""
  if jnp.iscomplexobj(leaf):
    return jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf))
  return jnp.square(leaf)


def _plain(*leaves: jax.Array) -> jax.Array:
  """The squared norms, stacked: XLA reduces a sharded leaf over its own replica groups."""
  return jnp.stack([jnp.sum(abs_square(leaf)) for leaf in leaves])


def _explicit_layout(leaves: Sequence[jax.Array]) -> tuple[Mesh, list[PartitionSpec]] | None:
  """``(mesh, specs)`` when every leaf's type carries its sharding, else None.

  That is when all leaves live on one mesh of several devices whose axes are all ``Explicit``
  (``jax.set_mesh`` of a mesh made with ``axis_types=(AxisType.Explicit, ...)``), every
  dimension divides evenly into its shards, and no leaf is unreduced.
  """
  meshes, specs = set(), []
  for leaf in leaves:
    sharding = jax.typeof(leaf).sharding
    mesh = sharding.mesh
    if mesh.empty or mesh.size == 1:
      return None
    if any(kind != AxisType.Explicit for kind in mesh.axis_types):
      return None
    spec = sharding.spec
    if spec.unreduced or spec.reduced:
      return None
    for size, axes in zip(leaf.shape, spec, strict=False):
      shards = int(np.prod([mesh.shape[axis] for axis in _axes(axes)]))
      if size % shards:
        return None
    meshes.add(mesh)
    specs.append(spec)
  return (meshes.pop(), specs) if len(meshes) == 1 else None


def _axes(entry: Any) -> tuple[str, ...]:
  """The mesh axes of one entry of a PartitionSpec."""
  if entry is None:
    return ()
  return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _shard_mapped(leaves: Sequence[jax.Array], mesh: Mesh, specs: list[PartitionSpec]) -> jax.Array:
  """The squared norms as one ``psum`` over the leaves' own (explicit) mesh."""

  def per_device(*shards: jax.Array) -> jax.Array:
    partial = []
    for shard, spec in zip(shards, specs, strict=True):
      sharded = {axis for entry in spec for axis in _axes(entry)}
      value = jnp.sum(abs_square(shard))
      for axis in mesh.axis_names:
        if axis not in sharded:  # replicated over it: the copy at index 0 counts
          value = jnp.where(jax.lax.axis_index(axis) == 0, value, 0)
      partial.append(value)
    summed: jax.Array = jax.lax.psum(jnp.stack(partial), tuple(mesh.axis_names))
    return summed

  # check_vma=False: the psum of per-device partials is replicated by construction, and JAX's
  # replication check makes it a psum_invariant whose batching rule fails under vmap in jax 0.8
  # (TypeError: _psum_invariant_abstract_eval() got an unexpected keyword argument
  # 'axis_index_groups'). The plain psum lowers to the same single all-reduce on every jax.
  mapped = jax.shard_map(
    per_device, mesh=mesh, in_specs=tuple(specs), out_specs=PartitionSpec(), check_vma=False
  )
  return mapped(*leaves)


# --- The opt-in: JAX internals, pinned to PRIVATE_TESTED_JAX_VERSIONS. -------------------------


def _shard_layout(hlo: Any, shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray] | None:
  """``(first, valid)`` of a leaf with XLA sharding ``hlo`` over ``n`` partitions, or None.

  ``first[p]``: partition ``p`` is the first (lowest id) holding its shard. ``valid[p, k]``: how
  many of its shard's entries along dimension ``k`` are data, fewer than the shard size where the
  dimension does not divide evenly (the rest is padding). None for a sharding that is neither
  replicated nor tiled (maximal, manual, unreduced).
  """
  ndim = len(shape)
  valid = np.tile(np.asarray(shape, np.int64), (n, 1))
  first = np.zeros(n, bool)
  if hlo.is_replicated():
    first[0] = True
    return first, valid
  if not hlo.is_tiled() or hlo.is_manual() or hlo.is_unreduced():  # unreduced: partial sums
    return None
  if any(kind != type(kind).REPLICATED for kind in hlo.subgroup_types()):
    return None
  tiles = list(hlo.tile_assignment_dimensions())
  partitions = np.asarray(hlo.tile_assignment_devices()).reshape(tiles)
  if partitions.size != n or len(tiles) < ndim:
    return None
  parts = partitions.ravel()
  blocks = np.indices(tiles).reshape(len(tiles), -1).T[:, :ndim]  # trailing tile dims replicate
  size = -(-np.asarray(shape, np.int64) // np.asarray(tiles[:ndim], np.int64))
  valid[parts] = np.clip(np.asarray(shape, np.int64) - blocks * size, 0, size)
  keys = np.ravel_multi_index(tuple(blocks.T), tiles[:ndim]) if ndim else np.zeros_like(parts)
  by_key = np.lexsort((parts, keys))  # each block's partitions, lowest id first
  lowest = np.ones(len(parts), bool)
  lowest[1:] = keys[by_key][1:] != keys[by_key][:-1]
  first[parts[by_key][lowest]] = True
  return first, valid


def _hlo_sharding(sharding: Sharding, ndim: int) -> Any:
  """A sharding's XLA ``HloSharding`` (private: ``Sharding._to_xla_hlo_sharding``)."""
  return sharding._to_xla_hlo_sharding(ndim)  # noqa: SLF001


def _device_assignment(arg_shapes: Sequence[Any]) -> tuple[Any, ...]:
  """The step's devices in partition order (partition ``p`` runs on ``devices[p]``).

  With ``decode_shardings=False`` every argument's sharding is a ``GSPMDSharding`` over the
  computation's device assignment (private: ``GSPMDSharding._device_assignment``).
  """
  return tuple(arg_shapes[0].sharding._device_assignment)  # noqa: SLF001


def _partition(mesh: Mesh, arg_shapes: Sequence[Any], result_shape: Any) -> tuple[Any, ...]:
  """custom_partitioning's partition rule: the :math:`p_{i,d}` of the module docstring, one psum."""
  del mesh, result_shape
  devices = _device_assignment(arg_shapes)
  flat_mesh = Mesh(np.asarray(devices, dtype=object), (_AXIS,))
  replicated = NamedSharding(flat_mesh, PartitionSpec())
  layouts, shardings = [], []
  for arg in arg_shapes:
    shape = tuple(arg.shape)
    layout = _shard_layout(_hlo_sharding(arg.sharding, len(shape)), shape, len(devices))
    if layout is None:  # gathered onto every device: the first copy counts
      layout = _shard_layout(_hlo_sharding(replicated, len(shape)), shape, len(devices))
      assert layout is not None  # a replicated sharding always has a layout
      shardings.append(replicated)
    else:
      shardings.append(arg.sharding)
    layouts.append(layout)

  def per_device(*shards: jax.Array) -> jax.Array:
    me = jax.lax.axis_index(_AXIS)
    partial = []
    for shard, (first, valid) in zip(shards, layouts, strict=True):
      square = abs_square(shard)
      for k in range(shard.ndim):
        if np.any(valid[:, k] != shard.shape[k]):  # uneven: mask the padding
          index = jax.lax.broadcasted_iota(jnp.int32, shard.shape, k)
          square = jnp.where(index < jnp.asarray(valid[:, k], jnp.int32)[me], square, 0)
      value = jnp.sum(square)
      if not first.all():  # copies on several devices: only the first counts
        value = jnp.where(jnp.asarray(first)[me], value, 0)
      partial.append(value)
    summed: jax.Array = jax.lax.psum(jnp.stack(partial), _AXIS)
    return summed

  return flat_mesh, per_device, replicated, tuple(shardings)


def _infer_sharding(mesh: Mesh, arg_shapes: Sequence[Any], result_shape: Any) -> Sharding:
  del mesh, result_shape
  devices = _device_assignment(arg_shapes)
  return NamedSharding(Mesh(np.asarray(devices, dtype=object), (_AXIS,)), PartitionSpec())


def _sharding_rule(mesh: Mesh, operand_types: Sequence[Any], result_types: Sequence[Any]) -> Any:
  """Shardy: each leaf dimension its own reduction factor; the result replicated."""
  del mesh, result_types
  operands, factors = [], []
  for i, operand in enumerate(operand_types):
    names = [f"leaf{i}_dim{k}" for k in range(len(operand.shape))]
    operands.append(" ".join(names))
    factors += names
  rule = f"{', '.join(operands)} -> leaves"
  return rule, {"reduction_factors": tuple(factors), "need_replication_factors": ("leaves",)}


@functools.cache
def _private_norms() -> Callable[..., jax.Array]:
  """The opt-in's function of the leaves, built (and its partitioner registered) on first use."""
  from jax.experimental.custom_partitioning import custom_partitioning

  partitioned = custom_partitioning(_plain)
  partitioned.def_partition(
    partition=_partition,
    infer_sharding_from_operands=_infer_sharding,
    propagate_user_sharding=None,
    decode_shardings=False,
    sharding_rule=_sharding_rule,
  )

  # custom_partitioning has no batching or differentiation rule: both use the plain sums.
  @jax.custom_batching.custom_vmap
  def batchable(*leaves: jax.Array) -> jax.Array:
    out: jax.Array = partitioned(*leaves)
    return out

  @batchable.def_vmap
  def _batch(axis_size: int, in_batched: list[bool], *leaves: jax.Array) -> tuple[jax.Array, bool]:
    del axis_size
    in_axes = tuple(0 if batched else None for batched in in_batched)
    batched: jax.Array = jax.vmap(_plain, in_axes=in_axes)(*leaves)
    return batched, True

  @jax.custom_jvp
  def norms(*leaves: jax.Array) -> jax.Array:
    out: jax.Array = batchable(*leaves)
    return out

  @norms.defjvp
  def _jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
    return norms(*primals), jax.jvp(_plain, primals, tangents)[1]

  return norms


def private_partitioning_requested() -> bool:
  """Whether ``ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM`` opts in: ``"1"`` yes, unset/``""``/``"0"`` no.

  Raises:
    ValueError: for any other value.
  """
  value = os.environ.get(PRIVATE_GLOBAL_NORM_ENV, "")
  if value not in ("", "0", "1"):
    raise ValueError(f'{PRIVATE_GLOBAL_NORM_ENV} must be "0" or "1" (or unset), got {value!r}.')
  return value == "1"


def private_partitioning_available() -> bool:
  """Whether the opt-in can be used: the installed JAX is one it is tested on.

  Warns :class:`PrivateGlobalNormUnavailableWarning` when it cannot.
  """
  if jax.__version__ in PRIVATE_TESTED_JAX_VERSIONS:
    return True
  warnings.warn(
    f"{PRIVATE_GLOBAL_NORM_ENV}: the one-all-reduce global norm reads JAX internals and is "
    f"tested on jax {', '.join(PRIVATE_TESTED_JAX_VERSIONS)} only, not on the installed jax "
    f"{jax.__version__}; using the public norm instead (one all-reduce per replica group on "
    "Auto mesh axes).",
    PrivateGlobalNormUnavailableWarning,
    stacklevel=3,
  )
  return False


def squared_norms(
  leaves: Sequence[jax.Array], *, private_partitioning: bool | None = None
) -> list[jax.Array]:
  """Each leaf's squared L2 norm :math:`\\sum_j |x_j|^2`, in the leaves' (common) real dtype.

  On an explicit mesh the sharded leaves cost exactly one all-reduce in all; on ``Auto`` axes one
  per replica group, or one with the opt-in: see the module docstring.

  Args:
    leaves: arrays of one real dtype, or of its complex counterpart.
    private_partitioning: use the one-all-reduce norm on ``Auto`` axes (JAX internals, pinned to
      :data:`PRIVATE_TESTED_JAX_VERSIONS`; warns and takes the public norm elsewhere). ``None``:
      read ``ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM``.

  Returns:
    One scalar per leaf, in order.

  Raises:
    ValueError: leaves of different real dtypes, or a bad ``ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM``.
    TypeError: a ``private_partitioning`` that is not a bool or None.
  """
  if private_partitioning is not None and not isinstance(private_partitioning, bool):
    raise TypeError(
      f"private_partitioning must be a bool or None, got {type(private_partitioning).__name__}."
    )
  if not leaves:
    return []
  dtypes = {jnp.real(jnp.zeros((), leaf.dtype)).dtype for leaf in leaves}
  if len(dtypes) != 1:
    raise ValueError(f"leaves must share one real dtype, got {sorted(map(str, dtypes))}.")
  explicit = _explicit_layout(leaves)
  if explicit is not None:
    norms = _shard_mapped(leaves, *explicit)
    return [norms[i] for i in range(len(leaves))]
  if private_partitioning is None:
    private_partitioning = private_partitioning_requested()
  if private_partitioning and private_partitioning_available():
    norms = _private_norms()(*leaves)
    return [norms[i] for i in range(len(leaves))]
  return [jnp.sum(abs_square(leaf)) for leaf in leaves]
