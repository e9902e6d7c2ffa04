"""Keras 3 optimizer variables in and out (``optimizer.variables``, JAX backend).

Keras 3's ``Adadelta.variables`` are, in order: ``iteration`` (int32 micro-steps);
``learning_rate`` (only for a numeric learning rate); with ``use_ema`` one ``<var>_average`` per
model variable; with ``gradient_accumulation_steps`` one ``<var>_gradient_accumulator`` per
model variable; then ``<var>_accumulated_grad`` and ``<var>_accumulated_delta_var`` for each
model variable in turn. ``<var>`` is the model variable's path with ``/`` replaced by ``_``.
The model variables are the pytree leaves in ``jax.tree.leaves`` order (pass the Keras model's
``trainable_variables`` in that order). tf.keras 1.x and 2.x weight lists are
:func:`adadelta_optax.get_weights` / :func:`adadelta_optax.set_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adadelta_optax.core import _validation, _weights
from adadelta_optax.core._keras_training import KerasTrainingState
from adadelta_optax.core._optimizer import Adadelta


def _layout(tx: Adadelta, n: int) -> list[tuple[str, str, int | None]]:
  """``(slot, name suffix, leaf index)`` of each Keras 3 variable, in Keras' order."""
  training = tx.training_options
  layout: list[tuple[str, str, int | None]] = [("iteration", "iteration", None)]
  if not callable(tx.config.learning_rate):
    layout.append(("learning_rate", "learning_rate", None))
  if training.use_ema:
    layout += [("average", "_average", i) for i in range(n)]
  if training.gradient_accumulation_steps:
    layout += [("gradient_accumulator", "_gradient_accumulator", i) for i in range(n)]
  for i in range(n):
    layout += [("accum_grad", "_accumulated_grad", i), ("accum_var", "_accumulated_delta_var", i)]
  return layout


def _check_tx(tx: Adadelta) -> None:
  if tx.config.state_dtype is not None:
    raise ValueError("state_dtype cannot be carried over: Keras 3 keeps state in each var's dtype.")


def _slot_leaves(state: Any) -> tuple[KerasTrainingState | None, Any, dict[str, list[Any]]]:
  """``(the KerasTrainingState or None, the AdadeltaState, each per-leaf slot's leaves)``."""
  training = state if isinstance(state, KerasTrainingState) else None
  inner = _weights.find_state(state)
  leaves = {
    "accum_grad": jax.tree.leaves(inner.accum_grad),
    "accum_var": jax.tree.leaves(inner.accum_var),
  }
  if training is not None:
    leaves["average"] = jax.tree.leaves(training.average)
    leaves["gradient_accumulator"] = jax.tree.leaves(training.gradient_accumulator)
  return training, inner, leaves


def keras3_variables(tx: Adadelta, state: Any, *, floatx: str = "float32") -> list[np.ndarray]:
  """The state as Keras 3's ``optimizer.variables`` values, in Keras' order.

  Load them with ``for v, x in zip(optimizer.variables, values): v.assign(x)`` (after
  ``optimizer.build(model.trainable_variables)``), or pass them to ``stateless_apply``.

  Args:
    tx: the optimizer ``state`` belongs to.
    state: its state.
    floatx: Keras' ``floatx`` (``keras.config.floatx()``), the dtype of the ``learning_rate``
      variable: ``"float32"`` unless changed with ``keras.config.set_floatx``.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.presets.keras3(learning_rate=1.0)
    >>> values = adadelta_optax.interop.keras3_variables(tx, tx.init({"w": jnp.zeros(3)}))
    >>> [v.shape for v in values]  # iteration, learning_rate, then the accumulators
    [(), (), (3,), (3,)]
  """
  _check_tx(tx)
  lr_dtype = _validation.keras_floatx(floatx)
  training, inner, leaves = _slot_leaves(state)
  iteration = training.iteration if training is not None else inner.count
  lr = tx.config.learning_rate
  out = []
  for slot, _, i in _layout(tx, len(leaves["accum_grad"])):
    if slot == "iteration":
      out.append(np.asarray(iteration, np.int32))
    elif slot == "learning_rate":
      out.append(np.asarray(lr, lr_dtype))
    else:
      assert i is not None  # a per-leaf slot
      out.append(np.asarray(leaves[slot][i]))
  return out


def _value_and_name(entry: Any) -> tuple[Any, str | None]:
  if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
    return entry[1], entry[0]
  name = getattr(entry, "path", None) or getattr(entry, "name", None)
  if hasattr(entry, "numpy") and not isinstance(entry, np.ndarray):
    return entry.numpy(), name
  return entry, name


