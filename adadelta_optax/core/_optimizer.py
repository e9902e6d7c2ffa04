"""The user-facing :func:`adadelta` optimizer and its :class:`Adadelta` transformation type."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adadelta_optax.core import (
  _clipping,
  _config,
  _flat_state,
  _gradients,
  _kernel,
  _rule,
  _sparse,
  _step,
  _validation,
  _weights,
)
from adadelta_optax.core._config import (
  AdadeltaConfig,
  Implementation,
  StateLayout,
  TrainingOptions,
  fields_of,
)
from adadelta_optax.core._dtypes import compute_dtype, step_dtype
from adadelta_optax.core._flat_state import FlatAdadeltaState
from adadelta_optax.core._keras_training import KerasTraining, MicroStepSchedule
from adadelta_optax.core._learning_rate import (
  ScaleByDecayedLearningRateState,
  scale_by_decayed_learning_rate,
)
from adadelta_optax.core._state import AdadeltaState
from adadelta_optax.core._weight_decay import MaskOrFn, add_decayed_weights, require_params
from adadelta_optax.core._weight_decay import is_disabled as is_weight_decay_disabled


class Adadelta(optax.GradientTransformationExtraArgs):
  """An Adadelta optimizer: an :class:`optax.GradientTransformationExtraArgs` with Keras methods.

  Build it with :func:`adadelta` or a preset (:mod:`adadelta_optax.presets`). ``init`` and
  ``update`` behave as in every optax transformation; the Keras methods of ``tf.keras``'s
  ``Adadelta`` are here in pure functional form: they take the optimizer state and return a new
  one instead of mutating variables.
  """

  __slots__ = ()

  @property
  def config(self) -> AdadeltaConfig:
    """The :class:`~adadelta_optax.AdadeltaConfig` this optimizer was built from."""
    return _owner(self).config

  @property
  def training_options(self) -> TrainingOptions:
    """Keras 3's training options around the rule (:func:`with_keras_training`); all off by
    default."""
    owner = _owner(self)
    return owner.training if isinstance(owner, KerasTraining) else TrainingOptions()

  @property
  def hyperparams(self) -> dict[str, Any]:
    """The arguments this optimizer was built with, by name, as a dict.

    Those of :func:`adadelta` (:attr:`config`), and for :func:`with_keras_training`'s wrapper
    its options too. So ``adadelta(**tx.hyperparams)`` rebuilds a plain optimizer.
    """
    owner = _owner(self)
    training = fields_of(owner.training) if isinstance(owner, KerasTraining) else {}
    return {**fields_of(self.config), **training}

  def get_config(self) -> dict[str, Any]:
    """The hyperparameters as a JSON-serializable dict; :meth:`from_config` inverts it.

    Raises:
      TypeError: for a learning-rate schedule or mask that cannot be serialized.
    """
    return _config.to_dict(self.config, self.training_options)

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> Adadelta:
    """Rebuilds the optimizer from :meth:`get_config`'s dict (unknown keys are a TypeError)."""
    adadelta_config, training = _config.from_dict(config)
    tx = from_adadelta_config(adadelta_config)
    return with_keras_training(tx, **fields_of(training)) if training.enabled else tx

  def get_weights(self, state: Any) -> list[np.ndarray]:
    """The optimizer state as tf.keras 2.x ``get_weights()``: see :func:`get_weights`."""
    return _weights.get_weights(state)

  def set_weights(self, state: Any, weights: list[Any]) -> Any:
    """A copy of ``state`` holding ``weights``: see :func:`set_weights`."""
    return _weights.set_weights(state, weights)

  @property
  def implementation(self) -> str:
    """Which path ``update`` and :meth:`apply_gradients` run: ``"kernel"`` (the fused step, by
    the C++ kernel on a single-device CPU process and fused JAX elsewhere), ``"fused"`` (fused
    JAX everywhere) or ``"xla"`` (the chain of this package's public transforms)."""
    owner = _owner(self)
    return owner.inner.implementation if isinstance(owner, KerasTraining) else owner.path

  def apply_gradients(
    self, grads: optax.Updates, state: Any, params: optax.Params
  ) -> tuple[optax.Params, Any]:
    """``(new_params, new_state)``: the update applied to ``params`` in the same pass.

    Equivalent to ``update`` followed by ``optax.apply_updates``, but on the fused paths each
    leaf is read and written once (jit with ``donate_argnums`` for params and state to update
    them in place). The new params are formed in the wider of each param's and accumulator's
    dtype and rounded once (a narrower ``state_dtype`` never rounds the params themselves).
    """
    owner = getattr(self.init, "__self__", None)
    if getattr(self.update, "__self__", None) is owner and isinstance(owner, _AdadeltaTransform):
      return owner.apply_gradients(grads, state, params)
    # A wrapped update (sparse_rows, the Keras 3 training wrapper) goes the optax way.
    updates, state = self.update(grads, state, params)
    new_params: optax.Params = optax.apply_updates(params, updates)
    return new_params, state

  def kernel_bytes(self, params: optax.Params, *, apply: bool = True) -> int:
    """Bytes the CPU kernel moves in one step on ``params`` (0 off the kernel path).

    Add XLA's ``cost_analysis()["bytes accessed"]`` of the compiled step (which cannot see
    inside the kernel) for the step's total memory traffic.
    """
    if not isinstance(_owner(self), _AdadeltaTransform):
      raise TypeError("kernel_bytes needs a plain adadelta() (wrappers hold other state).")
    if self.implementation != "kernel" or jax.device_count() != 1:
      return 0
    # The tree layout's accumulators (the flat layout's hold the same elements).
    owner = _owner(self)
    accum_grad = jax.eval_shape(owner.rule.init, params).accum_grad  # type: ignore[union-attr]
    return _kernel.kernel_bytes(self.config, params, accum_grad, apply=apply)

  def get_gradients(self, loss_fn: Callable[..., Any], params: optax.Params, *args: Any) -> Any:
    """Gradients of the scalar ``loss_fn(params, *args)`` with respect to ``params``.

    Raises:
      ValueError: where a gradient cannot be computed (a non-float leaf, a non-scalar or
        non-real loss).
    """
    return _gradients.get_gradients(loss_fn, params, *args)

  def get_updates(
    self, loss_fn: Callable[..., Any], params: optax.Params, state: Any, *args: Any
  ) -> tuple[optax.Updates, Any]:
    """``(updates, new_state)`` for one step on ``loss_fn(params, *args)``.

    Apply them with ``optax.apply_updates(params, updates)``.
    """
    grads = self.get_gradients(loss_fn, params, *args)
    updates, new_state = self.update(grads, state, params)
    return updates, new_state


