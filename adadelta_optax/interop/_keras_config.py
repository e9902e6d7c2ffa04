"""Keras Adadelta configs in and out: tf.keras 1.x, tf.keras 2.x (OptimizerV2) and Keras 3.

Each version's config is read with that version's semantics:

- **tf.keras 1.x** (``keras.optimizers.Adadelta``, ``optimizer_v1``): ``lr``, ``rho``, ``decay``,
  ``epsilon`` (``None`` is ``K.epsilon() = 1e-7``), and ``clipnorm`` / ``clipvalue``, applied
  clipnorm first. ``lr`` and ``decay`` live in ``floatx`` variables (float32 by default).
- **tf.keras 2.x** (``OptimizerV2``, today ``tf_keras.optimizers.legacy.Adadelta``): ``name``,
  ``learning_rate`` (a number or a serialized schedule), ``decay``, ``rho``, ``epsilon`` (a falsy
  value becomes ``1e-7``, with a warning here), ``clipvalue`` / ``clipnorm`` /
  ``global_clipnorm``. ``learning_rate`` and ``rho`` live in float32 variables, and ``decay``
  reaches the step through a float32 tensor (``tf.cast`` of a Python float).
- **Keras 3** (``keras.optimizers.Adadelta``; also tf.keras >= 2.11's non-legacy optimizer,
  without EMA): ``name``, ``learning_rate`` (in a ``floatx`` variable), ``rho``, ``epsilon``,
  decoupled lr-scaled ``weight_decay``, one of ``clipnorm`` / ``clipvalue`` /
  ``global_clipnorm`` (0 turns clipping off), and the training options of
  :func:`adadelta_optax.with_keras_training`.

Numbers Keras keeps in float32 variables are rounded to float32 on the way in, as Keras does,
so the optimizer computes with Keras' exact values. Anything that cannot be honoured is an error
that names the key.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np

from adadelta_optax import schedules
from adadelta_optax.core import _validation
from adadelta_optax.core._config import AdadeltaConfig, TrainingOptions
from adadelta_optax.core._optimizer import Adadelta, adadelta, with_keras_training
from adadelta_optax.core._weight_decay import MaskOrFn

Version = Literal[1, 2, 3]

#: The keys each version's ``get_config()`` may hold.
KEYS: dict[int, tuple[str, ...]] = {
  1: ("lr", "rho", "decay", "epsilon", "clipnorm", "clipvalue"),
  2: (
    "name",
    "learning_rate",
    "decay",
    "rho",
    "epsilon",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
  ),
  3: (
    "name",
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
    "rho",
    "epsilon",
  ),
}

#: tf.keras 2.11+'s non-legacy optimizer: Keras 3's keys plus these two (no numeric effect).
_TF_KERAS_NEW_KEYS = ("jit_compile", "is_legacy_optimizer")
_KERAS3_ONLY = set(KEYS[3]) - set(KEYS[2]) - {"name"}
_MODULES = {"keras.optimizers.legacy": 2, "keras.optimizers": 3}


def _unwrap(config: Any) -> tuple[dict[str, Any], str | None]:
  """The inner config of ``keras.optimizers.serialize(...)``'s dict (or ``config`` itself)."""
  if not isinstance(config, dict):
    raise TypeError(f"config must be a dict, got {type(config).__name__}.")
  if "class_name" not in config:
    return config, None
  extra = sorted(set(config) - {"class_name", "config", "module", "registered_name"})
  if extra:
    raise TypeError(f"serialized optimizer has unknown key(s) {extra}.")
  name = config["class_name"]
  module = config.get("module")
  registered = config.get("registered_name")
  if (
    name not in ("Adadelta", "Custom>Adadelta")
    or (module is not None and module not in _MODULES)
    or registered not in (None, name)
  ):
    # A registered_name other than the class's own is a custom (user-registered) class, whose
    # behaviour is not Keras' Adadelta's.
    raise ValueError(
      f"class_name={name!r} (module {module!r}, registered_name {registered!r}) is not a Keras "
      "Adadelta; only Adadelta configs can be carried over."
    )
  inner = config.get("config")
  if not isinstance(inner, dict):
    raise TypeError(f"serialized optimizer's 'config' must be a dict, got {inner!r}.")
  return inner, module


def detect_version(config: dict[str, Any], module: str | None = None) -> Version:
  """Which Keras wrote ``config``: 1, 2 or 3 (see :func:`from_keras_config`)."""
  if module == "keras.optimizers.legacy":
    return 2
  if "lr" in config:
    return 1
  if set(config) & (_KERAS3_ONLY | set(_TF_KERAS_NEW_KEYS)):
    return 3
  if "decay" in config:
    return 2
  if module == "keras.optimizers":
    return 3
  raise ValueError(
    f"cannot tell which Keras wrote the config with keys {sorted(config)} (no 'lr', 'decay' or "
    "Keras 3 key): pass version=1, 2 or 3."
  )


