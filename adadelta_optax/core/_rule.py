"""The Adadelta rule (Zeiler 2012, Algorithm 1), written once.

Everything else in the package (the :func:`adadelta` alias, the presets, Keras configs) reuses
:func:`adadelta_step` through :func:`scale_by_adadelta`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.export  # a submodule: `import jax` loads it only from jax 0.8 on
import jax.numpy as jnp
import numpy as np
import optax

from adadelta_optax.core import _validation
from adadelta_optax.core._dtypes import step_dtype


class ScaleByAdadeltaState(NamedTuple):
  """State of :func:`scale_by_adadelta`, one entry per parameter leaf.

  Attributes:
    accum_grad: :math:`E[g^2]_t`, the exponential moving average of squared gradients
      (tf.keras ``accum_grad``, torch ``square_avg``, Keras 3 ``accumulated_grad``). Starts at 0.
    accum_var: :math:`E[\\Delta x^2]_t`, the exponential moving average of squared unscaled
      updates (tf.keras ``accum_var``, torch ``acc_delta``, Keras 3 ``accumulated_delta_var``).
      Starts at 0.

  For a complex leaf both accumulators are complex arrays whose real and imaginary parts hold the
  independent averages of the real and imaginary parts of the gradient (torch's convention).
  """

  accum_grad: optax.Updates
  accum_var: optax.Updates


# Lets jax.export serialize functions that take or return this state.
jax.export.register_namedtuple_serialization(
  ScaleByAdadeltaState, serialized_name="adadelta_optax.ScaleByAdadeltaState"
)


def accumulator_dtype(leaf_dtype: Any, state_dtype: Any) -> jnp.dtype:
  """The dtype of a leaf's accumulators: ``state_dtype`` when given (any spelling ``adadelta()``
  accepts: ``"float64"``, ``jnp.float64``, ``np.dtype("float64")``), kept complex for complex."""
  dtype: np.dtype[Any] = np.dtype(leaf_dtype)
  state = _validation.canonical_state_dtype(state_dtype)
  if state is not None:
    complex_ = jnp.issubdtype(dtype, jnp.complexfloating)
    wide = state == np.dtype("float64")
    dtype = np.dtype((jnp.complex128 if wide else jnp.complex64) if complex_ else state)
  return dtype


def _real_step(
  grad: jax.Array,
  accum_grad: jax.Array,
  accum_var: jax.Array,
  rho: Any,
  epsilon: Any,
  one_minus_rho: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  # Exactly the order of tf ResourceApplyAdadelta, torch.optim.Adadelta and optax: the new
  # E[g^2] but the *old* E[dx^2] in the ratio, epsilon inside both roots.
  accum_grad = rho * accum_grad + one_minus_rho * jnp.square(grad)
  update = jnp.sqrt(accum_var + epsilon) / jnp.sqrt(accum_grad + epsilon) * grad
  accum_var = rho * accum_var + one_minus_rho * jnp.square(update)
  return update, accum_grad, accum_var


def adadelta_step(
  grad: jax.Array,
  accum_grad: jax.Array,
  accum_var: jax.Array,
  rho: Any,
  epsilon: Any,
  one_minus_rho: Any = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One Adadelta step of one leaf: ``(update, new_accum_grad, new_accum_var)``.

  The update is the unscaled :math:`\\Delta x_t` (no learning rate, no sign flip). A complex leaf
  is treated as two independent real leaves, its real and imaginary parts. ``one_minus_rho``
  defaults to ``1 - rho`` (callers that precompute it pass the same value, rounded once).
  """
  if one_minus_rho is None:
    one_minus_rho = 1 - rho
  if not jnp.iscomplexobj(accum_grad):
    return _real_step(grad, accum_grad, accum_var, rho, epsilon, one_minus_rho)
  parts = [
    _real_step(part(grad), part(accum_grad), part(accum_var), rho, epsilon, one_minus_rho)
    for part in (jnp.real, jnp.imag)
  ]
  return tuple(jax.lax.complex(re, im) for re, im in zip(*parts, strict=True))  # type: ignore[return-value]


