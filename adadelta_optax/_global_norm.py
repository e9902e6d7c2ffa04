r"""Every leaf's squared L2 norm, with exactly one all-reduce whatever the leaves' shardings.

Plain JAX, ``[jnp.sum(jnp.square(x)) for x in leaves]``, is correct on sharded leaves, but XLA's
SPMD partitioner reduces each leaf's partial sums over the mesh axes that shard that leaf and
combines only all-reduces with the same replica groups: leaves sharded over different axes (a mixed
FSDP x tensor-parallel layout: ``("fsdp", "tp")``, ``"tp"``, ``"fsdp"``) cost one all-reduce per
distinct replica group (2 there).

:func:`squared_norms` sums instead, on device :math:`d`, with :math:`S_{i,d}` the elements of leaf
:math:`i` that it holds,

.. math::

  p_{i,d} = [d = \min\{d' : S_{i,d'} = S_{i,d}\}] \sum_{j \in S_{i,d}} |x_{i,j}|^2, \qquad
  n_i = \sum_d p_{i,d},

so that a shard held by several devices (a leaf replicated over some mesh axes) counts once, on the
first of them, and the padding of an uneven shard (a dimension not divisible by its number of
shards) not at all. The sum over :math:`d` is one ``psum`` over all devices of the vector
:math:`(p_{1,d}, \dots, p_{n,d})`: one all-reduce of one number per leaf, and no other collective.
It needs each leaf's sharding, known in two ways:

- **Explicit mesh axes** (``jax.set_mesh`` of a mesh whose axes are all ``AxisType.Explicit``):
  the sharding is part of each leaf's type at trace time, and the sums are a ``jax.shard_map``
  over that mesh. Plain JAX throughout: it lowers, exports (also with an ``AbstractMesh``) and
  transforms (``vmap``, ``grad``) like any code, always with the one all-reduce.
- **Otherwise** (``Auto`` axes, the default: shardings stated with ``in_shardings`` or
  ``device_put``, or chosen by sharding propagation for a leaf computed inside the step), a
  process with more than one device binds one primitive. Lowered for a computation partitioned
  over several devices, it becomes a :func:`jax.experimental.custom_partitioning` op whose
  partition rule runs inside XLA's partitioner and sees every leaf's final sharding. A leaf
  sharded in some other way (maximal, partially manual) is gathered first: correct, at the cost
  of that collective. Elsewhere the primitive is the plain computation, operation for operation:
  on one device, inside ``shard_map`` (the leaves are local shards, as before), under ``vmap``
  and for derivatives (where XLA again reduces once per replica group), and under
  :func:`jax.export` (a custom-partitioning op cannot be serialized, so an exported step compiled
  later has one all-reduce per replica group: export on an explicit mesh to keep one). Like
  ``custom_partitioning`` it needs the devices when lowering, so a multi-device process cannot
  lower it for an ``AbstractMesh`` of ``Auto`` axes.

A process with one device computes the plain sums (unless the leaves are typed with an explicit
mesh of several devices, e.g. an ``AbstractMesh`` to export for). The summation order over devices
differs from one device's, so a sharded norm may differ from the one-device norm in the last bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from jax._src import dispatch
from jax.experimental.custom_partitioning import custom_partitioning
from jax.interpreters import ad, batching, mlir
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

# The one mesh axis of the partitioned computation: every device of the step, in partition order.
_AXIS = "adadelta_optax_devices"
# Explicit mesh axes and the typed shardings they give need a recent JAX (tested: 0.10); without
# them every leaf takes the custom-partitioning path.
_AXIS_TYPE = getattr(jax.sharding, "AxisType", None)
_HAS_EXPLICIT_AXES = _AXIS_TYPE is not None and hasattr(jax, "typeof") and hasattr(jax, "shard_map")


def abs_square(leaf: jax.Array) -> jax.Array:
  """:math:`|x|^2` elementwise: :math:`\\mathrm{re}^2 + \\mathrm{im}^2` for a complex leaf."""
  if jnp.iscomplexobj(leaf):
    return jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf))
  return jnp.square(leaf)


def _plain(*leaves: jax.Array) -> jax.Array:
  return jnp.stack([jnp.sum(abs_square(leaf)) for leaf in leaves])


def _device_assignment(arg_shapes: Sequence[Any], mesh: Mesh) -> tuple[Any, ...]:
  """The step's devices in partition order (partition ``p`` runs on ``devices[p]``)."""
  # With ``decode_shardings=False`` every argument's sharding is a GSPMDSharding over the
  # computation's device assignment; the mesh (when there is one) lists the same devices.
  for arg in arg_shapes:
    devices = getattr(arg.sharding, "_device_assignment", None)
    if devices:
      return tuple(devices)
  return tuple(mesh.devices.flat)


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
  unreduced = hasattr(hlo, "is_unreduced") and hlo.is_unreduced()  # partial sums: gather
  if not hlo.is_tiled() or hlo.is_manual() or unreduced:
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


