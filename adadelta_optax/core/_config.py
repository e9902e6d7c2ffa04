"""The configuration of an Adadelta optimizer: one typed, frozen object, validated once.

:class:`AdadeltaConfig` holds the arguments of :func:`adadelta_optax.adadelta`;
:class:`TrainingOptions` those of :func:`adadelta_optax.with_keras_training` (Keras 3's training
options around the rule). Both check every field when they are made, with errors that name the
field, the value and what is allowed, and cannot change afterwards (``dataclasses.replace``
makes a checked copy). Every path reads its numbers from here: the step
(:mod:`adadelta_optax.core._step`), ``get_config`` / ``from_config`` (:func:`to_dict`,
:func:`from_dict`), and the Keras and torch interop.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args

import jax
import numpy as np
import optax

from adadelta_optax.core import _validation
from adadelta_optax.core._clipping import ClipOrder, check_clip_order
from adadelta_optax.core._weight_decay import MaskOrFn

#: How the step runs (see :func:`adadelta_optax.adadelta`).
Implementation = Literal["auto", "kernel", "fused", "xla"]
IMPLEMENTATIONS: tuple[str, ...] = get_args(Implementation)

#: How the optimizer state holds the accumulators (see :func:`adadelta_optax.adadelta`).
StateLayout = Literal["tree", "flat"]
STATE_LAYOUTS: tuple[str, ...] = get_args(StateLayout)

#: A hyperparameter: a number, or a scalar array (traced under ``optax.inject_hyperparams``).
Number = float | jax.Array


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class AdadeltaConfig:
  """The arguments of :func:`adadelta_optax.adadelta`, checked once when made.

  Every field is documented at :func:`adadelta_optax.adadelta`. ``state_dtype`` is stored as a
  ``jnp.dtype`` (or ``None``) and the flags as ``bool``, whatever form they were given in.
  Numbers may be JAX tracers (under :func:`optax.inject_hyperparams`), which cannot be checked
  and are accepted as they are.

  Example:
    >>> import dataclasses
    >>> import adadelta_optax
    >>> config = adadelta_optax.AdadeltaConfig(rho=0.9, clipnorm=1.0)
    >>> tx = adadelta_optax.adadelta(**dataclasses.asdict(config))
    >>> tx.config.rho, tx.config.clipnorm
    (0.9, 1.0)
    >>> dataclasses.replace(config, rho=1.5)
    Traceback (most recent call last):
    ...
    ValueError: rho must be a finite number in [0, 1], got 1.5.
  """

  learning_rate: optax.ScalarOrSchedule = 1.0
  rho: Number = 0.95
  epsilon: Number = 1e-7
  decay: Number = 0.0
  clipnorm: Number | None = None
  clipvalue: Number | None = None
  global_clipnorm: Number | None = None
  clip_order: ClipOrder = "value_then_norm"
  weight_decay: Number = 0.0
  decoupled_weight_decay: bool = False
  weight_decay_mask: MaskOrFn = None
  maximize: bool = False
  state_dtype: Any = None
  sparse_rows: bool = False
  implementation: Implementation = "auto"
  state_layout: StateLayout = "tree"

  def __post_init__(self) -> None:
    _validation.check_learning_rate(self.learning_rate)
    _validation.check_number(
      "rho", self.rho, low=0.0, high=1.0, allowed="a finite number in [0, 1]"
    )
    _validation.check_number(
      "epsilon", self.epsilon, low=0.0, low_inclusive=False, allowed="a finite number > 0"
    )
    _validation.check_number("decay", self.decay, low=0.0, allowed="a finite number >= 0")
    _validation.check_number(
      "weight_decay", self.weight_decay, low=0.0, allowed="a finite number >= 0"
    )
    for name in ("clipnorm", "clipvalue", "global_clipnorm"):
      _validation.check_optional_positive(name, getattr(self, name))
    if self.clipnorm is not None and self.global_clipnorm is not None:
      raise ValueError(
        f"clipnorm ({self.clipnorm!r}) and global_clipnorm ({self.global_clipnorm!r}) cannot "
        "both be set (as in tf.keras): choose per-leaf or global norm clipping."
      )
    check_clip_order(self.clip_order)
    for name in ("decoupled_weight_decay", "maximize", "sparse_rows"):
      object.__setattr__(self, name, _validation.check_bool(name, getattr(self, name)))
    object.__setattr__(self, "state_dtype", _validation.canonical_state_dtype(self.state_dtype))
    _validation.check_mask(self.weight_decay_mask)
    if not isinstance(self.implementation, str) or self.implementation not in IMPLEMENTATIONS:
      raise ValueError(
        f"implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}."
      )
    if not isinstance(self.state_layout, str) or self.state_layout not in STATE_LAYOUTS:
      raise ValueError(f"state_layout must be one of {STATE_LAYOUTS}, got {self.state_layout!r}.")
    if self.state_layout == "flat" and self.implementation == "xla":
      raise ValueError(
        "state_layout='flat' needs the fused step (implementation 'auto', 'kernel' or 'fused'); "
        "implementation='xla' chains per-leaf transforms whose state is a tree."
      )
    if self.state_layout == "flat" and self.sparse_rows:
      raise ValueError(
        "state_layout='flat' cannot be combined with sparse_rows=True (which selects rows of "
        "each leaf's accumulators); use state_layout='tree'."
      )


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class TrainingOptions:
  """Keras 3's training options around the rule (:func:`adadelta_optax.with_keras_training`).

  The defaults turn every option off.
  """

  loss_scale_factor: float | None = None
  gradient_accumulation_steps: int | None = None
  use_ema: bool = False
  ema_momentum: float = 0.99
  ema_overwrite_frequency: int | None = None

  def __post_init__(self) -> None:
    if self.loss_scale_factor is not None:
      _validation.check_number(
        "loss_scale_factor",
        self.loss_scale_factor,
        low=0.0,
        low_inclusive=False,
        allowed="None or a finite number > 0",
      )
    for name, low in (("gradient_accumulation_steps", 2), ("ema_overwrite_frequency", 1)):
      value = getattr(self, name)
      if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < low
      ):
        raise ValueError(f"{name} must be None or an integer >= {low}, got {value!r}.")
    if not isinstance(self.use_ema, bool):
      raise TypeError(f"use_ema must be a bool, got {self.use_ema!r}.")
    _validation.check_number(
      "ema_momentum", self.ema_momentum, low=0.0, high=1.0, allowed="a finite number in [0, 1]"
    )
    if self.ema_overwrite_frequency is not None and not self.use_ema:
      raise ValueError(
        f"ema_overwrite_frequency={self.ema_overwrite_frequency!r} needs use_ema=True (Keras "
        "ignores it otherwise; it is refused here so that it is not silently dropped)."
      )

  @property
  def enabled(self) -> bool:
    """Whether any option is on (else the wrapper is the identity)."""
    return fields_of(self) != fields_of(TrainingOptions())


def fields_of(config: AdadeltaConfig | TrainingOptions) -> dict[str, Any]:
  """The fields of ``config`` by name, in order (shallow: values are not copied)."""
  return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


_ADADELTA_KEYS = tuple(f.name for f in dataclasses.fields(AdadeltaConfig))
_TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrainingOptions))
#: How the step runs and how the state is laid out, not what it computes: last in the config.
_RUN_KEYS = ("implementation", "state_layout")
#: The keys of :meth:`Adadelta.get_config`, in order: the fields of :class:`AdadeltaConfig` but
#: ``implementation`` and ``state_layout``, then those of :class:`TrainingOptions`, then these two.
CONFIG_KEYS = (*(k for k in _ADADELTA_KEYS if k not in _RUN_KEYS), *_TRAINING_KEYS, *_RUN_KEYS)

#: The fields whose values are plain numbers (or None).
_NUMBER_KEYS = (
  "rho",
  "epsilon",
  "decay",
  "clipnorm",
  "clipvalue",
  "global_clipnorm",
  "weight_decay",
  "loss_scale_factor",
  "ema_momentum",
)

_SCHEDULES: dict[str, type[Any]] = {}


def register_schedule(cls: type[Any]) -> type[Any]:
  """Class decorator: lets instances of ``cls`` be serialized as an ``Adadelta`` learning rate.

  ``cls`` needs a ``get_config() -> dict`` method and a ``from_config(dict)`` classmethod; it is
  stored in configs as ``{"class_name": cls.__name__, "config": obj.get_config()}``.

  Raises:
    TypeError: when ``cls`` lacks ``get_config`` or ``from_config``.

  Example:
    >>> import adadelta_optax
    >>> @adadelta_optax.register_schedule
    ... class Halving:
    ...   def __init__(self, every):
    ...     self.every = every
    ...   def __call__(self, count):
    ...     return 0.5 ** (count // self.every)
    ...   def get_config(self):
    ...     return {"every": self.every}
    ...   @classmethod
    ...   def from_config(cls, config):
    ...     return cls(**config)
    >>> config = adadelta_optax.adadelta(learning_rate=Halving(100)).get_config()
    >>> config["learning_rate"]
    {'class_name': 'Halving', 'config': {'every': 100}}
    >>> adadelta_optax.Adadelta.from_config(config).config.learning_rate.every
    100
  """
  if not (
    callable(getattr(cls, "get_config", None)) and callable(getattr(cls, "from_config", None))
  ):
    raise TypeError(f"{cls!r} needs get_config() and a from_config() classmethod to be registered.")
  _SCHEDULES[cls.__name__] = cls
  return cls


def _number(name: str, value: Any) -> float | None:
  if value is None:
    return None
  if _validation.is_tracer(value):
    raise TypeError(
      f"{name} is a traced value (inside jit or inject_hyperparams): it has no "
      "concrete number to serialize."
    )
  return float(np.asarray(value))


def _schedule_to_config(schedule: Any) -> dict[str, Any]:
  cls = type(schedule)
  if _SCHEDULES.get(cls.__name__) is not cls:
    raise TypeError(
      f"learning_rate schedule {schedule!r} cannot be serialized by get_config(): only numbers "
      "and schedule classes registered with adadelta_optax.register_schedule (having "
      "get_config/from_config) can be. Pass a number, or rebuild the optimizer in code."
    )
  return {"class_name": cls.__name__, "config": schedule.get_config()}


def _mask_to_config(mask: Any, where: str = "weight_decay_mask") -> Any:
  if mask is None or isinstance(mask, (bool, np.bool_)):
    return None if mask is None else bool(mask)
  if isinstance(mask, dict) and all(isinstance(k, str) for k in mask):
    return {k: _mask_to_config(v, f"{where}[{k!r}]") for k, v in mask.items()}
  if isinstance(mask, list):
    return [_mask_to_config(v, f"{where}[{i}]") for i, v in enumerate(mask)]
  raise TypeError(
    f"{where} = {mask!r} cannot be serialized by get_config(): only None, bools and nested "
    "dicts (string keys) / lists of bools can (not callables, tuples or custom pytrees)."
  )


def to_dict(config: AdadeltaConfig, training: TrainingOptions) -> dict[str, Any]:
  """``config`` and ``training`` as one JSON-serializable dict (:data:`CONFIG_KEYS`)."""
  fields = {**fields_of(config), **fields_of(training)}
  out: dict[str, Any] = {}
  for key in CONFIG_KEYS:
    value = fields[key]
    if key == "learning_rate":
      value = _schedule_to_config(value) if callable(value) else _number(key, value)
    elif key in _NUMBER_KEYS:
      value = _number(key, value)
    elif key == "weight_decay_mask":
      value = _mask_to_config(value)
    elif key == "state_dtype":
      value = None if value is None else value.name
    out[key] = value
  return out


def from_dict(config: dict[str, Any]) -> tuple[AdadeltaConfig, TrainingOptions]:
  """The :class:`AdadeltaConfig` and :class:`TrainingOptions` that :func:`to_dict` wrote.

  Missing keys take their defaults; unknown keys are a TypeError.
  """
  if not isinstance(config, dict):
    raise TypeError(f"config must be a dict (from Adadelta.get_config()), got {type(config)}.")
  unknown = sorted(set(config) - set(CONFIG_KEYS), key=str)
  if unknown:
    raise TypeError(
      f"Unknown Adadelta config key(s) {unknown}; allowed keys are {list(CONFIG_KEYS)}. "
      "(For a Keras config, use adadelta_optax.interop.from_keras_config.)"
    )
  kwargs = dict(config)
  lr = kwargs.get("learning_rate")
  if isinstance(lr, dict):
    name = lr.get("class_name")
    if name not in _SCHEDULES or set(lr) != {"class_name", "config"}:
      raise ValueError(
        f"learning_rate config {lr!r} names no registered schedule class "
        f"(registered: {sorted(_SCHEDULES)})."
      )
    kwargs["learning_rate"] = _SCHEDULES[name].from_config(lr["config"])
  training = {key: kwargs.pop(key) for key in _TRAINING_KEYS if key in kwargs}
  return AdadeltaConfig(**kwargs), TrainingOptions(**training)
