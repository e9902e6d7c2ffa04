"""``torch.optim.Adadelta.state_dict()`` in and out.

torch numbers its parameters ``0, 1, ...`` across ``param_groups`` (in group order) and keeps, per
parameter that has been stepped, ``{"step", "square_avg", "acc_delta"}``; ``square_avg`` is this
package's ``accum_grad`` and ``acc_delta`` its ``accum_var``. Which pytree leaf each torch
parameter is, and how its axes are laid out (e.g. a ``Linear`` weight is ``(out, in)`` in torch,
``(in, out)`` in Flax), is given by ``order`` and ``axes``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adadelta_optax.core import _validation, _weight_decay, _weights
from adadelta_optax.core._optimizer import Adadelta, adadelta
from adadelta_optax.core._state import AdadeltaState

#: ``param_groups`` keys of ``torch.optim.Adadelta`` (2.x); the last four do not change numbers.
GROUP_KEYS = (
  "lr",
  "rho",
  "eps",
  "weight_decay",
  "maximize",
  "foreach",
  "capturable",
  "differentiable",
  "params",
)
#: Keys that older torch releases did not save (``maximize`` came in 1.11, ``foreach`` in 1.12,
#: ``capturable`` and ``differentiable`` in 2.0) and ``param_names`` (2.6, only for named
#: parameters): ``torch.optim.Adadelta.load_state_dict`` fills the first four with these defaults.
OPTIONAL_GROUP_KEYS = {
  "maximize": False,
  "foreach": None,
  "capturable": False,
  "differentiable": False,
  "param_names": None,
}
_SHARED = ("lr", "rho", "eps", "maximize")


def _scalar(where: str, value: Any) -> float:
  """A real number (not a bool, not a string), finite; a TypeError/ValueError naming ``where``."""
  if isinstance(value, (bool, np.bool_, str, bytes, list, tuple, dict)) or value is None:
    raise TypeError(f"{where} must be a real number, got {value!r} ({type(value).__name__}).")
  try:
    array = _weights.as_numpy(where, value)
  except TypeError:
    array = np.zeros(0)  # not numeric at all (e.g. an int beyond float64): refused below
  if array.size != 1 or array.dtype.kind not in "iuf":
    raise TypeError(f"{where} must be a real number, got {value!r:.60} ({type(value).__name__}).")
  number = float(array.reshape(()))
  if not np.isfinite(number):
    raise ValueError(f"{where} must be finite, got {number}.")
  return number


def _index(where: str, value: Any) -> int:
  """A torch parameter index: an int (Python or NumPy; not a bool, float or string)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise TypeError(
      f"{where} must be an integer parameter index, got {value!r} ({type(value).__name__})."
    )
  return int(value)


def _flag(where: str, value: Any) -> bool:
  if hasattr(value, "detach"):  # a one-element torch bool tensor, without importing torch
    value = _weights.as_numpy(where, value)
    value = value.reshape(()) if value.size == 1 else value
  if isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_:
    value = value.item()
  return _validation.check_bool(where, value)


def _leaf_map(
  n: int, paths: list[str], order: Sequence[int | str] | None
) -> list[int]:  # torch index -> leaf index
  if order is None:
    return list(range(n))
  order = list(order)
  if len(order) != n:
    raise ValueError(f"order has {len(order)} entries, but there are {n} parameter leaves.")
  leaves = []
  for i, entry in enumerate(order):
    if isinstance(entry, str):
      if entry not in paths:
        raise ValueError(f"order[{i}] = {entry!r} is not a leaf path; the paths are {paths}.")
      entry = paths.index(entry)
    if isinstance(entry, bool) or not isinstance(entry, (int, np.integer)) or not 0 <= entry < n:
      raise ValueError(f"order[{i}] = {entry!r} must be a leaf index in [0, {n}) or a path.")
    leaves.append(int(entry))
  if len(set(leaves)) != n:
    raise ValueError(f"order must name every leaf exactly once, got {order}.")
  return leaves


def _axes_of(axes: Mapping[int, Sequence[int]] | None, index: int, ndim: int) -> tuple[int, ...]:
  if axes is None or index not in axes:
    return tuple(range(ndim))
  perm = tuple(int(a) for a in axes[index])
  if sorted(perm) != list(range(ndim)):
    raise ValueError(f"axes[{index}] = {axes[index]!r} is not a permutation of {ndim} axes.")
  return perm


