"""The configuration: AdadeltaConfig / TrainingOptions (typed, checked once, frozen, the one
source every layer reads: the step, get_config, Keras and torch interop), and get_config /
from_config (JSON round trips, unknown keys, unserializable values).

Keras' own configs (from_keras_config / to_keras_config) are in test_interop_keras_config.py."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax
from adadelta_optax import AdadeltaConfig, TrainingOptions
from adadelta_optax.core import _config


def _same_steps(a, b, steps=20):
  params = {"w": jnp.linspace(-1.0, 1.0, 5), "b": jnp.float64(0.3)}
  sa, sb = a.init(params), b.init(params)
  pa = pb = params
  for t in range(steps):
    g = {"w": jnp.sin(jnp.arange(5.0) + t), "b": jnp.float64(np.cos(t))}
    ua, sa = a.update(g, sa, pa)
    ub, sb = b.update(g, sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  np.testing.assert_array_equal(pa["w"], pb["w"])
  np.testing.assert_array_equal(pa["b"], pb["b"])


KWARGS = [
  {},
  dict(learning_rate=0.25, rho=0.9, epsilon=1e-6, decay=0.01),
  dict(clipnorm=0.5, clipvalue=0.1),
  dict(global_clipnorm=2.0, weight_decay=0.01, decoupled_weight_decay=True, maximize=True),
  dict(weight_decay=0.1, weight_decay_mask={"w": True, "b": False}, state_dtype="float32"),
  dict(learning_rate=np.float32(0.5), rho=jnp.array(0.8)),
  dict(clipnorm=0.5, clipvalue=0.1, clip_order="norm_then_value", sparse_rows=True),
  dict(
    learning_rate=adadelta_optax.schedules.CosineDecay(1.0, 10, warmup_target=2.0, warmup_steps=3)
  ),
  dict(
    weight_decay=0.01,
    decoupled_weight_decay=True,
    keras_training=dict(
      loss_scale_factor=4.0,
      gradient_accumulation_steps=2,
      use_ema=True,
      ema_momentum=0.9,
      ema_overwrite_frequency=3,
    ),
  ),
  dict(
    state_layout="flat",
    clipnorm=0.5,
    weight_decay=0.1,
    weight_decay_mask={"w": True, "b": False},
    keras_training=dict(gradient_accumulation_steps=2, use_ema=True),
  ),
]


def _build(kwargs):
  kwargs = dict(kwargs)
  training = kwargs.pop("keras_training", {})
  return adadelta_optax.with_keras_training(adadelta_optax.adadelta(**kwargs), **training)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_json_round_trip_same_optimizer(kwargs):
  tx = _build(kwargs)
  config = tx.get_config()
  assert tuple(config) == _config.CONFIG_KEYS
  restored = adadelta_optax.Adadelta.from_config(json.loads(json.dumps(config)))
  assert restored.get_config() == config
  _same_steps(tx, restored)


def test_config_values():
  config = adadelta_optax.presets.keras3(weight_decay=0.004, state_dtype=jnp.bfloat16).get_config()
  assert config == {
    "learning_rate": 0.001,
    "rho": 0.95,
    "epsilon": 1e-7,
    "decay": 0.0,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "clip_order": "value_then_norm",
    "weight_decay": 0.004,
    "decoupled_weight_decay": True,
    "weight_decay_mask": None,
    "maximize": False,
    "state_dtype": "bfloat16",
    "sparse_rows": False,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "implementation": "auto",
    "state_layout": "tree",
  }


def test_unknown_key_is_an_error():
  config = adadelta_optax.adadelta().get_config()
  with pytest.raises(TypeError, match=r"Unknown Adadelta config key\(s\) \['lr'\]"):
    adadelta_optax.Adadelta.from_config({**config, "lr": 1.0})


def test_partial_config_uses_defaults_and_validates():
  assert adadelta_optax.Adadelta.from_config({"rho": 0.5}).hyperparams["rho"] == 0.5
  with pytest.raises(ValueError, match="epsilon"):
    adadelta_optax.Adadelta.from_config({"epsilon": 0.0})


def test_optax_schedule_cannot_be_serialized():
  tx = adadelta_optax.adadelta(learning_rate=optax.constant_schedule(0.1))
  with pytest.raises(TypeError, match="cannot be serialized by get_config"):
    tx.get_config()


def test_callable_or_tuple_mask_cannot_be_serialized():
  for mask in (lambda p: p, ({"w": True},)):
    with pytest.raises(TypeError, match="weight_decay_mask"):
      adadelta_optax.adadelta(weight_decay=0.1, weight_decay_mask=mask).get_config()


def test_registered_schedule_round_trip():
  @adadelta_optax.register_schedule
  class HalvingSchedule:
    def __init__(self, initial: float, every: int) -> None:
      self.initial, self.every = initial, every

    def __call__(self, count):
      return self.initial * 0.5 ** (count // self.every)

    def get_config(self):
      return {"initial": self.initial, "every": self.every}

    @classmethod
    def from_config(cls, config):
      return cls(**config)

  tx = adadelta_optax.adadelta(learning_rate=HalvingSchedule(1.0, 3))
  config = json.loads(json.dumps(tx.get_config()))
  assert config["learning_rate"] == {
    "class_name": "HalvingSchedule",
    "config": {"initial": 1.0, "every": 3},
  }
  restored = adadelta_optax.Adadelta.from_config(config)
  _same_steps(tx, restored)
  with pytest.raises(ValueError, match="registered"):
    adadelta_optax.Adadelta.from_config({"learning_rate": {"class_name": "Nope", "config": {}}})


def test_register_schedule_requires_methods():
  with pytest.raises(TypeError, match="get_config"):
    adadelta_optax.register_schedule(type("Bare", (), {}))


def test_hyperparams_of_foreign_adadelta():
  bare = adadelta_optax.Adadelta(optax.sgd(0.1).init, optax.sgd(0.1).update)
  with pytest.raises(TypeError, match="not built by adadelta_optax.adadelta"):
    bare.get_config()


# --- AdadeltaConfig and TrainingOptions ------------------------------------------------------


def test_config_is_frozen_and_typed():
  config = AdadeltaConfig(rho=0.9, state_dtype="float32", maximize=np.bool_(True))
  assert config.state_dtype == jnp.dtype("float32") and isinstance(config.state_dtype, np.dtype)
  assert config.maximize is True  # a NumPy bool is stored as a Python bool
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.rho = 0.5  # type: ignore[misc]
  with pytest.raises(TypeError):
    AdadeltaConfig(0.5)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
  ("changes", "error", "match"),
  [
    (dict(rho=1.5), ValueError, r"rho must be a finite number in \[0, 1\], got 1.5"),
    (dict(epsilon=0.0), ValueError, r"epsilon must be a finite number > 0, got 0.0"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), ValueError, r"cannot both be set"),
    (dict(implementation="gpu"), ValueError, r"implementation must be one of"),
    (dict(state_dtype="int32"), TypeError, r"state_dtype must be None or a floating dtype"),
    (dict(maximize="False"), TypeError, r"maximize"),
  ],
)
def test_replace_checks_again(changes, error, match):
  """dataclasses.replace makes a checked copy: no invalid config can exist."""
  with pytest.raises(error, match=match):
    dataclasses.replace(AdadeltaConfig(), **changes)
  with pytest.raises(error, match=match):
    adadelta_optax.adadelta(**changes)


def test_training_options_are_checked():
  with pytest.raises(ValueError, match=r"gradient_accumulation_steps must be None or an integer"):
    TrainingOptions(gradient_accumulation_steps=1)
  with pytest.raises(ValueError, match=r"needs use_ema=True"):
    TrainingOptions(ema_overwrite_frequency=3)
  assert not TrainingOptions().enabled and TrainingOptions(use_ema=True).enabled


def test_adadelta_holds_the_config_it_was_given():
  config = AdadeltaConfig(learning_rate=0.5, rho=0.9, clipnorm=2.0, weight_decay=0.01)
  tx = adadelta_optax.from_adadelta_config(config)
  assert tx.config is config
  assert adadelta_optax.adadelta(**dataclasses.asdict(config)).get_config() == tx.get_config()
  assert tx.training_options.enabled is False
  assert tx.hyperparams == dataclasses.asdict(config)
  assert adadelta_optax.adadelta(**tx.hyperparams).get_config() == tx.get_config()
  with pytest.raises(TypeError, match="must be an adadelta_optax.AdadeltaConfig"):
    adadelta_optax.from_adadelta_config({"rho": 0.9})  # type: ignore[arg-type]


def test_wrapped_optimizer_keeps_config_and_training_options():
  """with_keras_training: the user's config (schedule as given) and the training options."""
  schedule = optax.linear_schedule(1.0, 0.1, 10)
  tx = adadelta_optax.with_keras_training(
    adadelta_optax.adadelta(schedule, rho=0.9), gradient_accumulation_steps=2, use_ema=True
  )
  assert tx.config.learning_rate is schedule and tx.config.rho == 0.9
  assert tx.training_options.gradient_accumulation_steps == 2
  assert tx.hyperparams == {
    **dataclasses.asdict(tx.config),
    **dataclasses.asdict(tx.training_options),
  }
  assert tx.training_options.use_ema is True
  with pytest.raises(TypeError, match="already has Keras training options"):
    adadelta_optax.with_keras_training(tx, use_ema=True)


