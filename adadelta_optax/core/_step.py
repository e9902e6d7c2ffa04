"""The Adadelta step, defined once: every option in its order, for a whole tree of leaves.

:func:`tree_step` computes what concerns the whole tree (the learning rate at the update count,
the global clipping scale, the weight-decay mask) and groups the leaves by accumulator dtype.
Each group steps by :func:`group_jax` (plain JAX, which XLA fuses on every platform) or, on CPU
for float32 and float64 groups, by the C++ kernel (:mod:`adadelta_optax.core._kernel`), which
implements the same arithmetic; :func:`jax.lax.platform_dependent` picks at lowering time, so one
jitted or exported function serves CPU, GPU and TPU. Per leaf, in this order (:func:`leaf_step_jax`
here, ``Body`` in the kernel):

1. ``clipvalue``: ``g = clip(g, -c, c)`` (after step 2 with ``clip_order="norm_then_value"``);
2. scale: ``g = g * s``, ``s`` = the sign (``maximize``) times the global-norm scale
   ``c * min(1 / ||G||, 1 / c)`` or the leaf's norm scale ``c / max(||g||, c)``
   (:func:`adadelta_optax.core._clipping.norm_scale`);
3. coupled weight decay: ``g = g + wd * x``;
4. the rule (:func:`adadelta_optax.core._rule.adadelta_step`): ``A = rho A + (1 - rho) g^2``,
   ``u = sqrt(D + eps) / sqrt(A + eps) * g``, ``D = rho D + (1 - rho) u^2``;
5. decoupled weight decay: ``u = u + wd * x``;
6. learning rate: ``x = x + (-lr_t) * u`` (``apply``), else the update ``(-lr_t) * u``.

Each leaf's gradient, parameter and accumulators are read once and written once: 28 bytes per
float32 parameter with ``apply`` (32 with per-leaf norm clipping, whose norm reads the gradient
once more).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adadelta_optax.core import _clipping, _flat_state, _kernel, _rule
from adadelta_optax.core._config import AdadeltaConfig
from adadelta_optax.core._dtypes import compute_dtype, real_dtype, step_dtype, sum_dtype
from adadelta_optax.core._kernel import (
  CLIP_VALUE,
  COUPLED,
  DECOUPLED,
  HYPER_FIELDS,
  NORM_CLIP,
  NORM_FIRST,
  SCALE,
  GroupArrays,
)
from adadelta_optax.core._learning_rate import decayed_learning_rate
from adadelta_optax.core._weight_decay import is_disabled, resolve_mask

# XLA's compile time grows faster than linearly in the operands of one instruction (alias and
# copy analysis), so a group of leaves is split into calls of at most this many leaves.
MAX_LEAVES_PER_CALL = 32


def hyper_vector(accum_dtype: Any, **values: Any) -> jax.Array:
  """A leaf's hyperparameter vector (in :func:`compute_dtype`), in the kernel's layout."""
  dtype = compute_dtype(accum_dtype)
  return jnp.stack([jnp.asarray(values[name], dtype) for name in HYPER_FIELDS])


def leaf_step_jax(
  grad: jax.Array,
  param: jax.Array | None,
  accum_grad: jax.Array,
  accum_var: jax.Array,
  hyper: jax.Array,
  flags: int,
  apply: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The fused step in plain JAX: the reference path's functions, applied to one leaf.

  The step is computed in :func:`~adadelta_optax.core._dtypes.step_dtype` of the accumulators
  (their dtype, float32 for 16-bit and 8-bit ones), the hyperparameters in its real dtype, as
  Python scalars act in the reference path; the accumulators are rounded once to their dtype,
  the new params (or the update) once to theirs.
  """
  w = step_dtype(accum_grad.dtype)
  real = real_dtype(w)
  h = {name: value.astype(real) for name, value in zip(HYPER_FIELDS, hyper, strict=True)}
  g = grad.astype(w)

  def times(name: str, value: jax.Array) -> jax.Array:
    # h[name] * value, cast to value's dtype (complex for a complex leaf) as implicit promotion
    # would: written out, so the step runs under jax.numpy_dtype_promotion("strict").
    product: jax.Array = h[name].astype(value.dtype) * value
    return product

  if flags & CLIP_VALUE and not flags & NORM_FIRST:
    g = _clipping.clip_value(g, h["clipvalue"])
  if flags & SCALE:
    g = times("grad_scale", g)
  if flags & CLIP_VALUE and flags & NORM_FIRST:
    g = _clipping.clip_value(g, h["clipvalue"])
  x = None if param is None else param.astype(w)
  if flags & COUPLED:
    assert x is not None  # weight decay needs the params (checked by the caller)
    g = g + times("wd_coupled", x)
  update, new_accum_grad, new_accum_var = _rule.adadelta_step(
    g, accum_grad.astype(w), accum_var.astype(w), h["rho"], h["epsilon"], h["one_minus_rho"]
  )
  new_accum_grad = new_accum_grad.astype(accum_grad.dtype)
  new_accum_var = new_accum_var.astype(accum_var.dtype)
  if flags & DECOUPLED:
    assert x is not None
    update = update + times("wd_decoupled", x)
  # -lr (in the hyperparameters' dtype, at least float32) times the update, formed in the wider
  # of the two and rounded back: the casts implicit promotion would make, written out (strict).
  neg_lr = hyper[HYPER_FIELDS.index("neg_lr")]
  wide = sum_dtype(neg_lr.dtype, update.dtype)
  step = (neg_lr.astype(wide) * update.astype(wide)).astype(update.dtype)
  if apply:
    assert param is not None  # apply needs the params (checked by the caller)
    # Formed in the wider of the param's and the step's dtype, rounded once: a bfloat16 param
    # gains the float32 step's precision, and a float64 param with a float32 state keeps its
    # own (forming it in float32 would round the param itself every step).
    wide = sum_dtype(param.dtype, update.dtype)
    new_param = param.astype(wide) + step.astype(wide)
    return new_param.astype(param.dtype), new_accum_grad, new_accum_var
  return step.astype(grad.dtype), new_accum_grad, new_accum_var