def _check_group_keys(where: str, group: Any) -> None:
  """A param group: a dict of torch.optim.Adadelta's keys (a scheduler's 'initial_lr' warns)."""
  if not isinstance(group, Mapping):
    raise TypeError(f"{where} must be a dict, got {group!r}.")
  unknown = sorted(set(group) - set(GROUP_KEYS) - set(OPTIONAL_GROUP_KEYS) - {"initial_lr"})
  if unknown:
    raise TypeError(f"{where} has unknown key(s) {unknown}; torch.optim.Adadelta has {GROUP_KEYS}.")
  if "initial_lr" in group:
    warnings.warn(
      f"{where} has 'initial_lr' (a torch LR scheduler's): the scheduler's state is not part "
      "of the optimizer's; its current 'lr' is carried over as a constant.",
      UserWarning,
      stacklevel=4,
    )


def _add_shared(where: str, group: Mapping[str, Any], shared: dict[str, Any]) -> None:
  """The group's shared hyperparameters into ``shared``, which they must agree with."""
  for key in _SHARED:
    if key not in group and key not in OPTIONAL_GROUP_KEYS:
      raise TypeError(f"{where} misses key {key!r}.")
    value: bool | float
    if key == "maximize":
      value = _flag(f"{where}['maximize']", group.get(key, OPTIONAL_GROUP_KEYS[key]))
    else:
      value = _scalar(f"{where}[{key!r}]", group[key])
    if key in shared and shared[key] != value:
      raise ValueError(
        f"{where}[{key!r}] = {value!r} differs from param_groups[0]'s {shared[key]!r}: one "
        "Adadelta has one value (only weight_decay may differ, as a mask)."
      )
    shared[key] = value


def _group_params(where: str, group: Mapping[str, Any]) -> list[Any]:
  """The group's 'params' (and, if given, one 'param_names' entry per param)."""
  params = group.get("params")
  if not isinstance(params, (list, tuple)):
    raise TypeError(f"{where}['params'] must be a list of parameter ids, got {params!r}.")
  names = group.get("param_names")
  if names is not None and (
    not isinstance(names, (list, tuple))
    or len(names) != len(params)
    or not all(isinstance(name, str) for name in names)
  ):
    raise TypeError(
      f"{where}['param_names'] must be a list of {len(params)} names (one per entry of "
      f"'params'), got {names!r}."
    )
  return list(params)


def _group_settings(param_groups: Any) -> tuple[dict[str, Any], list[float], list[int]]:
  """Shared hyperparameters, the weight decay of each torch param, and the torch param ids."""
  if not isinstance(param_groups, (list, tuple)) or not param_groups:
    raise TypeError(f"state_dict['param_groups'] must be a non-empty list, got {param_groups!r}.")
  shared: dict[str, Any] = {}
  decays: list[float] = []
  ids: list[int] = []
  for g, group in enumerate(param_groups):
    where = f"param_groups[{g}]"
    _check_group_keys(where, group)
    _add_shared(where, group, shared)
    params = _group_params(where, group)
    ids.extend(_index(f"{where}['params'][{k}]", p) for k, p in enumerate(params))
    decays.extend(
      [_scalar(f"{where}['weight_decay']", group.get("weight_decay", 0.0))] * len(params)
    )
  if sorted(ids) != list(range(len(ids))):
    raise ValueError(
      f"param_groups' 'params' must number the parameters 0..{len(ids) - 1}, got {ids}."
    )
  return shared, decays, ids