def _owner(tx: Adadelta) -> _AdadeltaTransform | KerasTraining:
  """The object whose bound ``init``/``update`` are ``tx``'s: it holds the configuration."""
  owner = getattr(tx.init, "__self__", None)
  if not isinstance(owner, (_AdadeltaTransform, KerasTraining)):
    raise TypeError(
      "this Adadelta was not built by adadelta_optax.adadelta() and has no configuration."
    )
  return owner


class _AdadeltaTransform:
  """Holds the configuration; its bound ``init``/``update`` are the :class:`Adadelta` fields."""

  def __init__(self, config: AdadeltaConfig) -> None:
    self.config = config
    c = config
    self.state_dtype = c.state_dtype
    wd, decoupled = c.weight_decay, c.decoupled_weight_decay
    if c.implementation == "kernel" and not _kernel.kernel_available():
      raise ValueError(
        f"implementation='kernel' but {_kernel.kernel_unavailable_reason()}; reinstall with a "
        "C++ compiler present, or use implementation='auto' or 'fused'."
      )
    self.path: Literal["kernel", "fused", "xla"]
    if c.implementation == "xla" or c.implementation == "fused":
      self.path = c.implementation
    else:
      _kernel.warn_if_unavailable()  # once per process: why 'auto' runs without the kernel
      self.path = "kernel" if _kernel.kernel_available() else "fused"
    # The "xla" path: the same step as a chain of the package's public transforms.
    self.pre_rule = optax.chain(
      optax.scale(-1.0) if c.maximize else optax.identity(),
      _clipping.clip_gradients(c.clipvalue, c.clipnorm, c.global_clipnorm, clip_order=c.clip_order),
      add_decayed_weights(0.0 if decoupled else wd, c.weight_decay_mask),
    )
    self.rule = _rule.scale_by_adadelta(c.rho, c.epsilon, state_dtype=c.state_dtype)
    self.post_rule = add_decayed_weights(wd if decoupled else 0.0, c.weight_decay_mask)
    self.learning_rate = scale_by_decayed_learning_rate(c.learning_rate, c.decay)

  def _cast(self, tree: Any) -> Any:
    """Each leaf in the dtype its step is computed in (``step_dtype`` of its accumulators)."""
    if tree is None:
      return tree

    def cast(x: Any) -> Any:
      dtype = step_dtype(_rule.accumulator_dtype(jnp.result_type(x), self.state_dtype))
      return x if jnp.result_type(x) == dtype else jnp.asarray(x).astype(dtype)

    return jax.tree.map(cast, tree)

  def init(self, params: optax.Params) -> AdadeltaState | FlatAdadeltaState:
    if self.config.state_layout == "flat":
      jax.eval_shape(self.rule.init, params)  # the tree state's checks, allocating nothing
      (count,) = self.learning_rate.init(params)
      return _flat_state.init(params, self.state_dtype, count)
    rule_state = self.rule.init(params)
    (count,) = self.learning_rate.init(params)
    return AdadeltaState(count, rule_state.accum_grad, rule_state.accum_var)

  def update(
    self,
    updates: optax.Updates,
    state: AdadeltaState | FlatAdadeltaState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, AdadeltaState | FlatAdadeltaState]:
    del extra_args
    self._check(updates, state)
    if self.path != "xla":
      return self._fused(updates, state, params, apply=False)
    dtypes = jax.tree.map(jnp.result_type, updates)
    # The whole step (clipping, decay, rule, learning rate) runs in each leaf's step dtype (the
    # state_dtype where given, float32 for 16-bit leaves); the update is cast back to each
    # gradient's dtype once, at the end.
    updates, params_c = self._cast(updates), self._cast(params)
    updates, _ = self.pre_rule.update(updates, self.pre_rule.init(None), params_c)
    updates, rule_state = self.rule.update(
      updates, _rule.ScaleByAdadeltaState(state.accum_grad, state.accum_var)
    )
    updates, _ = self.post_rule.update(updates, optax.EmptyState(), params_c)
    updates, lr_state = self.learning_rate.update(
      updates, ScaleByDecayedLearningRateState(state.count)
    )
    updates = jax.tree.map(lambda u, dtype: u.astype(dtype), updates, dtypes)
    return updates, AdadeltaState(lr_state.count, rule_state.accum_grad, rule_state.accum_var)

  def apply_gradients(
    self, grads: optax.Updates, state: AdadeltaState | FlatAdadeltaState, params: optax.Params
  ) -> tuple[optax.Params, AdadeltaState | FlatAdadeltaState]:
    if self.path == "xla":
      updates, state = self.update(grads, state, params)
      return optax.apply_updates(params, updates), state
    self._check(grads, state)
    return self._fused(grads, state, params, apply=True)

  def _check(self, grads: optax.Updates, state: Any) -> None:
    flat = self.config.state_layout == "flat"
    expected: type = FlatAdadeltaState if flat else AdadeltaState
    other: type = AdadeltaState if flat else FlatAdadeltaState
    if not isinstance(state, expected):
      convert = (
        "adadelta_optax.flat_state(state)" if flat else "adadelta_optax.tree_state(state, params)"
      )
      hint = (
        f" This optimizer has state_layout={self.config.state_layout!r}: convert with {convert}."
        if isinstance(state, other)
        else ""
      )
      raise TypeError(
        f"state must be the {expected.__name__} made by this optimizer's init, got "
        f"{type(state).__name__}.{hint}"
      )
    _validation.check_float_leaves(grads, "gradient")
    checked = cast(AdadeltaState | FlatAdadeltaState, state)
    if isinstance(checked, FlatAdadeltaState):
      _flat_state.check_fits(checked, grads, self.state_dtype, "gradient")
    else:
      _validation.check_count(checked.count, "state.count")
      _validation.check_same_tree(
        checked.accum_grad, grads, reference_name="optimizer state", other_name="gradient"
      )
    self._check_hyperparameters_fit(checked.accum_grad)

  def _check_hyperparameters_fit(self, accum_grad: Any) -> None:
    """Each number must survive the cast to the dtype the step computes in (per leaf)."""
    c = self.config
    leaves = jax.tree.leaves(accum_grad)
    # Where they act: the real dtype of the step (float32 for 16-bit accumulators, so an
    # epsilon of 1e-8 works with float16).
    for dtype in {compute_dtype(jnp.result_type(a)) for a in leaves}:
      for name, value in (
        ("epsilon", c.epsilon),
        ("clipnorm", c.clipnorm),
        ("clipvalue", c.clipvalue),
        ("global_clipnorm", c.global_clipnorm),
      ):
        _validation.check_fits_dtype(name, value, dtype, positive=True)
      for name, value in (("rho", c.rho), ("decay", c.decay), ("weight_decay", c.weight_decay)):
        _validation.check_fits_dtype(name, value, dtype)
      _validation.check_fits_dtype("learning_rate", c.learning_rate, dtype)

  def _fused(
    self,
    grads: optax.Updates,
    state: AdadeltaState | FlatAdadeltaState,
    params: optax.Params | None,
    apply: bool,
  ) -> tuple[Any, AdadeltaState | FlatAdadeltaState]:
    needs_params = apply or not is_weight_decay_disabled(self.config.weight_decay)
    if needs_params:
      require_params(grads, params)
    out, accum_grad, accum_var = _step.tree_step(
      self.config,
      grads,
      state.accum_grad,
      state.accum_var,
      state.count,
      params if needs_params else None,
      apply=apply,
      # The kernel has no sharding rule: with several devices XLA partitions the fused JAX
      # step instead (elementwise, so without any collective).
      use_kernel=self.path == "kernel" and jax.device_count() == 1,
      flat=isinstance(state, FlatAdadeltaState),
    )
    count = optax.safe_increment(state.count)
    if isinstance(state, FlatAdadeltaState):
      return out, FlatAdadeltaState(count, accum_grad, accum_var, state.spec)
    return out, AdadeltaState(count, accum_grad, accum_var)


