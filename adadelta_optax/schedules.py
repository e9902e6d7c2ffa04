r"""Keras' learning-rate schedules, with Keras' exact values, usable as optax schedules.

Each class takes the arguments of its ``keras.optimizers.schedules`` namesake (tf.keras 2.x uses
the same ones), is a callable of the update count like an optax schedule, has Keras'
``get_config`` / ``from_config``, and is registered with :func:`adadelta_optax.register_schedule`,
so :meth:`adadelta_optax.Adadelta.get_config` serializes it.

Values are computed with Keras' operations in Keras' order, in ``dtype``: Keras converts
``initial_learning_rate`` to a tensor of ``floatx`` (float32 unless changed) and computes the
schedule in it, then casts the result to each variable's dtype. Keep ``dtype="float32"`` to match
a float32 Keras; use ``"float64"`` only with ``keras.config.set_floatx("float64")`` (Keras 3).

===========================  ====================================================================
schedule                     value at step :math:`s` (before any ``floor`` / ``min`` shown below)
===========================  ====================================================================
ExponentialDecay             :math:`\eta_0\, r^{s / d}` (``staircase``: :math:`\lfloor s/d \rfloor`)
InverseTimeDecay             :math:`\eta_0 / (1 + r\, s / d)` (``staircase``: floor)
PiecewiseConstantDecay       ``values[i]`` for ``boundaries[i-1] < s <= boundaries[i]``
PolynomialDecay              :math:`(\eta_0 - \eta_e)(1 - \min(s, d)/d)^p + \eta_e`, ``cycle``
CosineDecay                  linear warmup, then :math:`\eta\,((1-\alpha)\tfrac12(1+\cos\pi
                             \tfrac{\min(s, d)}{d}) + \alpha)`
CosineDecayRestarts          SGDR: periods growing by ``t_mul``, restarts scaled by ``m_mul``
===========================  ====================================================================

Example:
  >>> from adadelta_optax import schedules
  >>> schedule = schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5, staircase=True)
  >>> print(schedule(9), schedule(10), schedule(25))
  1.0 0.5 0.25
  >>> schedules.ExponentialDecay.from_config(schedule.get_config()) == schedule
  True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from adadelta_optax.core import _validation
from adadelta_optax.core._config import register_schedule

__all__ = [
  "CosineDecay",
  "CosineDecayRestarts",
  "ExponentialDecay",
  "InverseTimeDecay",
  "LearningRateSchedule",
  "PiecewiseConstantDecay",
  "PolynomialDecay",
  "deserialize",
  "serialize",
]

#: The Keras module name in serialized schedules (Keras 3 and tf.keras >= 2.13).
KERAS_MODULE = "keras.optimizers.schedules"


def _positive(name: str, value: Any) -> None:
  _validation.check_number(name, value, low=0.0, low_inclusive=False, allowed="a number > 0")


def _non_negative(name: str, value: Any) -> None:
  _validation.check_number(name, value, low=0.0, allowed="a finite number >= 0")


def _finite(name: str, value: Any) -> None:
  _validation.check_number(name, value, allowed="a finite number")


class LearningRateSchedule:
  """Base class: a Keras schedule as an optax schedule (a callable of the update count).

  Subclasses define ``_keras_args`` (the Keras constructor arguments, in Keras' config order)
  and ``_value(step)``.
  """

  _keras_args: tuple[str, ...] = ()

  def __init__(self, dtype: Any = "float32") -> None:
    self.dtype = jnp.dtype(dtype)
    if self.dtype.name not in ("float32", "float64"):
      raise TypeError(f"dtype must be float32 or float64, got {dtype!r}.")

  def __call__(self, count: Any) -> jax.Array:
    """The learning rate after ``count`` updates, a scalar of ``dtype``."""
    _validation.check_x64(self.dtype, f"{type(self).__name__} dtype")
    return self._value(jnp.asarray(count))

  def _value(self, step: jax.Array) -> jax.Array:
    raise NotImplementedError

  def _cast(self, value: Any) -> jax.Array:
    return jnp.asarray(value).astype(self.dtype)

  def get_config(self) -> dict[str, Any]:
    """Keras' config of this schedule, plus ``dtype`` (which Keras takes from ``floatx``)."""
    config = {name: getattr(self, name) for name in self._keras_args}
    config["dtype"] = self.dtype.name
    return config

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
    """Builds the schedule from :meth:`get_config`'s dict or from a Keras schedule config."""
    unknown = sorted(set(config) - set(cls._keras_args) - {"dtype"})
    if unknown:
      raise TypeError(
        f"Unknown {cls.__name__} config key(s) {unknown}; allowed keys are "
        f"{[*cls._keras_args, 'dtype']}."
      )
    return cls(**config)

  def __eq__(self, other: object) -> bool:
    return type(other) is type(self) and other.get_config() == self.get_config()

  def __hash__(self) -> int:
    return hash((type(self).__name__, repr(self.get_config())))

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


class _RateDecay(LearningRateSchedule):
  """What ExponentialDecay and InverseTimeDecay share: Keras' arguments and the progress
  :math:`s / d` (floored with ``staircase``)."""

  _keras_args = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")

  def __init__(
    self,
    initial_learning_rate: float,
    decay_steps: float,
    decay_rate: float,
    staircase: bool,
    name: str | None,
    dtype: Any,
  ) -> None:
    super().__init__(dtype)
    _non_negative("initial_learning_rate", initial_learning_rate)
    _positive("decay_steps", decay_steps)
    _non_negative("decay_rate", decay_rate)
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.decay_rate = decay_rate
    self.staircase = _validation.check_bool("staircase", staircase)
    self.name = name

  def _progress(self, step: jax.Array) -> jax.Array:
    p = self._cast(step) / self._cast(self.decay_steps)
    return jnp.floor(p) if self.staircase else p


@register_schedule
class ExponentialDecay(_RateDecay):
  r"""``keras.optimizers.schedules.ExponentialDecay``: :math:`\eta_0\, r^{s / d}`.

  With ``staircase=True`` the exponent is :math:`\lfloor s / d \rfloor`.

  Example:
    >>> from adadelta_optax.schedules import ExponentialDecay
    >>> print(ExponentialDecay(0.1, decay_steps=100, decay_rate=0.96)(100))
    0.096
  """

  def __init__(
    self,
    initial_learning_rate: float,
    decay_steps: float,
    decay_rate: float,
    staircase: bool = False,
    name: str | None = "ExponentialDecay",
    dtype: Any = "float32",
  ) -> None:
    super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name, dtype)

  def _value(self, step: jax.Array) -> jax.Array:
    p = self._progress(step)
    return self._cast(self.initial_learning_rate) * jnp.power(self._cast(self.decay_rate), p)