def _float(key: str, value: Any, *, rounding: str | None = None) -> float:
  """``value`` as a Python float, rounded through ``rounding`` (a dtype name) if given.

  Only numbers: ``int``/``float`` and NumPy integer/floating scalars (or 0-d arrays). Not bools
  (``numpy.bool_`` included), strings, bytes, containers, or ints beyond float64's range.
  """
  array = value if isinstance(value, np.ndarray) else None
  numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
    value, (bool, np.bool_)
  )
  if array is not None:
    numeric = array.shape == () and array.dtype.kind in "iuf"
  if not numeric:
    raise TypeError(
      f"Keras config key {key!r} must be a number, got {value!r:.80} ({type(value).__name__})."
    )
  try:
    number = float(value)
  except OverflowError:
    raise ValueError(
      f"Keras config key {key!r} = {value!r:.40}... is beyond float64's range."
    ) from None
  with np.errstate(over="ignore"):
    return float(np.asarray(number, dtype=rounding)) if rounding else number


def _positive_or_error(key: str, value: Any, why: str) -> float:
  number = _float(key, value)
  if not number > 0:
    raise ValueError(f"Keras config key {key!r} = {value!r} cannot be honoured: {why}.")
  return number


def _learning_rate(key: str, value: Any, *, rounding: str, schedule_dtype: str) -> Any:
  if isinstance(value, dict):
    return schedules.deserialize(value, dtype=schedule_dtype, where=key)
  return _float(key, value, rounding=rounding)


def _v1(config: dict[str, Any], floatx: str) -> dict[str, Any]:
  kwargs: dict[str, Any] = {"clip_order": "norm_then_value"}
  kwargs["learning_rate"] = _learning_rate(
    "lr", config.get("lr", 1.0), rounding=floatx, schedule_dtype=floatx
  )
  if not isinstance(kwargs["learning_rate"], float):
    raise ValueError("Keras config key 'lr' must be a number in tf.keras 1.x (no schedules).")
  kwargs["rho"] = _float("rho", config.get("rho", 0.95))
  kwargs["decay"] = _float("decay", config.get("decay", 0.0), rounding=floatx)
  epsilon = config.get("epsilon")
  kwargs["epsilon"] = 1e-7 if epsilon is None else _float("epsilon", epsilon)
  for key in ("clipnorm", "clipvalue"):
    if key in config:  # tf.keras 1.x clips whenever the key is present, even at 0
      kwargs[key] = _positive_or_error(
        key, config[key], "tf.keras 1.x clips to 0 there, which zeroes every gradient"
      )
  return kwargs


def _v2(config: dict[str, Any]) -> dict[str, Any]:
  kwargs: dict[str, Any] = {}
  lr = config.get("learning_rate", config.get("lr", 0.001))
  kwargs["learning_rate"] = _learning_rate(
    "learning_rate", lr, rounding="float32", schedule_dtype="float32"
  )
  kwargs["rho"] = _float("rho", config.get("rho", 0.95), rounding="float32")
  # _decayed_lr's tf.cast(self._initial_decay, var_dtype) goes through a float32 tensor.
  kwargs["decay"] = _float("decay", config.get("decay", 0.0), rounding="float32")
  epsilon = config.get("epsilon", 1e-7)
  # Python truthiness as tf.keras applies it; an array of several numbers is no epsilon at all
  # (refused by _float below) rather than an "ambiguous truth value" error.
  if not (isinstance(epsilon, np.ndarray) and epsilon.ndim) and not epsilon:
    warnings.warn(
      f"Keras config key 'epsilon' = {epsilon!r} is falsy; tf.keras 2.x replaces it by 1e-7 "
      "(`epsilon or backend.epsilon()`), and so does from_keras_config.",
      UserWarning,
      stacklevel=3,
    )
    epsilon = 1e-7
  kwargs["epsilon"] = _float("epsilon", epsilon)
  for key in ("clipnorm", "clipvalue", "global_clipnorm"):
    if config.get(key) is not None:  # tf.keras 2.x clips whenever the value is not None
      kwargs[key] = _positive_or_error(
        key, config[key], "tf.keras 2.x clips to 0 there, which zeroes every gradient"
      )
  return kwargs