def from_torch_state_dict(
  state_dict: Mapping[str, Any],
  params: optax.Params,
  *,
  order: Sequence[int | str] | None = None,
  axes: Mapping[int, Sequence[int]] | None = None,
) -> tuple[Adadelta, AdadeltaState]:
  """The optimizer and state that continue a ``torch.optim.Adadelta`` where it stopped.

  Args:
    state_dict: ``optimizer.state_dict()`` of a ``torch.optim.Adadelta`` (tensors or arrays).
    params: the JAX params (already converted from the torch model), for structure and dtypes.
    order: for each torch parameter (in ``state_dict`` numbering), its leaf: an index into
      ``jax.tree.leaves(params)`` or a path as ``jax.tree_util.keystr`` prints it. Default: the
      same order.
    axes: ``{torch index: permutation}``: ``np.transpose(torch_array, permutation)`` is the JAX
      layout (e.g. ``{0: (1, 0)}`` for a ``Linear`` weight in a Flax ``Dense``).

  Returns:
    ``(tx, state)``: :func:`adadelta_optax.presets.torch` with the group's ``lr``, ``rho``,
    ``eps``, ``weight_decay`` (groups differing only in ``weight_decay`` between 0 and one value
    become a ``weight_decay_mask``) and ``maximize``; and its state with ``count = step``.

  Raises:
    TypeError: a malformed ``state_dict`` or an unknown key (named).
    ValueError: anything that does not fit (named): shapes, dtypes, counts, differing steps or
      hyperparameters, a parameter without state while others have one.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> import adadelta_optax
    >>> params = {"w": jnp.zeros((3, 2))}  # a Flax Dense kernel: (in, out)
    >>> square_avg, acc_delta = np.ones((2, 3)), np.zeros((2, 3))  # torch Linear: (out, in)
    >>> state_dict = {  # optimizer.state_dict(), with tensors or arrays
    ...   "state": {0: {"step": 4.0, "square_avg": square_avg, "acc_delta": acc_delta}},
    ...   "param_groups": [
    ...     {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "params": [0]}
    ...   ],
    ... }
    >>> from_torch = adadelta_optax.interop.from_torch_state_dict
    >>> tx, state = from_torch(state_dict, params, axes={0: (1, 0)})
    >>> tx.config.rho, int(state.count), state.accum_grad["w"].shape
    (0.9, 4, (3, 2))
  """
  if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
    raise TypeError("state_dict must be a dict with exactly the keys 'state' and 'param_groups'.")
  shared, decays, ids = _group_settings(state_dict["param_groups"])
  flat = jax.tree_util.tree_flatten_with_path(params)
  paths = [jax.tree_util.keystr(p) for p, _ in flat[0]]
  n = len(paths)
  if len(ids) != n:
    raise ValueError(
      f"state_dict has {len(ids)} parameters (in param_groups' 'params'), params has {n} leaves."
    )
  leaf_of = _leaf_map(n, paths, order)
  decay_values = sorted(set(decays))
  mask = None
  if len(decay_values) == 1:
    weight_decay = decay_values[0]
  elif len(decay_values) == 2 and decay_values[0] == 0.0:
    weight_decay = decay_values[1]
    by_leaf = [False] * n
    for torch_index, d in zip(ids, decays, strict=True):
      by_leaf[leaf_of[torch_index]] = d != 0.0
    mask = jax.tree.unflatten(flat[1], by_leaf)
  else:
    raise ValueError(
      f"param_groups have weight_decay values {decay_values}: only one value, or 0 and one "
      "value (a mask), can be carried over."
    )
  tx = adadelta(
    learning_rate=shared["lr"],
    rho=shared["rho"],
    epsilon=shared["eps"],
    weight_decay=weight_decay,
    weight_decay_mask=mask,
    maximize=shared["maximize"],
  )
  return tx, load_torch_state(tx.init(params), state_dict["state"], order=order, axes=axes)