@register_schedule
class InverseTimeDecay(_RateDecay):
  r"""``keras.optimizers.schedules.InverseTimeDecay``: :math:`\eta_0 / (1 + r\, s / d)`.

  With ``staircase=True``, :math:`s / d` is floored.

  Example:
    >>> from adadelta_optax.schedules import InverseTimeDecay
    >>> print(InverseTimeDecay(1.0, decay_steps=1, decay_rate=0.5)(2))
    0.5
  """

  def __init__(
    self,
    initial_learning_rate: float,
    decay_steps: float,
    decay_rate: float,
    staircase: bool = False,
    name: str | None = "InverseTimeDecay",
    dtype: Any = "float32",
  ) -> None:
    super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name, dtype)

  def _value(self, step: jax.Array) -> jax.Array:
    p = self._progress(step)
    denominator = self._cast(1) + self._cast(self.decay_rate) * p
    return self._cast(self.initial_learning_rate) / denominator


@register_schedule
class PiecewiseConstantDecay(LearningRateSchedule):
  """``keras.optimizers.schedules.PiecewiseConstantDecay``.

  ``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for ``boundaries[i-1] < step <=
  boundaries[i]``, ``values[-1]`` for ``step > boundaries[-1]``. Boundaries are compared with the
  integer count (Keras 3 casts them to the step's integer dtype).

  Example:
    >>> from adadelta_optax.schedules import PiecewiseConstantDecay
    >>> schedule = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    >>> print(schedule(10), schedule(11), schedule(21))
    1.0 0.5 0.1
  """

  _keras_args = ("boundaries", "values", "name")

  def __init__(
    self,
    boundaries: Sequence[float],
    values: Sequence[float],
    name: str | None = "PiecewiseConstant",
    dtype: Any = "float32",
  ) -> None:
    super().__init__(dtype)
    if not isinstance(boundaries, Sequence) or not isinstance(values, Sequence):
      raise TypeError(
        f"boundaries and values must be lists of numbers, got {boundaries!r} and {values!r}."
      )
    boundaries, values = list(boundaries), list(values)
    for i, boundary in enumerate(boundaries):
      _finite(f"boundaries[{i}]", boundary)
    for i, value in enumerate(values):
      _non_negative(f"values[{i}]", value)
    if len(boundaries) != len(values) - 1 or not boundaries:
      raise ValueError(
        "boundaries must have one entry less than values (and at least one), got "
        f"boundaries={boundaries} and values={values}."
      )
    self.boundaries = boundaries
    self.values = values
    self.name = name

  def _value(self, step: jax.Array) -> jax.Array:
    bounds = [jnp.asarray(b).astype(step.dtype) for b in self.boundaries]
    values = [self._cast(v) for v in self.values]
    result = jnp.zeros((), self.dtype)
    result += (step <= bounds[0]).astype(self.dtype) * values[0]
    result += (step > bounds[-1]).astype(self.dtype) * values[-1]
    for low, high, value in zip(bounds[:-1], bounds[1:], values[1:-1], strict=True):
      result += ((step > low) & (step <= high)).astype(self.dtype) * value
    return result


