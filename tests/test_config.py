"""get_config / from_config: JSON round trips, unknown keys, unserializable values."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax
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