def load_torch_state(
  state: Any,
  torch_state: Mapping[Any, Any],
  *,
  order: Sequence[int | str] | None = None,
  axes: Mapping[int, Sequence[int]] | None = None,
) -> Any:
  """A copy of ``state`` holding torch's per-parameter ``state_dict()["state"]``.

  Everything is checked before anything is replaced. ``order`` and ``axes`` as in
  :func:`from_torch_state_dict`.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> import adadelta_optax
    >>> state = adadelta_optax.presets.torch().init({"w": jnp.zeros(3)})
    >>> torch_state = {0: {"step": 7.0, "square_avg": np.full(3, 0.5), "acc_delta": np.zeros(3)}}
    >>> state = adadelta_optax.interop.load_torch_state(state, torch_state)
    >>> int(state.count), state.accum_grad["w"].tolist()
    (7, [0.5, 0.5, 0.5])
  """
  inner = _weights.find_state(state)
  flat = jax.tree_util.tree_flatten_with_path(inner.accum_grad)
  paths = [jax.tree_util.keystr(p) for p, _ in flat[0]]
  n = len(paths)
  leaf_of = _leaf_map(n, paths, order)
  if not isinstance(torch_state, Mapping):
    raise TypeError(f"state_dict['state'] must be a dict, got {type(torch_state).__name__}.")
  keys = {_index(f"state_dict['state'] key {k!r}", k): k for k in torch_state}
  extra = sorted(set(keys) - set(range(n)))
  if extra:
    raise ValueError(f"state_dict['state'] has entries {extra} for parameters that do not exist.")
  if not keys:
    # torch after load_state_dict of an empty state: no step taken, no accumulators (they start
    # at zero on the first step), whatever this state held before.
    fresh = inner._replace(
      count=jnp.zeros_like(inner.count),
      accum_grad=jax.tree.map(jnp.zeros_like, inner.accum_grad),
      accum_var=jax.tree.map(jnp.zeros_like, inner.accum_var),
    )
    return _weights.replace_state(state, inner, fresh)
  missing = sorted(set(range(n)) - set(keys))
  if missing:
    raise ValueError(
      f"state_dict['state'] has no entry for parameter(s) {missing} (never stepped in torch) "
      "while others have one: all leaves share one count here."
    )
  old = {
    "square_avg": jax.tree.leaves(inner.accum_grad),
    "acc_delta": jax.tree.leaves(inner.accum_var),
  }
  new: dict[str, list[Any]] = {"square_avg": [None] * n, "acc_delta": [None] * n}
  steps = []
  for i in range(n):
    entry = torch_state[keys[i]]
    where = f"state[{i}]"
    if not isinstance(entry, Mapping) or set(entry) != {"step", "square_avg", "acc_delta"}:
      got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
      raise ValueError(f"{where} must have keys ['acc_delta', 'square_avg', 'step'], got {got}.")
    step = _scalar(f"{where}['step']", entry["step"])  # finite
    if step != int(step) or step < 0:
      raise ValueError(f"{where}['step'] must be a whole number >= 0, got {step}.")
    steps.append(int(step))
    leaf = leaf_of[i]
    for key in ("square_avg", "acc_delta"):
      like = old[key][leaf]
      array = _weights.as_numpy(f"{where}[{key!r}]", entry[key])
      if array.ndim == np.ndim(like):
        array = np.transpose(array, _axes_of(axes, i, array.ndim))
      new[key][leaf] = _weights.checked(
        f"{where}[{key!r}] (leaf {paths[leaf]})", array, like, accumulator=True
      )
  if len(set(steps)) != 1:
    first = next(i for i, s in enumerate(steps) if s != steps[0])
    raise ValueError(
      f"state[{first}]['step'] = {steps[first]} differs from state[0]['step'] = {steps[0]}: all "
      "leaves share one count here."
    )
  count = _weights.checked("state[0]['step']", np.asarray(steps[0]), inner.count, accumulator=False)
  replacement = inner._replace(
    count=count,
    accum_grad=jax.tree.unflatten(flat[1], new["square_avg"]),
    accum_var=jax.tree.unflatten(flat[1], new["acc_delta"]),
  )
  return _weights.replace_state(state, inner, replacement)


def _to_torch(torch: Any, array: np.ndarray) -> Any:
  """A torch tensor of its own (a copy) with ``array``'s values and dtype, bfloat16 included."""
  if array.dtype == jnp.bfloat16:  # NumPy has no bfloat16: through float32, exactly
    return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
  return torch.from_numpy(array.copy())


