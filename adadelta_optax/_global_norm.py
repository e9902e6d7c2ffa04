r"""Every leaf's squared L2 norm, with exactly one all-reduce whatever the leaves' shardings.

Plain JAX, ``[jnp.sum(jnp.square(x)) for x in leaves]``, is correct on sharded leaves, but XLA's
SPMD partitioner reduces each leaf's partial sums over the mesh axes that shard that leaf, and
combines only all-reduces with the same replica groups: leaves sharded over different axes (a mixed
FSDP x tensor-parallel layout: ``("fsdp", "tp")``, ``"tp"``, ``"fsdp"``) cost one all-reduce per
distinct replica group.

:func:`squared_norms` is one primitive instead. When the jitted computation around it is
partitioned over several devices, it lowers to a :func:`jax.experimental.custom_partitioning` op,
whose partition rule runs inside XLA's partitioner and so sees every leaf's final sharding: the one
stated with ``in_shardings``, ``device_put`` or an explicit mesh, and equally the one sharding
propagation chose for a leaf computed inside the step (``Auto`` mesh axes). On device :math:`d`,
with :math:`S_{i,d}` the elements of leaf :math:`i` it holds,

.. math::

  p_{i,d} = [d = \min\{d' : S_{i,d'} = S_{i,d}\}] \sum_{j \in S_{i,d}} |x_{i,j}|^2, \qquad
  n_i = \sum_d p_{i,d},

so a shard held by several devices (a leaf replicated over some mesh axes) counts once, on the
first of them; the padding of an uneven shard (a dimension not divisible by its number of shards)
is masked out. The sum over :math:`d` is one ``psum`` over all devices of the vector
:math:`(p_{1,d}, \dots, p_{n,d})`: one all-reduce of one number per leaf, and no other collective.
A leaf whose sharding is neither tiled nor replicated (e.g. on one device of several) is gathered
first (correct, at the cost of that collective).

Everywhere else the primitive is the plain computation, operation for operation (hence the same
numbers): on one device, inside ``shard_map`` (the leaves are then local shards, as before),
under :func:`jax.export` (a custom-partitioning op cannot be serialized: an exported sharded step
keeps XLA's one all-reduce per replica group), under ``vmap`` and for derivatives. The summation
order over devices differs from one device's, so a sharded norm may differ from the one-device
norm in the last bits.
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


def _abs_square(leaf: jax.Array) -> jax.Array:
  """:math:`|x|^2` elementwise: :math:`\\mathrm{re}^2 + \\mathrm{im}^2` for a complex leaf."""
  if jnp.iscomplexobj(leaf):
    return jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf))
  return jnp.square(leaf)


def _plain(*leaves: jax.Array) -> jax.Array:
  return jnp.stack([jnp.sum(_abs_square(leaf)) for leaf in leaves])


def _device_assignment(arg_shapes: Sequence[Any], mesh: Mesh) -> tuple[Any, ...]:
  """The step's devices in partition order (partition ``p`` runs on ``devices[p]``)."""
  # With ``decode_shardings=False`` every argument's sharding is a GSPMDSharding over the
  # computation's device assignment; the mesh (when there is one) lists the same devices.
  for arg in arg_shapes:
    devices = getattr(arg.sharding, "_device_assignment", None)
    if devices:
      return tuple(devices)
  return tuple(mesh.devices.flat)


