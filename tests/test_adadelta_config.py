"""The typed configuration: AdadeltaConfig / TrainingOptions, checked once, frozen, and the one
source every layer reads (the step, get_config, Keras and torch interop)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax
from adadelta_optax import AdadeltaConfig, TrainingOptions


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