def _v3(config: dict[str, Any], floatx: str, schedule_dtype: str) -> dict[str, Any]:
  if config.get("is_legacy_optimizer", False):
    raise ValueError(
      "Keras config key 'is_legacy_optimizer' is True: this is a tf.keras 2.x legacy config; "
      "pass version=2 and its OptimizerV2 config."
    )
  if _TF_KERAS_NEW_KEYS[0] in config and config.get("use_ema"):
    raise ValueError(
      "Keras config key 'use_ema' = True in a tf.keras 2.11+ config cannot be honoured: its "
      "EMA differs from Keras 3's (no zero momentum on the first step)."
    )
  kwargs: dict[str, Any] = {"decoupled_weight_decay": True}
  kwargs["learning_rate"] = _learning_rate(
    "learning_rate",
    config.get("learning_rate", 0.001),
    rounding=floatx,
    schedule_dtype=schedule_dtype,
  )
  kwargs["rho"] = _float("rho", config.get("rho", 0.95))
  kwargs["epsilon"] = _float("epsilon", config.get("epsilon", 1e-7))
  weight_decay = config.get("weight_decay")
  kwargs["weight_decay"] = 0.0 if weight_decay is None else _float("weight_decay", weight_decay)
  clips = {
    key: config[key]
    for key in ("clipnorm", "global_clipnorm", "clipvalue")
    if config.get(key) is not None
  }
  if len(clips) > 1:
    raise ValueError(f"Keras config keys {sorted(clips)} are all set; Keras 3 allows only one.")
  for key, value in clips.items():
    number = _float(key, value)
    if math.isnan(number):  # Keras 3 would silently not clip
      raise ValueError(f"Keras config key {key!r} is NaN: give a number > 0, or None.")
    if number > 0:  # Keras 3 clips only for a value > 0
      kwargs[key] = number
  training: dict[str, Any] = {}
  if config.get("loss_scale_factor") is not None:
    training["loss_scale_factor"] = _float("loss_scale_factor", config["loss_scale_factor"])
  if config.get("gradient_accumulation_steps"):  # Keras 3: a falsy value turns it off
    training["gradient_accumulation_steps"] = config["gradient_accumulation_steps"]
  if config.get("use_ema", False):  # ema_momentum / ema_overwrite_frequency do nothing without it
    training["use_ema"] = config["use_ema"]
    training["ema_momentum"] = _float("ema_momentum", config.get("ema_momentum", 0.99))
    training["ema_overwrite_frequency"] = config.get("ema_overwrite_frequency")
  kwargs["training"] = training
  return kwargs