def to_torch_state_dict(
  tx: Adadelta,
  state: Any,
  *,
  order: Sequence[int | str] | None = None,
  axes: Mapping[int, Sequence[int]] | None = None,
  groups: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
  """``tx``'s state as a ``torch.optim.Adadelta.state_dict()``, for ``load_state_dict``.

  Args:
    tx: an optimizer torch can express: ``presets.torch``-like (coupled weight decay, a number
      as learning rate, no clipping, no legacy decay, no ``state_dtype``, no ``sparse_rows``).
    state: its state.
    order, axes: as in :func:`from_torch_state_dict` (``axes`` maps the torch layout to JAX's;
      the inverse permutation is applied here).
    groups: torch parameter indices of each param group (default: one group). Each group's
      ``weight_decay`` comes from ``weight_decay_mask`` (all of a group's leaves must agree).

  Returns:
    ``{"state": {i: {"step", "square_avg", "acc_delta"}}, "param_groups": [...]}`` with torch
    tensors (empty ``state`` before the first update, as in torch).

  Raises:
    ValueError: an option torch's Adadelta does not have (named).

  Example:
    >>> import adadelta_optax
    >>> tx = adadelta_optax.presets.torch(clipnorm=1.0)  # torch's Adadelta has no clipping
    >>> adadelta_optax.interop.to_torch_state_dict(tx, tx.init({}))
    Traceback (most recent call last):
    ...
    ValueError: clipnorm=1.0 cannot be expressed in torch.optim.Adadelta.

    With torch installed, ``optimizer.load_state_dict(to_torch_state_dict(tx, state))`` continues
    in torch (``tests/test_state_transfer.py`` runs it).
  """
  c, t = tx.config, tx.training_options
  for key, value, off in (
    ("clipnorm", c.clipnorm, None),
    ("clipvalue", c.clipvalue, None),
    ("global_clipnorm", c.global_clipnorm, None),
    ("state_dtype", c.state_dtype, None),
    ("decay", c.decay, 0.0),
    ("sparse_rows", c.sparse_rows, False),
    ("loss_scale_factor", t.loss_scale_factor, None),
    ("gradient_accumulation_steps", t.gradient_accumulation_steps, None),
    ("use_ema", t.use_ema, False),
  ):
    if value is not off and value != off:
      raise ValueError(f"{key}={value!r} cannot be expressed in torch.optim.Adadelta.")
  if callable(c.learning_rate) or _validation.is_tracer(c.learning_rate):
    raise ValueError(
      "learning_rate must be a number for torch.optim.Adadelta (a schedule's state lives in a "
      "torch LR scheduler, not in the optimizer)."
    )
  if c.decoupled_weight_decay and c.weight_decay:
    raise ValueError("decoupled_weight_decay=True cannot be expressed in torch.optim.Adadelta.")
  inner = _weights.find_state(state)
  import torch  # only here, once options and state fit: torch is not a dependency of the package

  flat = jax.tree_util.tree_flatten_with_path(inner.accum_grad)
  paths = [jax.tree_util.keystr(p) for p, _ in flat[0]]
  n = len(paths)
  leaf_of = _leaf_map(n, paths, order)
  groups = [list(range(n))] if groups is None else [list(g) for g in groups]
  if sorted(i for g in groups for i in g) != list(range(n)):
    raise ValueError(f"groups must hold each torch index 0..{n - 1} once, got {groups}.")
  mask = jax.tree.leaves(_weight_decay.resolve_mask(c.weight_decay_mask, inner.accum_grad))
  param_groups = []
  for g, members in enumerate(groups):
    decayed = {mask[leaf_of[i]] for i in members}
    if len(decayed) > 1:
      raise ValueError(f"groups[{g}] mixes leaves with and without weight decay.")
    param_groups.append(
      {
        "lr": float(c.learning_rate),
        "rho": float(c.rho),
        "eps": float(c.epsilon),
        "weight_decay": float(c.weight_decay) if decayed == {True} else 0.0,
        "foreach": None,
        "capturable": False,
        "maximize": bool(c.maximize),
        "differentiable": False,
        "params": members,
      }
    )
  count = int(inner.count)
  torch_state: dict[int, Any] = {}
  if count:
    grads, variances = jax.tree.leaves(inner.accum_grad), jax.tree.leaves(inner.accum_var)
    for i in range(n):
      leaf = leaf_of[i]
      inverse = np.argsort(_axes_of(axes, i, np.ndim(grads[leaf])))
      # Copies: torch updates its state in place, and np.asarray of a JAX array may alias it.
      torch_state[i] = {
        "step": torch.tensor(float(count)),
        "square_avg": _to_torch(torch, np.transpose(np.array(grads[leaf]), inverse)),
        "acc_delta": _to_torch(torch, np.transpose(np.array(variances[leaf]), inverse)),
      }
  return {"state": torch_state, "param_groups": param_groups}
