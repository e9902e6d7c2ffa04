"""from_keras_config / to_keras_config: every key of every version, and every refusal.

The real frameworks' configs are exercised in test_interop_*.py; here each key's meaning and each
bad config is pinned down without importing them.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import optax
import pytest

import adadelta_optax
from adadelta_optax import schedules

F32 = lambda x: float(np.float32(x))  # noqa: E731

# (version, config, expected hyperparams subset)
KEY_CASES = [
  (1, {"lr": 0.1}, {"learning_rate": F32(0.1), "clip_order": "norm_then_value"}),
  (1, {"lr": 1.0, "rho": 0.9}, {"rho": 0.9}),
  (1, {"lr": 1.0, "decay": 0.1}, {"decay": F32(0.1)}),
  (1, {"lr": 1.0, "epsilon": None}, {"epsilon": 1e-7}),
  (1, {"lr": 1.0, "epsilon": 1e-5}, {"epsilon": 1e-5}),
  (1, {"lr": 1.0, "clipnorm": 2.0}, {"clipnorm": 2.0, "clipvalue": None}),
  (1, {"lr": 1.0, "clipvalue": 0.5}, {"clipvalue": 0.5}),
  (2, {"name": "x", "decay": 0.0}, {"learning_rate": F32(0.001)}),
  (2, {"learning_rate": 0.3, "decay": 0.0}, {"learning_rate": F32(0.3)}),
  (2, {"learning_rate": 1.0, "decay": 0.05}, {"decay": F32(0.05)}),
  (2, {"learning_rate": 1.0, "decay": 0.0, "rho": 0.9}, {"rho": F32(0.9)}),
  (2, {"learning_rate": 1.0, "decay": 0.0, "epsilon": 1e-5}, {"epsilon": 1e-5}),
  (2, {"learning_rate": 1.0, "decay": 0.0, "clipnorm": 1.0}, {"clipnorm": 1.0}),
  (2, {"learning_rate": 1.0, "decay": 0.0, "clipvalue": 0.1}, {"clipvalue": 0.1}),
  (2, {"learning_rate": 1.0, "decay": 0.0, "global_clipnorm": 3.0}, {"global_clipnorm": 3.0}),
  (2, {"lr": 0.5, "decay": 0.0}, {"learning_rate": 0.5}),  # OptimizerV2 renames lr
  (3, {"name": None, "learning_rate": 0.3}, {"learning_rate": F32(0.3)}),
  (3, {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}, {"rho": 0.9, "epsilon": 1e-6}),
  (3, {"weight_decay": 0.01}, {"weight_decay": 0.01, "decoupled_weight_decay": True}),
  (3, {"weight_decay": None}, {"weight_decay": 0.0}),
  (3, {"clipnorm": 1.0}, {"clipnorm": 1.0}),
  (3, {"global_clipnorm": 1.0}, {"global_clipnorm": 1.0}),
  (3, {"clipvalue": 0.1}, {"clipvalue": 0.1}),
  (3, {"clipnorm": 0.0}, {"clipnorm": None}),  # Keras 3 clips only above 0
  (3, {"loss_scale_factor": 64.0}, {"loss_scale_factor": 64.0}),
  (3, {"gradient_accumulation_steps": 4}, {"gradient_accumulation_steps": 4}),
  (3, {"gradient_accumulation_steps": 0}, {"gradient_accumulation_steps": None}),
  (3, {"use_ema": True, "ema_momentum": 0.9}, {"use_ema": True, "ema_momentum": 0.9}),
  (3, {"use_ema": True, "ema_overwrite_frequency": 5}, {"ema_overwrite_frequency": 5}),
  (3, {"use_ema": False, "ema_momentum": 0.5, "ema_overwrite_frequency": 3}, {"use_ema": False}),
  (3, {"jit_compile": True, "is_legacy_optimizer": False}, {"learning_rate": F32(0.001)}),
  (3, {"decay": 0.0, "learning_rate": 1.0}, {"decay": 0.0}),
]


@pytest.mark.parametrize(("version", "config", "expected"), KEY_CASES)
def test_each_key(version, config, expected):
  tx = adadelta_optax.interop.from_keras_config(config, version)
  got = tx.get_config()
  for key, value in expected.items():
    assert got[key] == value, key


def test_auto_detection_and_serialized_forms():
  v1 = {"lr": 1.0, "rho": 0.95, "decay": 0.0, "epsilon": None}
  assert adadelta_optax.interop.from_keras_config(v1).hyperparams["clip_order"] == "norm_then_value"
  v2 = {"name": "Adadelta", "learning_rate": 1.0, "decay": 0.0, "rho": 0.95, "epsilon": 1e-7}
  assert adadelta_optax.interop.from_keras_config(v2).hyperparams["rho"] == F32(0.95)
  legacy = {"module": "keras.optimizers.legacy", "class_name": "Adadelta", "config": v2}
  assert adadelta_optax.interop.from_keras_config(legacy).hyperparams["rho"] == F32(0.95)
  v3 = {"class_name": "Adadelta", "module": "keras.optimizers", "registered_name": None}
  v3["config"] = {"learning_rate": 1.0, "rho": 0.95, "use_ema": False}
  assert adadelta_optax.interop.from_keras_config(v3).hyperparams["decoupled_weight_decay"]
  old_wrapper = {"class_name": "Adadelta", "config": {"lr": 2.0}}
  assert adadelta_optax.interop.from_keras_config(old_wrapper).hyperparams["learning_rate"] == 2.0


@pytest.mark.parametrize("epsilon", [0, 0.0, None])
def test_v2_falsy_epsilon_becomes_1e7_with_a_warning(epsilon):
  config = {"learning_rate": 1.0, "decay": 0.0, "epsilon": epsilon}
  with pytest.warns(UserWarning, match="falsy"):
    tx = adadelta_optax.interop.from_keras_config(config, 2)
  assert tx.hyperparams["epsilon"] == 1e-7


@pytest.mark.parametrize("legacy_format", [False, True])
def test_schedule_learning_rate(legacy_format):
  schedule = schedules.PolynomialDecay(1.0, 10, power=2.0, cycle=True)
  serialized = schedules.serialize(schedule, legacy_format=legacy_format)
  tx = adadelta_optax.interop.from_keras_config({"learning_rate": serialized, "decay": 0.0})
  assert tx.hyperparams["learning_rate"] == schedule
  assert adadelta_optax.interop.to_keras_config(tx, version=2)[
    "learning_rate"
  ] == schedules.serialize(schedule)
  config = json.loads(json.dumps(tx.get_config()))
  assert adadelta_optax.Adadelta.from_config(config).hyperparams["learning_rate"] == schedule


def test_keras3_schedule_dtype_follows_jax_default():
  serialized = schedules.serialize(schedules.ExponentialDecay(1.0, 2, 0.5))
  tx = adadelta_optax.interop.from_keras_config({"learning_rate": serialized, "use_ema": False})
  assert tx.hyperparams["learning_rate"].dtype == np.float64  # the tests run with x64
  tx = adadelta_optax.interop.from_keras_config(
    {"learning_rate": serialized, "use_ema": False}, schedule_dtype="float32"
  )
  assert tx.hyperparams["learning_rate"].dtype == np.float32


def test_options_keras_does_not_carry():
  tx = adadelta_optax.interop.from_keras_config(
    {"learning_rate": 1.0, "decay": 0.0},
    sparse_rows=True,
    state_dtype="float32",
    weight_decay_mask={"w": True},
  )
  h = tx.hyperparams
  assert (h["sparse_rows"], h["state_dtype"], h["weight_decay_mask"]) == (
    True,
    "float32",
    {"w": True},
  )


def _schedule(**entries):
  """A serialized Keras ExponentialDecay with some entries replaced."""
  config = dict(
    initial_learning_rate=0.5, decay_steps=10, decay_rate=0.9, staircase=False, name="Exp"
  )
  return {
    "module": "keras.optimizers.schedules",
    "class_name": "ExponentialDecay",
    "config": {**config, **entries},
    "registered_name": None,
  }


BAD_CONFIGS = [
  (1, {"lr": 1.0, "momentum": 0.9}, TypeError, r"Unknown Keras 1 .*\['momentum'\]"),
  (1, {"lr": 1.0, "global_clipnorm": 1.0}, TypeError, r"\['global_clipnorm'\]"),
  (1, {"lr": 1.0, "clipnorm": 0.0}, ValueError, "'clipnorm' = 0.0 cannot be honoured"),
  (1, {"lr": 1.0, "clipvalue": 0}, ValueError, "'clipvalue' = 0 cannot be honoured"),
  (1, {"lr": {"class_name": "ExponentialDecay", "config": {}}}, TypeError, "ExponentialDecay"),
  (1, {"lr": "fast"}, TypeError, "'lr' must be a number"),
  (1, {"lr": 1.0, "rho": 1.5}, ValueError, "rho must be"),
  (1, {"lr": 1.0, "epsilon": 0.0}, ValueError, "epsilon must be"),
  (2, {"learning_rate": 1.0, "weight_decay": 0.1}, TypeError, r"\['weight_decay'\]"),
  (2, {"learning_rate": 1.0, "lr": 1.0}, TypeError, "both 'lr' and 'learning_rate'"),
  (2, {"learning_rate": 1.0, "clipvalue": 0.0}, ValueError, "'clipvalue' = 0.0 cannot"),
  (2, {"learning_rate": 1.0, "clipnorm": 1.0, "global_clipnorm": 1.0}, ValueError, "clipnorm"),
  (2, {"learning_rate": 1.0, "decay": -1.0}, ValueError, "decay must be"),
  (2, {"learning_rate": 1.0, "name": 3}, TypeError, "'name' must be a string"),
  (
    2,
    {"learning_rate": {"class_name": "MyDecay", "config": {}}},
    ValueError,
    "learning_rate: schedule 'MyDecay'",
  ),
  (
    2,
    {"learning_rate": {"class_name": "ExponentialDecay", "config": {"bogus": 1}}},
    TypeError,
    r"Unknown ExponentialDecay config key\(s\) \['bogus'\]",
  ),
  (
    2,
    {"learning_rate": {"module": "my.mod", "class_name": "ExponentialDecay", "config": {}}},
    ValueError,
    "module 'my.mod'",
  ),
  (3, {"clipnorm": 1.0, "clipvalue": 1.0}, ValueError, r"\['clipnorm', 'clipvalue'\].*only one"),
  (3, {"decay": 0.1}, ValueError, "'decay' = 0.1: Keras 3 ignores it"),
  (3, {"epsilon": 0.0}, ValueError, "epsilon must be"),
  (3, {"is_legacy_optimizer": True}, ValueError, "'is_legacy_optimizer' is True"),
  (3, {"jit_compile": False, "use_ema": True}, ValueError, "'use_ema' = True in a tf.keras 2.11"),
  (3, {"gradient_accumulation_steps": 1}, ValueError, "gradient_accumulation_steps must be"),
  (3, {"use_ema": True, "ema_overwrite_frequency": 0}, ValueError, "ema_overwrite_frequency"),
  (3, {"use_ema": True, "ema_momentum": 1.5}, ValueError, "ema_momentum must be"),
  (3, {"loss_scale_factor": -2.0}, ValueError, "loss_scale_factor must be"),
  (3, {"learning_rate": 1.0, "amsgrad": True}, TypeError, r"\['amsgrad'\]"),
  ("auto", {"rho": 0.9}, ValueError, "cannot tell which Keras"),
  (4, {"lr": 1.0}, ValueError, "version must be 1, 2, 3 or 'auto'"),
  ("auto", [("lr", 1.0)], TypeError, "config must be a dict"),
  ("auto", {"class_name": "Adam", "config": {}}, ValueError, "class_name='Adam'"),
  ("auto", {"class_name": "Adadelta", "config": None}, TypeError, "'config' must be a dict"),
  ("auto", {"class_name": "Adadelta", "config": {}, "extra": 1}, TypeError, r"\['extra'\]"),
  # Types, not only values: bytes, NumPy bools, huge ints, containers.
  (2, {"learning_rate": b"0.5"}, TypeError, "'learning_rate' must be a number, got b'0.5'"),
  (2, {"rho": np.bool_(True)}, TypeError, "'rho' must be a number"),
  (3, {"clipvalue": b"1"}, TypeError, "'clipvalue' must be a number"),
  (1, {"lr": 10**400}, ValueError, "'lr' = 1000.* beyond float64's range"),
  (2, {"learning_rate": [0.5]}, TypeError, "'learning_rate' must be a number"),
  (2, {"rho": np.array([0.9, 0.95])}, TypeError, "'rho' must be a number"),
  (
    "auto",
    {
      "module": "keras.optimizers",
      "class_name": "Adadelta",
      "config": {"learning_rate": 0.5},
      "registered_name": "evilpkg>EvilAdadelta",
    },
    ValueError,
    "registered_name 'evilpkg>EvilAdadelta'",
  ),
  *[
    (2, {"learning_rate": _schedule(**entry)}, error, match)
    for entry, error, match in [
      (dict(initial_learning_rate=float("nan")), ValueError, "initial_learning_rate must be"),
      (dict(initial_learning_rate=-1.0), ValueError, "initial_learning_rate must be"),
      (dict(initial_learning_rate="abc"), TypeError, "initial_learning_rate must be a real"),
      (dict(initial_learning_rate={"a": 1}), TypeError, "initial_learning_rate must be a real"),
      (dict(initial_learning_rate=10**400), TypeError, "initial_learning_rate must be a real"),
      (dict(decay_rate=float("nan")), ValueError, "decay_rate must be a finite number"),
      (dict(staircase="False"), TypeError, "staircase must be a bool, got 'False'"),
    ]
  ],
]


@pytest.mark.parametrize(("version", "config", "error", "match"), BAD_CONFIGS)
def test_bad_config(version, config, error, match):
  with pytest.raises(error, match=match):
    adadelta_optax.interop.from_keras_config(config, version)


@pytest.mark.parametrize(
  ("version", "kwargs"),
  [
    (
      1,
      dict(
        learning_rate=0.5,
        rho=0.9,
        epsilon=1e-6,
        decay=0.125,
        clipnorm=1.0,
        clipvalue=0.5,
        clip_order="norm_then_value",
      ),
    ),
    (
      2,
      dict(
        learning_rate=schedules.CosineDecay(1.0, 10), decay=0.125, global_clipnorm=2.0, rho=0.75
      ),
    ),
    (2, dict(learning_rate=0.25, clipnorm=1.0, clipvalue=0.5, rho=0.75)),
    (3, dict(learning_rate=0.25, weight_decay=0.01, decoupled_weight_decay=True, clipvalue=0.5)),
  ],
)
def test_round_trip(version, kwargs):
  """Exact for values that Keras' float32 variables hold exactly (others are rounded in)."""
  tx = adadelta_optax.adadelta(**kwargs)
  config = json.loads(json.dumps(adadelta_optax.interop.to_keras_config(tx, version=version)))
  back = adadelta_optax.interop.from_keras_config(config, version, schedule_dtype="float32")
  assert back.get_config() == tx.get_config()