def from_keras_config(
  config: dict[str, Any],
  version: Version | Literal["auto"] = "auto",
  *,
  floatx: str = "float32",
  schedule_dtype: str | None = None,
  sparse_rows: bool = False,
  state_dtype: Any = None,
  weight_decay_mask: MaskOrFn = None,
) -> Adadelta:
  """The optimizer a Keras Adadelta config describes, with that Keras version's semantics.

  Args:
    config: ``optimizer.get_config()`` or ``keras.optimizers.serialize(optimizer)`` of a tf.keras
      1.x, tf.keras 2.x or Keras 3 ``Adadelta`` (a JSON round trip is fine).
    version: ``1``, ``2``, ``3``, or ``"auto"``: a ``module`` of ``keras.optimizers.legacy`` or an
      ``lr`` key means 1.x-style keys, ``lr`` → 1; any Keras 3 key → 3; ``decay`` → 2.
    floatx: Keras' ``floatx`` when the config was written; the dtype of the variables holding
      tf.keras 1.x's ``lr``/``decay`` and Keras 3's ``learning_rate``.
    schedule_dtype: the dtype Keras computed a learning-rate schedule in. Default: float32 for
      tf.keras (``tf.convert_to_tensor`` of a Python float); for Keras 3 the default float of
      the JAX backend (float64 under ``jax_enable_x64``, else float32).
    sparse_rows, state_dtype, weight_decay_mask: options Keras configs do not carry (see
      :func:`adadelta_optax.adadelta`). ``sparse_rows=True`` reproduces TensorFlow's embedding
      updates; ``weight_decay_mask`` plays Keras 3's ``exclude_from_weight_decay``.

  Returns:
    An :class:`~adadelta_optax.Adadelta`; for Keras 3's ``loss_scale_factor``,
    ``gradient_accumulation_steps`` or ``use_ema`` it is wrapped by
    :func:`adadelta_optax.with_keras_training` (state :class:`~adadelta_optax.KerasTrainingState`).

  Raises:
    TypeError: an unknown key (named), or a value of the wrong type.
    ValueError: a value that cannot be honoured (named, with the reason).

  Example:
    >>> import adadelta_optax
    >>> tx = adadelta_optax.interop.from_keras_config(
    ...     {"lr": 1.0, "rho": 0.95, "decay": 0.0, "epsilon": None, "clipnorm": 1.0})
    >>> tx.config.epsilon, tx.config.clip_order
    (1e-07, 'norm_then_value')
  """
  inner, module = _unwrap(config)
  if version == "auto":
    version = detect_version(inner, module)
  if version not in KEYS:
    raise ValueError(f"version must be 1, 2, 3 or 'auto', got {version!r}.")
  allowed = set(KEYS[version])
  if version == 2:
    allowed.add("lr")  # OptimizerV2.from_config renames it
    if "lr" in inner and "learning_rate" in inner:
      raise TypeError("Keras config has both 'lr' and 'learning_rate'; keep one.")
  if version == 3:
    allowed |= set(_TF_KERAS_NEW_KEYS)
    if inner.get("decay"):
      raise ValueError(
        f"Keras config key 'decay' = {inner['decay']!r}: Keras 3 ignores it (with a warning). "
        "If the config comes from tf.keras 2.x, pass version=2; else remove the key."
      )
    allowed.add("decay")
  unknown = sorted(set(inner) - allowed)
  if unknown:
    raise TypeError(
      f"Unknown Keras {version} Adadelta config key(s) {unknown}; allowed keys are "
      f"{sorted(allowed)}."
    )
  name = inner.get("name")
  if name is not None and not isinstance(name, str):
    raise TypeError(f"Keras config key 'name' must be a string or None, got {name!r}.")
  _validation.keras_floatx(floatx)
  if version == 1:
    kwargs = _v1(inner, floatx)
  elif version == 2:
    kwargs = _v2(inner)
  else:
    if schedule_dtype is None:
      schedule_dtype = jnp.asarray(0.0).dtype.name
    kwargs = _v3(inner, floatx, schedule_dtype)
  training = kwargs.pop("training", {})
  tx = adadelta(
    **kwargs, sparse_rows=sparse_rows, state_dtype=state_dtype, weight_decay_mask=weight_decay_mask
  )
  return with_keras_training(tx, **training)


def _refuse(key: str, value: Any, version: int, why: str) -> None:
  raise ValueError(f"{key}={value!r} cannot be expressed in a Keras {version} config: {why}.")


def _schedule_config(lr: Any, version: int) -> Any:
  if not callable(lr):
    return _float("learning_rate", _validation_number(lr))
  if not isinstance(lr, schedules.LearningRateSchedule):
    _refuse("learning_rate", lr, version, "only adadelta_optax.schedules' Keras schedules are")
  if version == 1:
    _refuse("learning_rate", lr, version, "tf.keras 1.x has no schedules")
  if version == 2 and lr.dtype != jnp.float32:
    _refuse("learning_rate", lr, version, "tf.keras 2.x computes schedules in float32")
  return schedules.serialize(lr)


def _validation_number(value: Any) -> Any:
  if _validation.is_tracer(value):
    raise TypeError("learning_rate is a traced value: it has no number for a Keras config.")
  return value


def to_keras_config(tx: Adadelta, *, version: Version) -> dict[str, Any]:
  """``tx`` as the ``get_config()`` dict of a Keras ``Adadelta`` of ``version``.

  The result goes into that Keras' ``Adadelta.from_config`` (tf.keras 2.x:
  ``tf_keras.optimizers.legacy.Adadelta``) or back into :func:`from_keras_config`.

  Raises:
    ValueError: an option that version of Keras does not have (named, with the reason), e.g.
      coupled weight decay for Keras 3, ``global_clipnorm`` for tf.keras 1.x, ``maximize``.

  Example:
    >>> import adadelta_optax
    >>> tx = adadelta_optax.presets.keras_v1()
    >>> config = adadelta_optax.interop.to_keras_config(tx, version=1)
    >>> config
    {'lr': 1.0, 'rho': 0.95, 'decay': 0.0, 'epsilon': 1e-07}
    >>> back = adadelta_optax.interop.from_keras_config(config).config
    >>> back.learning_rate, back.rho, back.epsilon, back.clip_order  # 1.x clips the norm first
    (1.0, 0.95, 1e-07, 'norm_then_value')
  """
  if version not in KEYS:
    raise ValueError(f"version must be 1, 2 or 3, got {version!r}.")
  c, t = tx.config, tx.training_options
  _refuse_foreign_options(c, version)
  number = _numbers(c)
  if version in (1, 2):
    _refuse_for_v1_v2(c, t, number, version)
  lr = _schedule_config(c.learning_rate, version)
  if version == 1:
    return _v1_config(number, lr)
  if version == 3:
    return _v3_config(c, t, number, lr)
  config: dict[str, Any] = {"name": "Adadelta"}
  for key in ("clipnorm", "clipvalue", "global_clipnorm"):
    if number[key] is not None:
      config[key] = number[key]
  return {
    **config,
    "learning_rate": lr,
    "decay": number["decay"],
    "rho": number["rho"],
    "epsilon": number["epsilon"],
  }