def adadelta(
  learning_rate: optax.ScalarOrSchedule = 1.0,
  rho: float | jax.Array = 0.95,
  epsilon: float | jax.Array = 1e-7,
  *,
  decay: float | jax.Array = 0.0,
  clipnorm: float | jax.Array | None = None,
  clipvalue: float | jax.Array | None = None,
  global_clipnorm: float | jax.Array | None = None,
  clip_order: _clipping.ClipOrder = "value_then_norm",
  weight_decay: float | jax.Array = 0.0,
  decoupled_weight_decay: bool = False,
  weight_decay_mask: MaskOrFn = None,
  maximize: bool = False,
  state_dtype: Any = None,
  implementation: Implementation = "auto",
  sparse_rows: bool = False,
  state_layout: StateLayout = "tree",
) -> Adadelta:
  r"""The Adadelta optimizer (Zeiler 2012) with a learning rate, as in tf.keras, torch and optax.

  For gradient :math:`g_t` (after ``maximize``, clipping and coupled weight decay), with
  :math:`A_0 = D_0 = 0`:

  .. math::

    A_t &= \rho A_{t-1} + (1 - \rho)\, g_t^2 \\
    u_t &= \frac{\sqrt{D_{t-1} + \epsilon}}{\sqrt{A_t + \epsilon}}\, g_t \\
    x_t &= x_{t-1} - \eta_t \left(u_t + \lambda_d\, x_{t-1}\right) \\
    D_t &= \rho D_{t-1} + (1 - \rho)\, u_t^2

  where :math:`\eta_t = \eta(t) / (1 + \mathrm{decay}\cdot t)` with :math:`t` the number of updates
  already applied, and :math:`\lambda_d` is ``weight_decay`` when ``decoupled_weight_decay`` else
  0. The gradient goes through, in order: sign flip (``maximize``), ``clipvalue``, ``clipnorm``
  (swapped by ``clip_order="norm_then_value"``), ``global_clipnorm`` (tf.keras' formulas), and
  coupled L2 decay :math:`g \leftarrow g + \lambda x` (when not decoupled).

  The defaults are tf.keras 1.x's (the paper's form with a unit learning rate). tf.keras 2.x and
  Keras 3 default to ``learning_rate=0.001``, with which Adadelta barely moves: use
  :func:`adadelta_optax.presets.keras_v2` to get that on purpose.

  Args:
    learning_rate: :math:`\eta`, a number ``>= 0``, a scalar array, or an optax schedule (a
      callable of the update count).
    rho: decay rate of both moving averages, in ``[0, 1]``.
    epsilon: constant inside both square roots, ``> 0``.
    decay: legacy Keras inverse-time learning-rate decay, ``>= 0``.
    clipnorm: clip each leaf's gradient to this L2 norm (``g * (c / max(||g||, c))``), or
      ``None``.
    clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``, or ``None``.
    global_clipnorm: clip all gradients together to this global L2 norm, or ``None``; not
      together with ``clipnorm``.
    clip_order: ``"value_then_norm"`` (tf.keras 2.x and Keras 3: clipvalue, then clipnorm) or
      ``"norm_then_value"`` (tf.keras 1.x: clipnorm, then clipvalue).
    weight_decay: :math:`\lambda \ge 0`.
    decoupled_weight_decay: ``False``: coupled L2 ``g += wd * x`` (torch, optax). ``True``: Keras 3
      ``x -= lr_t * wd * x`` applied beside the Adadelta step (AdamW style).
    weight_decay_mask: which leaves decay: ``None`` (all), a pytree of bools, or a callable
      returning one from the params (as :func:`optax.add_decayed_weights`).
    maximize: ascend the objective instead of descending (torch: the gradient is negated first).
    state_dtype: dtype of the accumulators, e.g. ``jnp.float32`` for bfloat16 params. The step is
      computed in it and the update cast back to each gradient's dtype.
    implementation: ``"auto"`` (default): the fused step, one pass over memory per leaf, by a
      C++ kernel on CPU when the package was built with it (``kernel_available()``) and the
      process has a single device, and by fused JAX elsewhere (GPU, TPU, sharded or
      multi-process runs, which XLA partitions); ``"kernel"``: the same, but an error when the
      kernel is not built;
      ``"fused"``: fused JAX on every platform (no custom call, e.g. for CPU exports);
      ``"xla"``: the same options as a chain of this package's optax transforms
      (:func:`clip_gradients`, :func:`add_decayed_weights`, :func:`scale_by_adadelta`,
      :func:`scale_by_decayed_learning_rate`), the form to copy when a transform of your own
      must go between two stages. ``Adadelta.implementation`` tells which runs. All give the
      same numbers up to rounding.
    sparse_rows: TensorFlow's sparse (embedding) semantics, ``ResourceSparseApplyAdadelta``: in
      every leaf with ``ndim >= 2``, rows (leading axis) whose gradient is zero everywhere keep
      their parameters *and* accumulators unchanged (no ``rho`` decay, no weight decay); other
      rows update normally. Costs one reduction over each such gradient and three selects; the
      dense step is still computed for every row. See ``adadelta_optax/core/_sparse.py``.
    state_layout: ``"tree"`` (default): the state is an :class:`AdadeltaState` whose
      accumulators are trees like the params. ``"flat"``: a :class:`FlatAdadeltaState` holding
      them as one buffer per dtype, for trees of many small leaves, where a jitted step's cost
      is mostly the buffers it returns (2,000 leaves of 1,000 floats: see
      ``docs/howto/performance.md``). Params, gradients and updates stay trees, the numbers
      are the same bit for bit, and :func:`tree_state` / :func:`flat_state` convert between
      the layouts (``get_weights`` and the torch and Keras interop take the tree state). Needs
      the fused step (not ``implementation="xla"``) and not ``sparse_rows``.

  Returns:
    An :class:`Adadelta`, usable anywhere an :class:`optax.GradientTransformationExtraArgs` is.

  With :func:`optax.inject_hyperparams`, every numeric argument becomes a traced hyperparameter
  (changeable between jitted steps without recompiling). optax treats every *callable* argument as
  a schedule: pass a callable ``weight_decay_mask`` in ``static_args`` and give ``state_dtype`` as a
  string (``"float32"``). A traced ``weight_decay`` may be non-zero, so ``update`` then needs the
  params (or ``static_args=("weight_decay",)``).

  Raises:
    ValueError: for an out-of-range value (naming the argument, the value and the allowed range).
    TypeError: for a value of the wrong type (e.g. a non-float ``state_dtype``).

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import adadelta_optax
    >>> loss = lambda x: jnp.sum((x - 3.0) ** 2)
    >>> tx = adadelta_optax.adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6)
    >>> params = jnp.array([0.0, 1.0])
    >>> state = tx.init(params)
    >>> for _ in range(200):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(loss(params) < loss(jnp.array([0.0, 1.0])), int(state.count))
    True 200

  References:
    Zeiler, `ADADELTA: An Adaptive Learning Rate Method <https://arxiv.org/abs/1212.5701>`_, 2012.
  """
  config = AdadeltaConfig(
    learning_rate=learning_rate,
    rho=rho,
    epsilon=epsilon,
    decay=decay,
    clipnorm=clipnorm,
    clipvalue=clipvalue,
    global_clipnorm=global_clipnorm,
    clip_order=clip_order,
    weight_decay=weight_decay,
    decoupled_weight_decay=decoupled_weight_decay,
    weight_decay_mask=weight_decay_mask,
    maximize=maximize,
    state_dtype=state_dtype,
    sparse_rows=sparse_rows,
    implementation=implementation,
    state_layout=state_layout,
  )
  return from_adadelta_config(config)