def test_round_trip_keras3_training_options():
  tx = adadelta_optax.with_keras_training(
    adadelta_optax.presets.keras3(learning_rate=0.5),
    loss_scale_factor=8.0,
    gradient_accumulation_steps=3,
    use_ema=True,
    ema_momentum=0.9,
    ema_overwrite_frequency=2,
  )
  config = adadelta_optax.interop.to_keras_config(tx, version=3)
  assert config["gradient_accumulation_steps"] == 3 and config["use_ema"] is True
  assert adadelta_optax.interop.from_keras_config(config).get_config() == tx.get_config()


CANNOT_EXPRESS = [
  (1, dict(maximize=True), "maximize=True"),
  (2, dict(state_dtype="float32"), "state_dtype"),
  (3, dict(weight_decay=0.1, decoupled_weight_decay=True, weight_decay_mask={"w": True}), "mask"),
  (2, dict(sparse_rows=True), "sparse_rows"),
  (1, dict(global_clipnorm=1.0), "global_clipnorm"),
  (1, dict(learning_rate=schedules.ExponentialDecay(1.0, 2, 0.5)), "no schedules"),
  (2, dict(weight_decay=0.1), "weight_decay"),
  (1, dict(clipnorm=1.0, clipvalue=1.0), "clip_order='value_then_norm'"),
  (2, dict(clipnorm=1.0, clipvalue=1.0, clip_order="norm_then_value"), "clip_order"),
  (3, dict(weight_decay=0.1), "decoupled"),
  (3, dict(decay=0.1), "legacy decay"),
  (3, dict(clipnorm=1.0, clipvalue=1.0), "one clip option"),
  (2, dict(learning_rate=optax.constant_schedule(1.0)), "only adadelta_optax.schedules"),
  (2, dict(learning_rate=schedules.ExponentialDecay(1.0, 2, 0.5, dtype="float64")), "float32"),
]


@pytest.mark.parametrize(("version", "kwargs", "match"), CANNOT_EXPRESS)
def test_to_keras_config_refuses(version, kwargs, match):
  with pytest.raises(ValueError, match=match):
    adadelta_optax.interop.to_keras_config(adadelta_optax.adadelta(**kwargs), version=version)


def test_to_keras_config_refuses_training_options_before_keras3():
  tx = adadelta_optax.with_keras_training(adadelta_optax.adadelta(), use_ema=True)
  with pytest.raises(ValueError, match="use_ema=True .* only Keras 3"):
    adadelta_optax.interop.to_keras_config(tx, version=2)
  with pytest.raises(ValueError, match="version must be 1, 2 or 3"):
    adadelta_optax.interop.to_keras_config(tx, version="3")


def test_no_warning_for_a_clean_v2_config():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    # Where the kernel cannot run, the first adadelta() of a process says so once: not a config
    # warning.
    warnings.simplefilter("ignore", adadelta_optax.KernelUnavailableWarning)
    adadelta_optax.interop.from_keras_config({"learning_rate": 1.0, "decay": 0.0, "epsilon": 1e-7})
