r"""Keras 3's training options around the update rule: loss scaling, gradient accumulation, EMA.

Keras 3's ``BaseOptimizer.apply`` (JAX backend: ``JaxOptimizer._backend_apply_gradients``) does,
for every call (a *micro-step*, counted by the ``iteration`` variable):

1. ``g /= loss_scale_factor``;
2. with ``gradient_accumulation_steps = N``: on micro-steps where ``(iteration + 1) % N != 0``
   the gradient is added to a per-variable sum and nothing else changes; on the others the step
   runs on ``(g + sum) / N`` and the sum is reset. The learning-rate schedule is evaluated at the
   micro-step ``iteration``, while ``optimizer.iterations`` reports ``iteration // N``;
3. clipping, decoupled weight decay and the Adadelta step (:func:`adadelta_optax.adadelta`);
4. with ``use_ema``: ``average = m * average + (1 - m) * params`` after every micro-step, where
   ``m = 0`` while ``iteration // N == 0`` and ``ema_momentum`` after; with
   ``ema_overwrite_frequency = F`` the params are replaced by the average on the micro-steps
   where ``(iteration // N + 1) % F == 0``;
5. ``iteration += 1``.

:func:`adadelta_optax.with_keras_training` reproduces this as an optax transformation. Its
updates are the differences to the new params, so an overwrite by the average lands within one
rounding of it (``params + (average - params)``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adadelta_optax.core._config import AdadeltaConfig, TrainingOptions


class KerasTrainingState(NamedTuple):
  """State of :func:`with_keras_training`, named after Keras 3's optimizer variables.

  Attributes:
    iteration: micro-steps so far (Keras 3 ``iteration``), int32.
    inner: the state of the wrapped optimizer (an :class:`~adadelta_optax.AdadeltaState`, whose
      ``count`` is ``iteration // gradient_accumulation_steps``).
    gradient_accumulator: the sum of the gradients since the last update, like the params
      (Keras 3 ``<var>_gradient_accumulator``), or ``None`` without accumulation.
    average: the exponential moving average of the params (Keras 3 ``<var>_average``), or
      ``None`` without EMA.
  """

  iteration: jax.Array
  inner: Any
  gradient_accumulator: Any
  average: Any


class MicroStepSchedule:
  """``schedule(count * steps + steps - 1)``: a schedule of Keras 3's micro-step ``iteration``.

  With gradient accumulation Keras 3 evaluates the learning rate at the micro-step on which an
  update happens; the wrapped Adadelta counts updates. This maps one onto the other. (It is not
  serialized: the wrapper's ``get_config`` holds the original schedule.)
  """

  def __init__(self, schedule: Any, steps: int) -> None:
    self.schedule, self.steps = schedule, steps

  def __call__(self, count: Any) -> Any:
    return self.schedule(count * self.steps + (self.steps - 1))


class KerasTraining:
  """Holds the options; its bound ``init``/``update`` are the wrapping optimizer's.

  ``config`` is the wrapped optimizer's configuration as the user gave it (a schedule stays a
  schedule of the update count); ``inner`` is the optimizer that runs, built from it by the
  caller (with :class:`MicroStepSchedule` under gradient accumulation).
  """

  def __init__(
    self,
    config: AdadeltaConfig,
    training: TrainingOptions,
    inner: optax.GradientTransformationExtraArgs,
  ) -> None:
    self.config, self.training, self.inner = config, training, inner

  def init(self, params: optax.Params) -> KerasTrainingState:
    o = self.training

    def zeros() -> Any:
      return jax.tree.map(jnp.zeros_like, params)

    return KerasTrainingState(
      iteration=jnp.zeros([], jnp.int32),
      inner=self.inner.init(params),
      gradient_accumulator=zeros() if o.gradient_accumulation_steps else None,
      average=zeros() if o.use_ema else None,
    )

  def update(
    self,
    updates: optax.Updates,
    state: KerasTrainingState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, KerasTrainingState]:
    del extra_args
    if not isinstance(state, KerasTrainingState):
      raise TypeError(
        f"state must be the KerasTrainingState made by this optimizer's init, got {type(state)}."
      )
    o = self.training
    scale = o.loss_scale_factor
    grads = updates if scale is None else jax.tree.map(lambda g: g / scale, updates)
    steps = o.gradient_accumulation_steps
    accumulator = state.gradient_accumulator
    if steps:
      summed = jax.tree.map(lambda g, a: g + a, grads, accumulator)
      is_update_step = (state.iteration + 1) % steps == 0

      def apply(_: None) -> tuple[Any, Any, Any]:
        mean = jax.tree.map(lambda s: s / steps, summed)
        new_updates, inner = self.inner.update(mean, state.inner, params)
        return new_updates, inner, jax.tree.map(jnp.zeros_like, summed)

      def accumulate(_: None) -> tuple[Any, Any, Any]:
        return jax.tree.map(jnp.zeros_like, grads), state.inner, summed

      new_updates, inner, accumulator = jax.lax.cond(is_update_step, apply, accumulate, None)
    else:
      new_updates, inner = self.inner.update(grads, state.inner, params)
    average = state.average
    if o.use_ema:
      if params is None:
        raise ValueError("use_ema needs the params: call update(grads, state, params).")
      new_params = optax.apply_updates(params, new_updates)
      updates_done = state.iteration // steps if steps else state.iteration
      average = jax.tree.map(
        lambda avg, x: _ema(avg, x, updates_done, o.ema_momentum), average, new_params
      )
      frequency = o.ema_overwrite_frequency
      if frequency:
        overwrite = (updates_done + 1) % frequency == 0
        new_updates = jax.tree.map(
          lambda u, avg, x: jnp.where(overwrite, (avg - x).astype(u.dtype), u),
          new_updates,
          average,
          params,
        )
    return new_updates, KerasTrainingState(
      optax.safe_increment(state.iteration), inner, accumulator, average
    )


def _ema(average: jax.Array, value: jax.Array, updates_done: jax.Array, momentum: Any) -> jax.Array:
  m = (updates_done != 0).astype(value.dtype) * momentum
  average = m * average + (1 - m) * value
  return average