def from_adadelta_config(config: AdadeltaConfig) -> Adadelta:
  """The optimizer described by ``config``: ``adadelta(**fields)`` without checking it again.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.AdadeltaConfig(learning_rate=0.5, weight_decay=0.01)
    >>> tx = adadelta_optax.from_adadelta_config(config)
    >>> tx.config is config
    True
  """
  if not isinstance(config, AdadeltaConfig):
    raise TypeError(f"config must be an adadelta_optax.AdadeltaConfig, got {type(config)}.")
  transform = _AdadeltaTransform(config)
  update = (
    # sparse_rows keeps the tree layout (AdadeltaConfig refuses it with state_layout="flat").
    _sparse.skip_untouched_rows(cast(_sparse.UpdateFn, transform.update))
    if config.sparse_rows
    else transform.update
  )
  return Adadelta(transform.init, update)


def with_keras_training(
  tx: Adadelta,
  *,
  loss_scale_factor: float | None = None,
  gradient_accumulation_steps: int | None = None,
  use_ema: bool = False,
  ema_momentum: float = 0.99,
  ema_overwrite_frequency: int | None = None,
) -> Adadelta:
  r"""Adds Keras 3's ``loss_scale_factor``, ``gradient_accumulation_steps`` and EMA to ``tx``.

  Keras 3's optimizer base class in optax form (see ``adadelta_optax/core/_keras_training.py`` for
  the exact order). With all options off ``tx`` is returned unchanged.

  - ``loss_scale_factor = s``: gradients are divided by ``s`` first. Multiply your loss by ``s``
    (Keras' ``optimizer.scale_loss``), as Keras' trainers do.
  - ``gradient_accumulation_steps = N``: updates every ``N``-th call with the mean of the last
    ``N`` gradients, zero updates in between; schedules see the micro-step count.
  - ``use_ema``: keeps :math:`a \leftarrow m a + (1 - m) x` of the params (``m = 0`` until the
    first update is done); ``ema_overwrite_frequency = F`` moves the params onto the average
    every ``F`` updates. Without ``F`` use ``state.average`` yourself at the end (Keras'
    ``finalize_variable_values``).

  Args:
    tx: an optimizer made by :func:`adadelta_optax.adadelta` (or a preset).
    loss_scale_factor: ``None`` or a number ``> 0``.
    gradient_accumulation_steps: ``None`` or an integer ``>= 2``.
    use_ema: whether to keep the moving average of the params.
    ema_momentum: :math:`m` in ``[0, 1]``.
    ema_overwrite_frequency: ``None`` or an integer ``>= 1`` (needs ``use_ema``).

  Returns:
    An :class:`~adadelta_optax.Adadelta` with state :class:`KerasTrainingState`, whose
    ``get_config`` includes the options.

  Example:
    >>> import jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.with_keras_training(
    ...     adadelta_optax.adadelta(), gradient_accumulation_steps=2)
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.ones(2), state)
    >>> print(updates, int(state.iteration), int(state.inner.count))
    [0. 0.] 1 0
    >>> updates, state = tx.update(jnp.ones(2), state)
    >>> print(int(state.iteration), int(state.inner.count))
    2 1
  """
  training = TrainingOptions(
    loss_scale_factor=loss_scale_factor,
    gradient_accumulation_steps=gradient_accumulation_steps,
    use_ema=use_ema,
    ema_momentum=ema_momentum,
    ema_overwrite_frequency=ema_overwrite_frequency,
  )
  owner = _owner(tx)
  if not training.enabled:
    return tx
  if isinstance(owner, KerasTraining):
    raise TypeError("tx already has Keras training options; pass them all in one call.")
  config = owner.config
  steps = training.gradient_accumulation_steps
  inner = tx
  if steps and callable(config.learning_rate):
    micro = MicroStepSchedule(config.learning_rate, steps)
    inner = from_adadelta_config(dataclasses.replace(config, learning_rate=micro))
  wrapper = KerasTraining(config, training, inner)
  return Adadelta(wrapper.init, wrapper.update)