@register_schedule
class PolynomialDecay(LearningRateSchedule):
  r"""``keras.optimizers.schedules.PolynomialDecay``.

  :math:`(\eta_0 - \eta_e)(1 - \min(s, d) / d)^p + \eta_e`; with ``cycle=True`` the horizon
  :math:`d` is multiplied by :math:`\lceil s / d \rceil` (1 at step 0) instead of clamping
  :math:`s`.

  Example:
    >>> from adadelta_optax.schedules import PolynomialDecay
    >>> print(PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0)(5))
    0.5
  """

  _keras_args = (
    "initial_learning_rate",
    "decay_steps",
    "end_learning_rate",
    "power",
    "cycle",
    "name",
  )

  def __init__(
    self,
    initial_learning_rate: float,
    decay_steps: float,
    end_learning_rate: float = 0.0001,
    power: float = 1.0,
    cycle: bool = False,
    name: str | None = "PolynomialDecay",
    dtype: Any = "float32",
  ) -> None:
    super().__init__(dtype)
    _non_negative("initial_learning_rate", initial_learning_rate)
    _positive("decay_steps", decay_steps)
    _non_negative("end_learning_rate", end_learning_rate)
    _finite("power", power)
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.end_learning_rate = end_learning_rate
    self.power = power
    self.cycle = _validation.check_bool("cycle", cycle)
    self.name = name

  def _value(self, step: jax.Array) -> jax.Array:
    initial = self._cast(self.initial_learning_rate)
    end = self._cast(self.end_learning_rate)
    step = self._cast(step)
    decay_steps = self._cast(self.decay_steps)
    if self.cycle:
      multiplier = jnp.where(step == 0, 1.0, jnp.ceil(step / self.decay_steps))
      decay_steps = decay_steps * multiplier.astype(self.dtype)
    else:
      step = jnp.minimum(step, decay_steps)
    p = step / decay_steps
    return (initial - end) * jnp.power(1 - p, self._cast(self.power)) + end