def _refuse_foreign_options(c: AdadeltaConfig, version: Version) -> None:
  """Options no Keras has."""
  for key, value, off in (
    ("maximize", c.maximize, False),
    ("state_dtype", c.state_dtype, None),
    ("weight_decay_mask", c.weight_decay_mask, None),
  ):
    if value is not off and value != off:
      _refuse(key, value, version, "Keras has no such option")
  if c.sparse_rows:
    _refuse(
      "sparse_rows", True, version, "TensorFlow picks its sparse kernel from the gradient type"
    )


def _numbers(c: AdadeltaConfig) -> dict[str, float | None]:
  """The config's numbers as Python floats (``None`` where unset)."""
  number = {
    key: None if value is None else _float(key, value)
    for key, value in (
      ("rho", c.rho),
      ("epsilon", c.epsilon),
      ("decay", c.decay),
      ("clipnorm", c.clipnorm),
      ("clipvalue", c.clipvalue),
      ("global_clipnorm", c.global_clipnorm),
    )
  }
  number["weight_decay"] = _float("weight_decay", c.weight_decay)
  return number


def _training(t: TrainingOptions) -> dict[str, Any]:
  return {
    "loss_scale_factor": t.loss_scale_factor,
    "gradient_accumulation_steps": t.gradient_accumulation_steps,
    "use_ema": t.use_ema,
  }


def _refuse_for_v1_v2(
  c: AdadeltaConfig, t: TrainingOptions, number: dict[str, float | None], version: Version
) -> None:
  """What tf.keras 1.x and 2.x cannot hold: Keras 3's training options, weight decay, the other
  clip order."""
  for key, value in _training(t).items():
    if value:
      _refuse(key, value, version, "only Keras 3 has it")
  if number["weight_decay"]:
    _refuse("weight_decay", c.weight_decay, version, "tf.keras 1.x/2.x have no weight decay")
  both_clips = c.clipnorm is not None and c.clipvalue is not None
  wanted = "norm_then_value" if version == 1 else "value_then_norm"
  if both_clips and c.clip_order != wanted:
    _refuse("clip_order", c.clip_order, version, f"with both clips it applies {wanted}")


def _v1_config(number: dict[str, float | None], lr: Any) -> dict[str, Any]:
  if number["global_clipnorm"] is not None:
    _refuse("global_clipnorm", number["global_clipnorm"], 1, "tf.keras 1.x has no global clip")
  config: dict[str, Any] = {
    k: number[k] for k in ("clipnorm", "clipvalue") if number[k] is not None
  }
  return {
    **config,
    "lr": lr,
    "rho": number["rho"],
    "decay": number["decay"],
    "epsilon": number["epsilon"],
  }


def _v3_config(
  c: AdadeltaConfig, t: TrainingOptions, number: dict[str, float | None], lr: Any
) -> dict[str, Any]:
  if number["decay"]:
    _refuse("decay", number["decay"], 3, "Keras 3 has no legacy decay (use a schedule)")
  if number["weight_decay"] and not c.decoupled_weight_decay:
    _refuse("weight_decay", number["weight_decay"], 3, "Keras 3's weight decay is decoupled")
  clips = [k for k in ("clipnorm", "global_clipnorm", "clipvalue") if number[k] is not None]
  if len(clips) > 1:
    _refuse(clips[1], number[clips[1]], 3, f"Keras 3 allows one clip option, {clips[0]} is set")
  training = _training(t)
  return {
    "name": "adadelta",
    "learning_rate": lr,
    "weight_decay": number["weight_decay"] or None,
    "clipnorm": number["clipnorm"],
    "global_clipnorm": number["global_clipnorm"],
    "clipvalue": number["clipvalue"],
    "use_ema": bool(training["use_ema"]),
    "ema_momentum": _float("ema_momentum", t.ema_momentum),
    "ema_overwrite_frequency": t.ema_overwrite_frequency,
    "loss_scale_factor": training["loss_scale_factor"],
    "gradient_accumulation_steps": training["gradient_accumulation_steps"],
    "rho": number["rho"],
    "epsilon": number["epsilon"],
  }