def scale_by_adadelta(
  rho: float | jax.Array = 0.95,
  epsilon: float | jax.Array = 1e-7,
  *,
  state_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by the Adadelta rule (no learning rate, no sign flip).

  With :math:`g_t` the incoming update, :math:`A` the average of squared gradients and
  :math:`D` the average of squared steps, both starting at zero:

  .. math::

    A_t &= \rho A_{t-1} + (1 - \rho)\, g_t^2 \\
    u_t &= \frac{\sqrt{D_{t-1} + \epsilon}}{\sqrt{A_t + \epsilon}}\, g_t \\
    D_t &= \rho D_{t-1} + (1 - \rho)\, u_t^2

  and :math:`u_t` is returned. Note the *old* :math:`D_{t-1}` and *new* :math:`A_t` in the ratio,
  and that :math:`D` accumulates :math:`u_t` before any learning rate, exactly as in tf.keras,
  Keras 3, torch.optim and optax. Complex leaves accumulate their real and imaginary parts
  independently (torch's convention).

  Args:
    rho: decay rate of both moving averages, in ``[0, 1]``.
    epsilon: constant added inside both square roots, ``> 0`` (0 gives 0/0 on a zero gradient).
    state_dtype: dtype of the accumulators (e.g. ``jnp.float32`` for bfloat16 params). ``None``
      keeps each leaf's own dtype. The step is computed in the accumulators' dtype, in float32
      where that has fewer than 32 bits (float16, bfloat16), and rounded once to each update's
      dtype and to the accumulators'.

  Returns:
    An :class:`optax.GradientTransformation` whose state is a :class:`ScaleByAdadeltaState`.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.scale_by_adadelta(rho=0.95, epsilon=1e-6)
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.array([1.0, -2.0]), state)
    >>> print(updates)  # sqrt(1e-6) / sqrt(0.05 * g**2 + 1e-6) * g
    [ 0.00447... -0.00447...]

  References:
    Zeiler, `ADADELTA: An Adaptive Learning Rate Method <https://arxiv.org/abs/1212.5701>`_, 2012.
  """
  _validation.check_number("rho", rho, low=0.0, high=1.0, allowed="a finite number in [0, 1]")
  _validation.check_number(
    "epsilon", epsilon, low=0.0, low_inclusive=False, allowed="a finite number > 0"
  )
  state_dtype = _validation.canonical_state_dtype(state_dtype)

  def init_fn(params: optax.Params) -> ScaleByAdadeltaState:
    _validation.check_float_leaves(params, "params")
    if state_dtype is not None:
      _validation.check_x64(state_dtype, "state_dtype")

    def zeros(leaf: jax.Array) -> jax.Array:
      # zeros_like keeps a committed (e.g. sharded) parameter's sharding outside jit; under jit
      # XLA decides, so pass adadelta_optax.distributed.state_shardings(...) as the jit's
      # out_shardings.
      return jnp.zeros_like(leaf, dtype=accumulator_dtype(jnp.result_type(leaf), state_dtype))

    return ScaleByAdadeltaState(
      accum_grad=jax.tree.map(zeros, params), accum_var=jax.tree.map(zeros, params)
    )

  def update_fn(
    updates: optax.Updates, state: ScaleByAdadeltaState, params: optax.Params | None = None
  ) -> tuple[optax.Updates, ScaleByAdadeltaState]:
    del params
    _validation.check_float_leaves(updates, "gradient")
    _validation.check_same_tree(
      state.accum_grad, updates, reference_name="optimizer state", other_name="gradient"
    )

    def step(grad: jax.Array, accum_grad: jax.Array, accum_var: jax.Array) -> tuple[Any, ...]:
      # In the accumulators' dtype, float32 for 16-bit and 8-bit ones (_dtypes.step_dtype),
      # each result rounded once to its own dtype.
      w = step_dtype(accum_grad.dtype)
      update, new_accum_grad, new_accum_var = adadelta_step(
        grad.astype(w), accum_grad.astype(w), accum_var.astype(w), rho, epsilon
      )
      return (
        update.astype(grad.dtype),
        new_accum_grad.astype(accum_grad.dtype),
        new_accum_var.astype(accum_var.dtype),
      )

    treedef: Any = jax.tree.structure(updates)  # a PyTreeDef (opaque to type checkers)
    results = [
      step(*leaves)
      for leaves in zip(
        treedef.flatten_up_to(updates),
        treedef.flatten_up_to(state.accum_grad),
        treedef.flatten_up_to(state.accum_var),
        strict=True,
      )
    ]
    new_updates, accum_grad, accum_var = (
      treedef.unflatten([r[i] for r in results]) for i in range(3)
    )
    return new_updates, ScaleByAdadeltaState(accum_grad=accum_grad, accum_var=accum_var)

  return optax.GradientTransformation(init_fn, update_fn)