@register_schedule
class CosineDecay(LearningRateSchedule):
  r"""``keras.optimizers.schedules.CosineDecay``, with Keras' optional linear warmup.

  Without ``warmup_target``: :math:`\eta_0 ((1 - \alpha) \tfrac12 (1 + \cos(\pi \min(s, d) /
  d)) + \alpha)`. With it: a linear ramp from ``initial_learning_rate`` to ``warmup_target``
  over ``warmup_steps``, then the cosine decay from ``warmup_target`` over ``decay_steps``.

  Example:
    >>> from adadelta_optax.schedules import CosineDecay
    >>> schedule = CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)
    >>> print(schedule(2), schedule(4), schedule(14))
    0.5 1.0 0.0
  """

  _keras_args = (
    "initial_learning_rate",
    "decay_steps",
    "alpha",
    "name",
    "warmup_target",
    "warmup_steps",
  )

  def __init__(
    self,
    initial_learning_rate: float,
    decay_steps: float,
    alpha: float = 0.0,
    name: str | None = "CosineDecay",
    warmup_target: float | None = None,
    warmup_steps: float = 0,
    dtype: Any = "float32",
  ) -> None:
    super().__init__(dtype)
    _non_negative("initial_learning_rate", initial_learning_rate)
    _positive("decay_steps", decay_steps)
    _finite("alpha", alpha)
    if warmup_target is not None:
      _non_negative("warmup_target", warmup_target)
    _non_negative("warmup_steps", warmup_steps)
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.alpha = alpha
    self.name = name
    self.warmup_target = warmup_target
    self.warmup_steps = warmup_steps

  def _decay(self, step: jax.Array, decay_steps: jax.Array, decay_from: jax.Array) -> jax.Array:
    completed_fraction = step / decay_steps
    pi = jnp.asarray(math.pi, self.dtype)
    cosine_decayed = 0.5 * (1.0 + jnp.cos(pi * completed_fraction))
    decayed = (1 - self.alpha) * cosine_decayed + self.alpha
    return decay_from * decayed

  def _value(self, step: jax.Array) -> jax.Array:
    initial = self._cast(self.initial_learning_rate)
    decay_steps = self._cast(self.decay_steps)
    step = self._cast(step)
    if self.warmup_target is None:
      return self._decay(jnp.minimum(step, decay_steps), decay_steps, initial)
    target = self._cast(self.warmup_target)
    warmup_steps = self._cast(self.warmup_steps)
    step = jnp.minimum(step, decay_steps + warmup_steps)
    warmup = (target - initial) * (step / warmup_steps) + initial
    return jnp.where(
      step < warmup_steps, warmup, self._decay(step - warmup_steps, decay_steps, target)
    )


@register_schedule
class CosineDecayRestarts(LearningRateSchedule):
  r"""``keras.optimizers.schedules.CosineDecayRestarts`` (SGDR, Loshchilov & Hutter 2016).

  The multiplier decays from 1 to ``alpha`` over ``first_decay_steps``; each restart lasts
  ``t_mul`` times longer than the previous period and starts ``m_mul`` times lower.

  Example:
    >>> from adadelta_optax.schedules import CosineDecayRestarts
    >>> schedule = CosineDecayRestarts(1.0, first_decay_steps=10, t_mul=1.0, m_mul=0.5)
    >>> print(schedule(0), schedule(10), schedule(20))
    1.0 0.5 0.25
  """

  _keras_args = ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha", "name")

  def __init__(
    self,
    initial_learning_rate: float,
    first_decay_steps: float,
    t_mul: float = 2.0,
    m_mul: float = 1.0,
    alpha: float = 0.0,
    name: str | None = "SGDRDecay",
    dtype: Any = "float32",
  ) -> None:
    super().__init__(dtype)
    _non_negative("initial_learning_rate", initial_learning_rate)
    _positive("first_decay_steps", first_decay_steps)
    _positive("t_mul", t_mul)
    _non_negative("m_mul", m_mul)
    _finite("alpha", alpha)
    self.initial_learning_rate = initial_learning_rate
    self.first_decay_steps = first_decay_steps
    self.t_mul = t_mul
    self.m_mul = m_mul
    self.alpha = alpha
    self.name = name

  def _value(self, step: jax.Array) -> jax.Array:
    initial = self._cast(self.initial_learning_rate)
    alpha = self._cast(self.alpha)
    t_mul = self._cast(self.t_mul)
    m_mul = self._cast(self.m_mul)
    fraction = self._cast(step) / self._cast(self.first_decay_steps)

    def equal_periods() -> tuple[jax.Array, jax.Array]:
      return jnp.floor(fraction), fraction - jnp.floor(fraction)

    def geometric_periods() -> tuple[jax.Array, jax.Array]:
      def start(i: jax.Array) -> jax.Array:  # where period i starts, in first periods
        return (1.0 - jnp.power(t_mul, i)) / (1.0 - t_mul)

      i = jnp.floor(jnp.log((1.0 - fraction * (1.0 - t_mul)).astype(self.dtype)) / jnp.log(t_mul))
      # log(8) / log(2) may round to 2.9999999 (XLA fuses differently under jit than eagerly):
      # on a restart step, move to the period that really contains the step.
      i = jnp.where(start(i + 1) <= fraction, i + 1, jnp.where(start(i) > fraction, i - 1, i))
      return i, (fraction - start(i)) / jnp.power(t_mul, i)

    # Decided on the Python number (Keras: ops.cond on t_mul == 1), so that the schedule traces
    # under jit like any optax schedule; a traced t_mul selects elementwise.
    if _validation.is_tracer(self.t_mul):
      pairs = zip(equal_periods(), geometric_periods(), strict=True)
      i_restart, completed_fraction = (jnp.where(t_mul == 1.0, e, g) for e, g in pairs)
    elif float(self.t_mul) == 1.0:
      i_restart, completed_fraction = equal_periods()
    else:
      i_restart, completed_fraction = geometric_periods()
    m_fac = jnp.power(m_mul, i_restart)
    pi = jnp.asarray(math.pi, self.dtype)
    cosine_decayed = 0.5 * m_fac * (1.0 + jnp.cos(pi * completed_fraction))
    decayed = (1 - alpha) * cosine_decayed + alpha
    return initial * decayed


