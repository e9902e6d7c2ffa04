"""The state of :func:`adadelta_optax.adadelta`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.export  # a submodule: `import jax` loads it only from jax 0.8 on
import optax


class AdadeltaState(NamedTuple):
  """State of :func:`adadelta`.

  Attributes:
    count: number of updates applied so far (tf.keras ``iterations``, torch ``step``, Keras 3
      ``iteration``), int32. The learning-rate schedule and ``decay`` are evaluated at it.
    accum_grad: :math:`E[g^2]`, one array per parameter leaf (see
      :class:`adadelta_optax.ScaleByAdadeltaState`).
    accum_var: :math:`E[\\Delta x^2]`, one array per parameter leaf.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
  accum_grad: optax.Updates
  accum_var: optax.Updates


# Lets jax.export serialize functions that take or return this state.
jax.export.register_namedtuple_serialization(
  AdadeltaState, serialized_name="adadelta_optax.AdadeltaState"
)