def _partition(mesh: Mesh, arg_shapes: Sequence[Any], result_shape: Any) -> tuple[Any, ...]:
  del result_shape
  devices = _device_assignment(arg_shapes, mesh)
  flat_mesh = Mesh(np.asarray(devices, dtype=object), (_AXIS,))
  replicated = NamedSharding(flat_mesh, PartitionSpec())
  layouts, shardings = [], []
  for arg in arg_shapes:
    shape = tuple(arg.shape)
    layout = _shard_layout(arg.sharding._to_xla_hlo_sharding(len(shape)), shape, len(devices))
    if layout is None:  # gathered onto every device: the first copy counts
      layout = _shard_layout(replicated._to_xla_hlo_sharding(len(shape)), shape, len(devices))
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
    return jax.lax.psum(jnp.stack(partial), _AXIS)

  return flat_mesh, per_device, replicated, tuple(shardings)


def _infer_sharding(mesh: Mesh, arg_shapes: Sequence[Any], result_shape: Any) -> Sharding:
  del result_shape
  devices = _device_assignment(arg_shapes, mesh)
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


_partitioned = custom_partitioning(_plain)
try:
  _partitioned.def_partition(
    partition=_partition,
    infer_sharding_from_operands=_infer_sharding,
    propagate_user_sharding=None,
    decode_shardings=False,
    sharding_rule=_sharding_rule,
  )
except TypeError:  # a JAX from before Shardy: GSPMD's callbacks only
  _partitioned.def_partition(
    partition=_partition, infer_sharding_from_operands=_infer_sharding, decode_shardings=False
  )

squared_norms_p = jax.extend.core.Primitive("adadelta_optax_squared_norms")


@squared_norms_p.def_abstract_eval
def _abstract_eval(*leaves: Any) -> jax.core.ShapedArray:
  dtype = np.zeros((), leaves[0].dtype).real.dtype  # no array: this runs in abstract eval
  return jax.core.ShapedArray((len(leaves),), dtype)


# Outside jit, op by op as before (sharded arrays then reduce leaf by leaf).
squared_norms_p.def_impl(_plain)


def _lowering(ctx: mlir.LoweringRuleContext, *values: Any) -> Any:
  context = ctx.module_context
  devices = getattr(context.axis_context, "device_assignment", None)  # None inside shard_map
  for_export = getattr(getattr(context, "lowering_parameters", None), "for_export", False)
  partitioned = devices is not None and len(devices) > 1 and not for_export
  return mlir.lower_fun(_partitioned if partitioned else _plain, multiple_results=False)(
    ctx, *values
  )


