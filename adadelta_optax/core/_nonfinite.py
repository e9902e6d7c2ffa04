"""Opt-in skipping of steps whose gradients are not finite, with a counter."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.export  # a submodule: `import jax` loads it only from jax 0.8 on
import jax.numpy as jnp
import optax


class SkipNonfiniteState(NamedTuple):
  """State of :func:`skip_nonfinite`.

  Attributes:
    inner_state: the wrapped optimizer's state (e.g. an :class:`AdadeltaState`), untouched by a
      skipped step.
    skipped_steps: number of steps skipped so far, int32 (saturating).
  """

  inner_state: Any
  skipped_steps: jax.Array


# Lets jax.export serialize functions that take or return this state.
jax.export.register_namedtuple_serialization(
  SkipNonfiniteState, serialized_name="adadelta_optax.SkipNonfiniteState"
)


def all_finite(tree: Any) -> jax.Array:
  """Whether every element of every leaf of ``tree`` is finite (a scalar bool)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.asarray(True)
  return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]).all()


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  r"""Skips every step whose gradients hold a NaN or an infinity, and counts the skipped steps.

  Without this wrapper :func:`adadelta_optax.adadelta` propagates non-finite gradients exactly as
  the formulas do (as tf.keras and torch do): a NaN gradient makes that element's update and
  accumulators NaN for good. Wrapped, a step with any non-finite gradient element leaves the inner
  state (accumulators *and* step count) bit for bit as it was and returns zero updates:

  .. math::

    (u_t, S_t) = \begin{cases} \mathrm{inner}(g_t, S_{t-1}) & g_t \text{ finite} \\
      (0, S_{t-1}) & \text{otherwise} \end{cases}

  Unlike :func:`optax.apply_if_finite` there is no limit on consecutive failures and the inner
  state is any state, including the fused paths of :func:`adadelta_optax.adadelta`. The test is one
  scalar reduction over all gradients (on sharded gradients one small all-reduce). A finite
  gradient whose *result* overflows is not skipped: only the input is checked.

  Args:
    inner: the optimizer to protect, e.g. ``adadelta_optax.adadelta(...)``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`SkipNonfiniteState`. ``optax.apply_updates`` with its zero updates leaves the params
    unchanged (up to the sign of a zero).

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.skip_nonfinite(adadelta_optax.adadelta())
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state)
    >>> print(updates, int(state.skipped_steps), int(state.inner_state.count))
    [0. 0.] 1 0
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params: optax.Params) -> SkipNonfiniteState:
    return SkipNonfiniteState(inner.init(params), jnp.zeros([], jnp.int32))

  def update_fn(
    updates: optax.Updates,
    state: SkipNonfiniteState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, SkipNonfiniteState]:
    finite = all_finite(updates)
    new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
    new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(
      lambda new, old: jnp.where(finite, new, old), new_inner, state.inner_state
    )
    skipped = jnp.where(finite, state.skipped_steps, optax.safe_increment(state.skipped_steps))
    return new_updates, SkipNonfiniteState(new_inner, skipped)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