def test_every_config_field_round_trips_through_get_config():
  config = AdadeltaConfig(
    learning_rate=0.25,
    rho=0.8,
    epsilon=1e-5,
    decay=0.01,
    clipvalue=0.5,
    clipnorm=2.0,
    clip_order="norm_then_value",
    weight_decay=0.1,
    decoupled_weight_decay=True,
    weight_decay_mask={"w": True, "b": False},
    maximize=True,
    state_dtype="float32",
    sparse_rows=True,
    implementation="fused",
  )
  tx = adadelta_optax.with_keras_training(
    adadelta_optax.from_adadelta_config(config), loss_scale_factor=8.0
  )
  back = adadelta_optax.Adadelta.from_config(tx.get_config())
  assert dataclasses.asdict(back.config) == dataclasses.asdict(config)
  assert dataclasses.asdict(back.training_options) == dataclasses.asdict(tx.training_options)


def test_a_hyperparameter_reaches_the_arithmetic():
  """epsilon from the config is the epsilon of the step: first update of a zero-state leaf is
  -lr * sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g, for each path."""
  g = jnp.asarray([0.3, -2.0], jnp.float64)
  for implementation in ("kernel", "fused", "xla"):
    config = AdadeltaConfig(epsilon=1e-3, rho=0.9, implementation=implementation)
    tx = adadelta_optax.from_adadelta_config(config)
    updates, _ = jax.jit(tx.update)(g, tx.init(g))
    g_np = np.asarray(g)
    want = -np.sqrt(1e-3) / np.sqrt(0.1 * g_np**2 + 1e-3) * g_np
    np.testing.assert_allclose(updates, want, rtol=4e-16, err_msg=implementation)