def group_jax(
  arrays: GroupArrays, hyper: jax.Array, flags: np.ndarray, apply: bool
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
  """A group of leaves sharing an accumulator dtype, in plain JAX: ``(outs, accum_grads,
  accum_vars)``, each leaf by :func:`leaf_step_jax` after its norm scale (per-leaf ``clipnorm``).

  Each leaf's step is a nested :func:`jax.jit` (:func:`_leaf_step_traced`), so leaves of one
  shape and dtype are traced once: a tree of 2,000 equal leaves traces one step, not 2,000 (XLA
  inlines the calls, so the compiled step is the same).
  """
  grads, params, accum_grads, accum_vars = arrays
  results = []
  for i, (g, a, d) in enumerate(zip(grads, accum_grads, accum_vars, strict=True)):
    x = None if params is None else params[i]
    results.append(_leaf_step_traced(g, x, a, d, hyper, flags=int(flags[i]), apply=apply))
  return [r[0] for r in results], [r[1] for r in results], [r[2] for r in results]


def group_jax_flat(
  arrays: GroupArrays, hyper: jax.Array, flags: np.ndarray, apply: bool, offset: int
) -> tuple[list[jax.Array], jax.Array, jax.Array]:
  """:func:`group_jax` on the flat layout: the leaves' accumulators are the elements of the
  dtype's buffers (``arrays.accum_grads``, ``arrays.accum_vars``) from ``offset`` on, in order;
  they are cut out, stepped leaf by leaf and written back in one piece."""
  grads, params, accum_grad, accum_var = arrays
  sizes = [int(np.prod(jnp.shape(g), dtype=np.int64)) for g in grads]
  starts = np.cumsum([offset, *sizes[:-1]]).tolist()
  end = offset + sum(sizes)

  def cut(buffer: jax.Array) -> list[jax.Array]:
    return [
      jax.lax.slice(buffer, (start,), (start + size,)).reshape(jnp.shape(g))
      for g, start, size in zip(grads, starts, sizes, strict=True)
    ]

  outs, new_a, new_d = group_jax(
    GroupArrays(grads, params, cut(accum_grad), cut(accum_var)), hyper, flags, apply
  )

  def put(buffer: jax.Array, leaves: list[jax.Array]) -> jax.Array:
    if end == offset:
      return buffer
    piece = jnp.concatenate([jnp.ravel(x) for x in leaves])
    return jax.lax.dynamic_update_slice(buffer, piece, (offset,))

  return outs, put(accum_grad, new_a), put(accum_var, new_d)


@functools.partial(jax.jit, static_argnames=("flags", "apply"))
def _leaf_step_traced(
  grad: jax.Array,
  param: jax.Array | None,
  accum_grad: jax.Array,
  accum_var: jax.Array,
  hyper: jax.Array,
  flags: int,
  apply: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One leaf of :func:`group_jax`: its norm scale (per-leaf ``clipnorm``), then
  :func:`leaf_step_jax`."""
  if flags & NORM_CLIP:
    c = hyper[HYPER_FIELDS.index("clipnorm")]
    clipped = grad.astype(step_dtype(accum_grad.dtype))
    if flags & CLIP_VALUE and not flags & NORM_FIRST:
      clipped = _clipping.clip_value(clipped, hyper[HYPER_FIELDS.index("clipvalue")])
    norm = _clipping.leaf_norm(clipped).astype(hyper.dtype)
    index = HYPER_FIELDS.index("grad_scale")
    hyper = hyper.at[index].set(hyper[index] * _clipping.norm_scale(norm, c))
    flags |= SCALE
  return leaf_step_jax(grad, param, accum_grad, accum_var, hyper, flags, apply)


class Group(NamedTuple):
  """One call of the step: leaves that share an accumulator dtype (at most
  :data:`MAX_LEAVES_PER_CALL`), with everything the kernel or the fused JAX step needs besides
  the arrays.

  Attributes:
    dtype: the accumulator dtype.
    indices: the leaves, as positions in ``jax.tree.leaves`` order.
    flags: per leaf, the option bits (``CLIP_VALUE``, ``SCALE``, ...).
    hyper: the hyperparameter vector (:data:`HYPER_FIELDS`, in :func:`compute_dtype`).
    offset: in the flat layout, where the first leaf starts in the dtype's buffer; else ``None``.
    needs_params: whether the step reads the params (``apply`` or weight decay).
  """

  dtype: np.dtype
  indices: tuple[int, ...]
  flags: np.ndarray
  hyper: jax.Array
  offset: int | None
  needs_params: bool


def group_step(
  group: Group, arrays: GroupArrays, apply: bool, use_kernel: bool
) -> tuple[list[jax.Array], Any, Any]:
  """The leaves of one :class:`Group`: ``(outs, accum_grads, accum_vars)``.

  With ``use_kernel`` and a float32/float64 group whose gradients and params have that dtype too,
  CPU runs the C++ kernel (one call for the group) and every other platform :func:`group_jax`,
  chosen at lowering time by :func:`jax.lax.platform_dependent`. In the flat layout
  (``group.offset`` set) the accumulators are the dtype's two buffers, of which the group's
  leaves hold the elements from ``offset`` on (:func:`group_jax_flat`).
  """
  dtype, flags, offset = group.dtype, group.flags, group.offset
  takes = (
    use_kernel
    and dtype in _kernel.KERNEL_DTYPES
    and all(jnp.result_type(g) == dtype for g in arrays.grads)
    and all(jnp.result_type(x) == dtype for x in arrays.params or [])
  )
  jax_fn = (
    functools.partial(group_jax, flags=flags, apply=apply)
    if offset is None
    else functools.partial(group_jax_flat, flags=flags, apply=apply, offset=offset)
  )
  if not takes:
    return jax_fn(arrays, group.hyper)
  kernel_fn = functools.partial(
    _kernel.group_kernel, flags=flags, apply=apply, jax_fn=jax_fn, offset=offset
  )
  outs, new_accum_grads, new_accum_vars = jax.lax.platform_dependent(
    arrays, group.hyper, cpu=kernel_fn, default=jax_fn
  )
  return outs, new_accum_grads, new_accum_vars


def _base_flags(config: AdadeltaConfig) -> int:
  """The option bits every leaf shares (weight decay is per leaf: its mask)."""
  c = config
  flags = CLIP_VALUE if c.clipvalue is not None else 0
  if c.global_clipnorm is not None or c.maximize:
    flags |= SCALE
  if c.clipnorm is not None:
    flags |= NORM_CLIP | (NORM_FIRST if c.clip_order == "norm_then_value" else 0)
  return flags


def _global_scale(config: AdadeltaConfig, grads: list[jax.Array], dtypes: list[Any]) -> Any:
  """``global_clipnorm``'s scale over the whole tree (1.0 without it): the norms of the
  value-clipped gradients in each step's dtype (tf.keras order)."""
  c = config
  if c.global_clipnorm is None:
    return 1.0
  steps = [g.astype(step_dtype(a)) for g, a in zip(grads, dtypes, strict=True)]
  if c.clipvalue is not None:
    steps = [_clipping.clip_value(g, c.clipvalue) for g in steps]
  return _clipping.global_norm_scale(steps, c.global_clipnorm)


def _decayed(config: AdadeltaConfig, treedef: Any, n: int, params: Any) -> list[bool]:
  """Per leaf, whether weight decay applies to it (its ``weight_decay_mask``)."""
  if is_disabled(config.weight_decay):
    return [False] * n
  selected: list[bool] = treedef.flatten_up_to(resolve_mask(config.weight_decay_mask, params))
  return selected


def plan(
  config: AdadeltaConfig,
  grads: list[jax.Array],
  dtypes: list[Any],
  count: jax.Array,
  params: Any,
  *,
  treedef: Any,
  apply: bool,
  offsets: list[int] | None = None,
) -> list[Group]:
  """The step of a tree as :class:`Group` s: what concerns the whole tree (the learning rate at
  ``count``, the global clipping scale, the weight-decay mask) computed once, then the leaves
  (``grads``, with accumulator ``dtypes``) grouped by accumulator dtype in calls of at most
  :data:`MAX_LEAVES_PER_CALL`. ``offsets``: each leaf's offset in its dtype's flat buffer."""
  c = config
  global_scale = _global_scale(c, grads, dtypes)
  selected = _decayed(c, treedef, len(grads), params)
  base_flags = _base_flags(c)
  decay_flag = DECOUPLED if c.decoupled_weight_decay else COUPLED
  wd = c.weight_decay if any(selected) else 0.0
  rate = c.learning_rate(count) if callable(c.learning_rate) else c.learning_rate
  by_dtype: dict[Any, list[int]] = {}
  for i, a in enumerate(dtypes):
    by_dtype.setdefault(a, []).append(i)
  groups = []
  for accum_dtype, all_indices in by_dtype.items():
    dtype = compute_dtype(accum_dtype)
    hyper = hyper_vector(
      accum_dtype,
      rho=c.rho,
      one_minus_rho=1 - c.rho,  # a Python float stays Python, as in the reference path
      epsilon=c.epsilon,
      neg_lr=-decayed_learning_rate(rate, c.decay, count, dtype),
      grad_scale=(-1.0 if c.maximize else 1.0) * jnp.asarray(global_scale, dtype),
      clipvalue=0.0 if c.clipvalue is None else c.clipvalue,
      clipnorm=1.0 if c.clipnorm is None else c.clipnorm,
      wd_coupled=0.0 if c.decoupled_weight_decay else wd,
      wd_decoupled=wd if c.decoupled_weight_decay else 0.0,
    )
    for start in range(0, len(all_indices), MAX_LEAVES_PER_CALL):
      indices = tuple(all_indices[start : start + MAX_LEAVES_PER_CALL])
      flags = np.array([base_flags | (decay_flag if selected[i] else 0) for i in indices], np.int32)
      groups.append(
        Group(
          np.dtype(accum_dtype),
          indices,
          flags,
          hyper,
          None if offsets is None else offsets[indices[0]],
          apply or bool(np.any(flags & (COUPLED | DECOUPLED))),
        )
      )
  return groups


def tree_step(
  config: AdadeltaConfig,
  grads: Any,
  accum_grad: Any,
  accum_var: Any,
  count: jax.Array,
  params: Any,
  *,
  apply: bool,
  use_kernel: bool,
  flat: bool = False,
) -> tuple[Any, Any, Any]:
  """The fused step over a whole tree: ``(new params or updates, new accum_grad, new accum_var)``.

  :func:`plan` turns the tree into groups of leaves; each group takes one :func:`group_step`.
  ``grads`` and ``params`` are already checked; ``params`` is given wherever weight decay or
  ``apply`` needs it.

  The accumulators are trees like ``grads``, or (the flat layout,
  :class:`~adadelta_optax.FlatAdadeltaState`) with ``flat`` dicts from dtype name to one buffer
  holding that dtype's leaves in order; they come back in the layout they came in.
  """
  treedef: Any = jax.tree.structure(grads if flat else accum_grad)  # a PyTreeDef (opaque)
  g_leaves = treedef.flatten_up_to(grads)
  p_leaves = None if params is None else treedef.flatten_up_to(params)
  a_leaves, d_leaves, dtypes, offsets = _accumulators(
    config, treedef, grads, accum_grad, accum_var, flat
  )
  groups = plan(
    config, g_leaves, dtypes, count, params, treedef=treedef, apply=apply, offsets=offsets
  )
  outs: list[Any] = [None] * len(g_leaves)
  for group in groups:
    ids = group.indices
    g_group = [g_leaves[i] for i in ids]
    p_group = [p_leaves[i] for i in ids] if group.needs_params and p_leaves is not None else None
    if flat:  # the dtype's two buffers, in and out whole
      name = group.dtype.name
      arrays = GroupArrays(g_group, p_group, a_leaves[name], d_leaves[name])
      out, a_leaves[name], d_leaves[name] = group_step(group, arrays, apply, use_kernel)
    else:  # the group's own accumulators
      arrays = GroupArrays(g_group, p_group, [a_leaves[i] for i in ids], [d_leaves[i] for i in ids])
      out, a_group, d_group = group_step(group, arrays, apply, use_kernel)
      _scatter(a_leaves, ids, a_group)
      _scatter(d_leaves, ids, d_group)
    _scatter(outs, ids, out)
  if flat:
    return treedef.unflatten(outs), a_leaves, d_leaves
  return treedef.unflatten(outs), treedef.unflatten(a_leaves), treedef.unflatten(d_leaves)


def _accumulators(
  config: AdadeltaConfig, treedef: Any, grads: Any, accum_grad: Any, accum_var: Any, flat: bool
) -> tuple[Any, Any, list[Any], list[int] | None]:
  """The accumulators as :func:`tree_step` indexes them (per leaf; flat: per dtype name), each
  leaf's accumulator dtype, and (flat) each leaf's offset in its dtype's buffer."""
  if flat:
    places = _flat_state.layout(grads, config.state_dtype)
    dtypes = [jnp.dtype(name) for name, _, _ in places]
    return dict(accum_grad), dict(accum_var), dtypes, [offset for _, offset, _ in places]
  a_leaves = treedef.flatten_up_to(accum_grad)
  return a_leaves, treedef.flatten_up_to(accum_var), [a.dtype for a in a_leaves], None


def _scatter(leaves: list[Any], indices: tuple[int, ...], values: list[Any]) -> None:
  """``leaves[indices[k]] = values[k]`` for each ``k``."""
  for i, value in zip(indices, values, strict=True):
    leaves[i] = value
