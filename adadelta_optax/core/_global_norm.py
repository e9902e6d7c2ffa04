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
  replica group** (measured on jax 0.8 and later: 1 for pure FSDP, 2 for a mixed FSDP x
  tensor-parallel layout of leaves sharded over ``("fsdp", "tp")``, ``"tp"`` and ``"fsdp"``;
  jax 0.6 merges none, one per sharded leaf). Correct, exportable and transformable like any JAX
  code.

There is no public way to read a leaf's final sharding on ``Auto`` axes while the step is
traced (XLA's partitioner chooses it later), so there the count above is XLA's. An earlier
opt-in (``ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM=1``) reached it through JAX internals; it was pinned
to one JAX release and is gone: setting the variable now warns once and changes nothing. For one
all-reduce on any layout, put the params on a mesh of ``Explicit`` axes.

The summation order over devices differs from one device's, so a sharded norm may differ from
the one-device norm in the last bits.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, PartitionSpec

from adadelta_optax.core._dtypes import real_dtype

#: The environment variable of the removed opt-in (it warns once when set).
REMOVED_PRIVATE_GLOBAL_NORM_ENV = "ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM"


def abs_square(leaf: jax.Array) -> jax.Array:
  """:math:`|x|^2` elementwise: :math:`\\mathrm{re}^2 + \\mathrm{im}^2` for a complex leaf."""
  if jnp.iscomplexobj(leaf):
    return jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf))
  return jnp.square(leaf)


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


@functools.cache
def _warn_removed_opt_in() -> None:
  """Once per process: the removed opt-in is set in the environment."""
  warnings.warn(
    f"{REMOVED_PRIVATE_GLOBAL_NORM_ENV} is set, but the opt-in one-all-reduce global norm on "
    "Auto mesh axes (which read JAX internals) has been removed: the public norm is used (one "
    "all-reduce per replica group on Auto axes, exactly one on Explicit axes). Unset it.",
    DeprecationWarning,
    stacklevel=3,
  )


def squared_norms(leaves: Sequence[jax.Array]) -> list[jax.Array]:
  """Each leaf's squared L2 norm :math:`\\sum_j |x_j|^2`, in the leaves' (common) real dtype.

  On an explicit mesh the sharded leaves cost exactly one all-reduce in all; on ``Auto`` axes one
  per replica group: see the module docstring.

  Args:
    leaves: arrays of one real dtype, or of its complex counterpart.

  Returns:
    One scalar per leaf, in order.

  Raises:
    ValueError: leaves of different real dtypes.
  """
  if os.environ.get(REMOVED_PRIVATE_GLOBAL_NORM_ENV, "") not in ("", "0"):
    _warn_removed_opt_in()
  if not leaves:
    return []
  dtypes = {real_dtype(leaf.dtype) for leaf in leaves}
  if len(dtypes) != 1:
    raise ValueError(f"leaves must share one real dtype, got {sorted(map(str, dtypes))}.")
  explicit = _explicit_layout(leaves)
  if explicit is not None:
    norms = _shard_mapped(leaves, *explicit)
    return [norms[i] for i in range(len(leaves))]
  return [jnp.sum(abs_square(leaf)) for leaf in leaves]