_CLASSES: dict[str, type[LearningRateSchedule]] = {
  cls.__name__: cls
  for cls in (
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    CosineDecay,
    CosineDecayRestarts,
  )
}


def serialize(schedule: LearningRateSchedule, *, legacy_format: bool = False) -> dict[str, Any]:
  """The Keras serialization of ``schedule`` (as ``keras.optimizers.schedules.serialize``).

  Args:
    schedule: one of this module's schedules.
    legacy_format: ``True`` for tf.keras <= 2.12's ``{"class_name", "config"}``; ``False`` for
      Keras 3's (and tf.keras >= 2.13's) form with ``module`` and ``registered_name``.

  Returns:
    A JSON-serializable dict whose ``config`` has Keras' keys only (no ``dtype``).

  Example:
    >>> from adadelta_optax import schedules
    >>> schedule = schedules.ExponentialDecay(1.0, decay_steps=100, decay_rate=0.5)
    >>> serialized = schedules.serialize(schedule)
    >>> serialized["class_name"], serialized["config"]["decay_rate"]
    ('ExponentialDecay', 0.5)
    >>> schedules.deserialize(serialized) == schedule
    True
  """
  if type(schedule) not in _CLASSES.values():
    raise TypeError(f"{schedule!r} is not one of adadelta_optax.schedules' Keras schedules.")
  config = schedule.get_config()
  del config["dtype"]
  if legacy_format:
    return {"class_name": type(schedule).__name__, "config": config}
  return {
    "module": KERAS_MODULE,
    "class_name": type(schedule).__name__,
    "config": config,
    "registered_name": None,
  }


def deserialize(
  serialized: dict[str, Any], *, dtype: Any = "float32", where: str = "learning_rate"
) -> LearningRateSchedule:
  """Rebuilds a schedule from Keras' serialization (either form accepted by :func:`serialize`).

  Args:
    serialized: ``{"class_name": ..., "config": {...}}``, optionally with ``module`` (which must
      be Keras' schedules module) and ``registered_name``.
    dtype: the dtype Keras computed the schedule in (its ``floatx``).
    where: the name used for ``serialized`` in error messages.

  Raises:
    ValueError: for a schedule class this module does not have (naming it).
    TypeError: for a malformed dict or unknown config keys.

  Example:
    >>> from adadelta_optax import schedules
    >>> serialized = {"class_name": "InverseTimeDecay",
    ...   "config": {"initial_learning_rate": 1.0, "decay_steps": 10, "decay_rate": 1.0}}
    >>> schedule = schedules.deserialize(serialized)  # tf.keras <= 2.12's form
    >>> float(schedule(10))
    0.5
  """
  if not isinstance(serialized, dict) or "class_name" not in serialized:
    raise TypeError(f"{where} must be a serialized Keras schedule dict, got {serialized!r}.")
  extra = sorted(set(serialized) - {"class_name", "config", "module", "registered_name"})
  if extra:
    raise TypeError(f"{where} has unknown key(s) {extra}.")
  module = serialized.get("module", KERAS_MODULE)
  name = serialized["class_name"]
  registered = serialized.get("registered_name")
  if module != KERAS_MODULE or name not in _CLASSES or registered not in (None, name):
    raise ValueError(
      f"{where}: schedule {name!r} (module {module!r}, registered_name {registered!r}) cannot "
      f"be carried over; supported are Keras' {sorted(_CLASSES)} (module {KERAS_MODULE!r})."
    )
  config = serialized.get("config")
  if not isinstance(config, dict):
    raise TypeError(f"{where}['config'] must be a dict, got {config!r}.")
  if "dtype" in config:
    raise TypeError(f"{where}['config'] is a Keras config and has no 'dtype' key.")
  return _CLASSES[name].from_config({**config, "dtype": dtype})
