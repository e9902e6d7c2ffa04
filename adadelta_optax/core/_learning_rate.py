"""The learning rate, with tf.keras' legacy inverse-time ``decay``, applied last."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.export  # a submodule: `import jax` loads it only from jax 0.8 on
import jax.numpy as jnp
import optax

from adadelta_optax.core._dtypes import compute_dtype, sum_dtype


class ScaleByDecayedLearningRateState(NamedTuple):
  """State of :func:`scale_by_decayed_learning_rate`.

  Attributes:
    count: number of updates applied so far (tf.keras ``iterations``, torch ``step``), int32,
      saturating at the int32 maximum.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states


# Lets jax.export serialize functions that take or return this state.
jax.export.register_namedtuple_serialization(
  ScaleByDecayedLearningRateState, serialized_name="adadelta_optax.ScaleByDecayedLearningRateState"
)


def decayed_learning_rate(
  learning_rate: Any, decay: Any, count: jax.Array, dtype: Any
) -> jax.Array:
  r""":math:`\eta_t = \eta(t) / (1 + \mathrm{decay} \cdot t)`, :math:`t` = updates applied so far.

  Exactly tf.keras ``OptimizerV2._decayed_lr`` (and the 1.x ``lr * 1 / (1 + decay * iterations)``
  up to rounding), evaluated in ``dtype`` as TensorFlow does in each variable's dtype.
  """
  lr = learning_rate(count) if callable(learning_rate) else learning_rate
  lr = jnp.asarray(lr, dtype)
  return lr / (1.0 + jnp.asarray(decay, dtype) * count.astype(dtype))


def scale_by_decayed_learning_rate(
  learning_rate: optax.ScalarOrSchedule, decay: float | jax.Array = 0.0
) -> optax.GradientTransformation:
  r"""Scales updates by :math:`-\eta_t`, :math:`\eta_t = \eta(t) / (1 + \mathrm{decay}\, t)`.

  Args:
    learning_rate: a number, scalar array, or an optax schedule (callable of the step count).
    decay: legacy Keras inverse-time decay (``0`` turns it off).

  Returns:
    An :class:`optax.GradientTransformation` whose state counts the updates.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.scale_by_decayed_learning_rate(1.0, decay=1.0)
    >>> state = tx.init(jnp.zeros(1))
    >>> for _ in range(3):
    ...   updates, state = tx.update(jnp.ones(1), state)
    ...   print(updates)
    [-1.]
    [-0.5]
    [-0.33333334]
  """

  def init_fn(params: optax.Params) -> ScaleByDecayedLearningRateState:
    del params
    return ScaleByDecayedLearningRateState(count=jnp.zeros([], jnp.int32))

  def update_fn(
    updates: optax.Updates,
    state: ScaleByDecayedLearningRateState,
    params: optax.Params | None = None,
  ) -> tuple[optax.Updates, ScaleByDecayedLearningRateState]:
    del params
    if callable(learning_rate):  # evaluate a schedule once, not once per leaf
      rate = learning_rate(state.count)
    else:
      rate = learning_rate

    def scale(update: jax.Array) -> jax.Array:
      lr = decayed_learning_rate(rate, decay, state.count, compute_dtype(update.dtype))
      wide = sum_dtype(lr.dtype, update.dtype)  # the casts of implicit promotion, written out
      return (-lr.astype(wide) * update.astype(wide)).astype(update.dtype)

    updates = jax.tree.map(scale, updates)
    return updates, ScaleByDecayedLearningRateState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