def _check_learning_rate(where: str, value: Any, tx: Adadelta) -> None:
  """Exactly ``tx``'s learning rate: Keras keeps it in a floatx variable, so a float32 Keras
  trains with 0.9's float32 rounding, and so must ``tx`` (``from_keras_config`` rounds to floatx).
  Our own export holds the learning rate rounded to floatx: compared in the value's dtype."""
  got = _weights.as_numpy(where, value)
  if got.shape != () or not jnp.issubdtype(got.dtype, jnp.floating):
    raise ValueError(f"{where}: expected a floating scalar, got {got!r} (dtype {got.dtype}).")
  lr = float(tx.config.learning_rate)
  if float(got) != float(np.asarray(lr).astype(got.dtype)):
    raise ValueError(
      f"{where}: is {got!r}, but the optimizer's learning_rate is {lr!r}; build the "
      "optimizer with the learning rate the Keras optimizer had (from_keras_config(config, "
      "floatx=keras.config.floatx()) does)."
    )


def set_keras3_variables(tx: Adadelta, state: Any, variables: Sequence[Any]) -> Any:
  """A copy of ``state`` holding Keras 3 optimizer variables (checked before anything changes).

  Args:
    tx: the optimizer ``state`` belongs to (e.g. from
      :func:`adadelta_optax.interop.from_keras_config`).
    state: its state (``tx.init(params)``).
    variables: ``optimizer.variables`` (Keras variables, whose names are checked), ``(name,
      value)`` pairs, or plain arrays in that order (e.g. a ``.keras`` file's ``optimizer/vars``).

  Raises:
    ValueError: wrong number of entries, or an entry with the wrong name, shape, dtype kind or
      value (a negative or non-finite accumulator, a learning rate other than ``tx``'s rounded to
      the variable's dtype), naming the entry.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> import adadelta_optax
    >>> tx = adadelta_optax.presets.keras3(learning_rate=1.0)
    >>> state = tx.init({"w": jnp.zeros(3)})
    >>> values = adadelta_optax.interop.keras3_variables(tx, state)
    >>> values[0], values[2] = np.int64(5), np.full(3, 0.5, np.float32)
    >>> state = adadelta_optax.interop.set_keras3_variables(tx, state, values)
    >>> int(state.count), state.accum_grad["w"].tolist()
    (5, [0.5, 0.5, 0.5])
  """
  _check_tx(tx)
  training, inner, olds = _slot_leaves(state)
  paths = [
    jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(inner.accum_grad)[0]
  ]
  n = len(paths)
  layout = _layout(tx, n)
  variables = list(variables)
  if len(variables) != len(layout):
    raise ValueError(
      f"variables has {len(variables)} entries; this optimizer has {len(layout)} Keras 3 "
      f"variables: {[suffix.lstrip('_') for _, suffix, _ in layout]} (for {n} model variables)."
    )
  new: dict[str, list[Any]] = {slot: [None] * n for slot in olds}
  iteration: jax.Array | None = None
  for k, ((slot, suffix, i), entry) in enumerate(zip(layout, variables, strict=True)):
    value, name = _value_and_name(entry)
    where = f"variables[{k}] ({suffix.lstrip('_')}" + (
      f" of leaf {paths[i]})" if i is not None else ")"
    )
    if name is not None and not str(name).split("/")[-1].endswith(suffix):
      raise ValueError(f"{where}: expected a name ending in {suffix!r}, got {name!r}.")
    if slot == "iteration":
      like = training.iteration if training is not None else inner.count
      iteration = _weights.checked(where, value, like, accumulator=False)
    elif slot == "learning_rate":
      _check_learning_rate(where, value, tx)
    else:
      assert i is not None  # a per-leaf slot
      like = olds[slot][i]
      squares = slot in ("accum_grad", "accum_var")
      new[slot][i] = _weights.checked(where, value, like, accumulator=True, nonnegative=squares)
  treedef: Any = jax.tree.structure(inner.accum_grad)  # a PyTreeDef (opaque to type checkers)
  steps = tx.training_options.gradient_accumulation_steps or 1
  assert iteration is not None  # the layout starts with it
  replacement = inner._replace(
    count=(iteration // steps).astype(inner.count.dtype),
    accum_grad=treedef.unflatten(new["accum_grad"]),
    accum_var=treedef.unflatten(new["accum_var"]),
  )
  if training is None:
    return _weights.replace_state(state, inner, replacement)
  return KerasTrainingState(
    iteration=jnp.asarray(iteration, training.iteration.dtype),
    inner=_weights.replace_state(training.inner, inner, replacement),
    gradient_accumulator=(
      treedef.unflatten(new["gradient_accumulator"])
      if training.gradient_accumulator is not None
      else None
    ),
    average=treedef.unflatten(new["average"]) if training.average is not None else None,
  )