def _shard_layout(sharding: Sharding, shape: tuple[int, ...], n: int) -> Any:
  """``(first, valid)`` of a leaf over ``n`` partitions, or None for an unsupported sharding.

  ``first[p]``: partition ``p`` is the first holding its shard. ``valid[p, k]``: how many of its
  shard's entries along dimension ``k`` are real data (fewer than the shard size where the
  dimension does not divide evenly; the rest is padding).
  """
  hlo = sharding._to_xla_hlo_sharding(len(shape))
  ndim = len(shape)
  valid = np.tile(np.asarray(shape, np.int64), (n, 1))
  first = np.zeros(n, bool)
  if hlo.is_replicated():
    first[0] = True
    return first, valid
  if not hlo.is_tiled() or hlo.is_manual() or hlo.is_unreduced():
    return None
  if any(kind != type(kind).REPLICATED for kind in hlo.subgroup_types()):
    return None
  tiles = list(hlo.tile_assignment_dimensions())
  partitions = np.asarray(hlo.tile_assignment_devices()).reshape(tiles)
  if partitions.size != n or len(tiles) < ndim:
    return None
  owner: dict[tuple[int, ...], int] = {}
  for coordinate in np.ndindex(*tiles):
    partition = int(partitions[coordinate])
    block = coordinate[:ndim]  # the trailing tile dimensions replicate
    for k in range(ndim):
      size = -(-shape[k] // tiles[k])
      valid[partition, k] = max(0, min(size, shape[k] - block[k] * size))
    owner[block] = min(owner.get(block, partition), partition)
  first[list(owner.values())] = True
  return first, valid


def _partition(mesh: Mesh, arg_shapes: Sequence[Any], result_shape: Any) -> tuple[Any, ...]:
  del result_shape
  devices = _device_assignment(arg_shapes, mesh)
  flat_mesh = Mesh(np.asarray(devices, dtype=object), (_AXIS,))
  replicated = NamedSharding(flat_mesh, PartitionSpec())
  layouts, shardings = [], []
  for arg in arg_shapes:
    layout = _shard_layout(arg.sharding, tuple(arg.shape), len(devices))
    if layout is None:  # gathered onto every device: the first copy counts
      layout = _shard_layout(replicated, tuple(arg.shape), len(devices))
      shardings.append(replicated)
    else:
      shardings.append(arg.sharding)
    layouts.append(layout)

  def per_device(*shards: jax.Array) -> jax.Array:
    me = jax.lax.axis_index(_AXIS)
    partial = []
    for shard, (first, valid) in zip(shards, layouts, strict=True):
      square = _abs_square(shard)
      for k in range(shard.ndim):
        if np.any(valid[:, k] != shard.shape[k]):  # uneven: mask the padding
          index = jax.lax.broadcasted_iota(jnp.int32, shard.shape, k)
          square = jnp.where(index < jnp.asarray(valid[:, k], jnp.int32)[me], square, 0)
      partial.append(jnp.where(jnp.asarray(first)[me], jnp.sum(square), 0))
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
_partitioned.def_partition(
  partition=_partition,
  infer_sharding_from_operands=_infer_sharding,
  propagate_user_sharding=None,
  decode_shardings=False,
  sharding_rule=_sharding_rule,
)

squared_norms_p = jax.extend.core.Primitive("adadelta_optax_squared_norms")


@squared_norms_p.def_abstract_eval
def _abstract_eval(*leaves: Any) -> jax.core.ShapedArray:
  dtype = jnp.real(jnp.zeros((), leaves[0].dtype)).dtype
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
dispatch.prim_requires_devices_during_lowering.add(squared_norms_p)


def _jvp(primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[jax.Array, jax.Array]:
  tangents = [ad.instantiate_zeros(t) for t in tangents]
  return squared_norms_p.bind(*primals), jax.jvp(_plain, tuple(primals), tuple(tangents))[1]


ad.primitive_jvps[squared_norms_p] = _jvp


def _batch(args: Sequence[Any], dims: Sequence[Any]) -> tuple[jax.Array, int]:
  return jax.vmap(_plain, in_axes=tuple(dims))(*args), 0


batching.primitive_batchers[squared_norms_p] = _batch


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
  if jax.device_count() == 1:
    # Nothing to partition; keeps abstract-mesh lowering (which the device-requiring
    # primitive refuses) open to one-device processes.
    return [jnp.sum(_abs_square(leaf)) for leaf in leaves]
  norms = squared_norms_p.bind(*leaves)
  return [norms[i] for i in range(len(leaves))]