mlir.register_lowering(squared_norms_p, _lowering)
# jit hands the lowering its device assignment (which custom_partitioning needs) only for the
# primitives in this set; custom_partitioning, pure_callback and io_callback are there too.
# A private set: on a JAX without it, the lowering gets no devices and takes the plain path.
_requires_devices = getattr(dispatch, "prim_requires_devices_during_lowering", None)
if _requires_devices is not None:
  _requires_devices.add(squared_norms_p)


def _jvp(primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[jax.Array, jax.Array]:
  tangents = [ad.instantiate_zeros(t) for t in tangents]
  return squared_norms_p.bind(*primals), jax.jvp(_plain, tuple(primals), tuple(tangents))[1]


ad.primitive_jvps[squared_norms_p] = _jvp


def _batch(args: Sequence[Any], dims: Sequence[Any]) -> tuple[jax.Array, int]:
  return jax.vmap(_plain, in_axes=tuple(dims))(*args), 0


batching.primitive_batchers[squared_norms_p] = _batch


def _explicit_layout(leaves: Sequence[jax.Array]) -> tuple[Any, list[PartitionSpec]] | None:
  """``(mesh, specs)`` when every leaf's type carries its sharding, else None.

  That is when all leaves live on one mesh of several devices whose axes are all ``Explicit``
  (``jax.set_mesh`` of a mesh made with ``axis_types=(AxisType.Explicit, ...)``), every
  dimension divides evenly into its shards, and no leaf is unreduced.
  """
  if not _HAS_EXPLICIT_AXES:
    return None
  meshes, specs = set(), []
  for leaf in leaves:
    sharding = getattr(jax.typeof(leaf), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or mesh.empty or mesh.size == 1:
      return None
    if any(kind != _AXIS_TYPE.Explicit for kind in mesh.axis_types):
      return None
    spec = sharding.spec
    if getattr(spec, "unreduced", None) or getattr(spec, "reduced", None):
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


def _shard_mapped(leaves: Sequence[jax.Array], mesh: Any, specs: list[PartitionSpec]) -> jax.Array:
  """The same sums as :func:`_partition`'s, by ``shard_map`` over the leaves' own mesh."""

  def per_device(*shards: jax.Array) -> jax.Array:
    partial = []
    for shard, spec in zip(shards, specs, strict=True):
      sharded = {axis for entry in spec for axis in _axes(entry)}
      value = jnp.sum(abs_square(shard))
      for axis in mesh.axis_names:
        if axis not in sharded:  # replicated over it: the copy at index 0 counts
          value = jnp.where(jax.lax.axis_index(axis) == 0, value, 0)
      partial.append(value)
    return jax.lax.psum(jnp.stack(partial), tuple(mesh.axis_names))

  return jax.shard_map(per_device, mesh=mesh, in_specs=tuple(specs), out_specs=PartitionSpec())(
    *leaves
  )


def squared_norms(leaves: Sequence[jax.Array]) -> list[jax.Array]:
  """Each leaf's squared L2 norm :math:`\\sum_j |x_j|^2`, in the leaves' (common) real dtype.

  Sharded leaves (under ``jit``) cost exactly one all-reduce in all: see the module docstring.

  Args:
    leaves: arrays of one real dtype, or of its complex counterpart.

  Returns:
    One scalar per leaf, in order.
  """
  if not leaves:
    return []
  dtypes = {jnp.real(jnp.zeros((), leaf.dtype)).dtype for leaf in leaves}
  if len(dtypes) != 1:
    raise ValueError(f"leaves must share one real dtype, got {sorted(map(str, dtypes))}.")
  explicit = _explicit_layout(leaves)
  if explicit is not None:
    norms = _shard_mapped(leaves, *explicit)
    return [norms[i] for i in range(len(leaves))]
  if jax.device_count() == 1:
    # Nothing to partition; keeps abstract-mesh lowering (which the device-requiring
    # primitive refuses) open to one-device processes.
    return [jnp.sum(abs_square(leaf)) for leaf in leaves]
  norms = squared_norms_p.bind(*leaves)
  return [norms[i] for i in range(len(leaves))]
