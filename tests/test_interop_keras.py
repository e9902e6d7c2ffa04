"""Resuming Keras 3 (JAX backend) training: config, schedules and optimizer variables.

Each test trains the MLP of ``migration.py`` as a real ``keras.Sequential`` k steps with
``keras.optimizers.Adadelta`` (jitted ``optimizer.stateless_apply``, as Keras' JAX trainer), carries
``keras.optimizers.serialize`` (through JSON) and ``optimizer.variables`` over with
:func:`from_keras_config` and :func:`set_keras3_variables`, continues m steps in both and
requires the same params and optimizer variables (float64: 1e-12, float32: 1e-6 relative).

Keras 3 computes learning-rate schedules in the JAX default float (float64 under
``jax_enable_x64``, with ``cos`` forced to float32 by Keras' dtype rules); the schedule cases
therefore run as a float32 Keras runs normally, with ``jax_enable_x64`` off.
"""

from __future__ import annotations

import json
import os

os.environ["KERAS_BACKEND"] = "jax"  # also set by conftest.py, before TensorFlow can import keras

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import adadelta_optax  # noqa: E402

from helpers import enable_x64  # noqa: E402
from migration import (  # noqa: E402
  SCHEDULE_CASES,
  assert_parity,
  data,
  init_params,
  jax_loss,
  run_jax,
)

pytestmark = pytest.mark.xdist_group("keras")
assert keras.backend.backend() == "jax", "keras was imported with another backend first"

K_STEPS, M_STEPS = 7, 8
SCHEDULES = keras.optimizers.schedules

CASES = {
  "lr1": dict(learning_rate=1.0, rho=0.9, epsilon=1e-6),
  "weight_decay": dict(learning_rate=1.0, weight_decay=0.05),
  "clipnorm": dict(learning_rate=1.0, clipnorm=0.05),
  "clipvalue": dict(learning_rate=1.0, clipvalue=0.01),
  "global_clipnorm": dict(learning_rate=1.0, global_clipnorm=0.05),
  "loss_scale": dict(learning_rate=1.0, loss_scale_factor=128.0),
  "accumulation": dict(learning_rate=1.0, gradient_accumulation_steps=3),
  "accumulation_schedule": dict(
    learning_rate=SCHEDULES.PiecewiseConstantDecay([4, 9], [1.0, 0.5, 0.25]),
    gradient_accumulation_steps=2,
  ),
  "ema": dict(learning_rate=1.0, use_ema=True, ema_momentum=0.9),
  "ema_overwrite": dict(
    learning_rate=1.0, weight_decay=0.01, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=3
  ),
  "ema_accumulation": dict(
    learning_rate=1.0,
    use_ema=True,
    ema_momentum=0.8,
    ema_overwrite_frequency=2,
    gradient_accumulation_steps=2,
  ),
}

# float32 with jax_enable_x64 off: Keras' usual setup, where its schedules compute in float32.
CASES_F32 = {
  "lr1": dict(learning_rate=1.0),
  "exponential": dict(learning_rate=SCHEDULES.ExponentialDecay(1.0, 3, 0.7, staircase=True)),
  "inverse_time": dict(learning_rate=SCHEDULES.InverseTimeDecay(1.0, 2, 0.5)),
  "piecewise": dict(learning_rate=SCHEDULES.PiecewiseConstantDecay([4, 9], [1.0, 0.5, 0.1])),
  "polynomial": dict(learning_rate=SCHEDULES.PolynomialDecay(1.0, 5, 0.1, power=2.0, cycle=True)),
  # (With warmup Keras 3 evaluates CosineDecay inside lax.cond, whose compiled float32 cos may
  # differ from an eager one by one ulp: see test_schedules. The warmup runs in the TF tests.)
  "cosine": dict(learning_rate=SCHEDULES.CosineDecay(1.0, 10, alpha=0.1)),
  "cosine_restarts": dict(learning_rate=SCHEDULES.CosineDecayRestarts(1.0, 3, m_mul=0.8)),
  "accumulation_cosine": dict(
    learning_rate=SCHEDULES.CosineDecay(1.0, 12), gradient_accumulation_steps=3, use_ema=True
  ),
}


def _model(params, dtype):
  model = keras.Sequential(
    [
      keras.Input((3,), dtype=dtype),
      keras.layers.Dense(4, activation="tanh", dtype=dtype),
      keras.layers.Dense(2, dtype=dtype),
    ]
  )
  model.set_weights([np.asarray(p) for p in params])
  return model


def _keras_train(model, opt, steps, x, y):
  """``steps`` jitted ``opt.stateless_apply`` steps, as Keras' JAX trainer runs them."""
  # The gradients come from the shared JAX loss on the Keras variables: Keras' own float64
  # forward pass differs from it by ~1e-7 (Keras' dtype rules compute tanh in float32), which
  # has nothing to do with the optimizer under test.
  opt.build(model.trainable_variables)

  @jax.jit
  def step(trainable, optimizer_variables):
    grads = jax.grad(jax_loss)(trainable, x, y)
    return opt.stateless_apply(optimizer_variables, grads, trainable)

  trainable = [v.value for v in model.trainable_variables]
  optimizer_variables = [v.value for v in opt.variables]
  for _ in range(steps):
    trainable, optimizer_variables = step(trainable, optimizer_variables)
  for variable, value in zip(model.trainable_variables, trainable, strict=True):
    variable.assign(value)
  for variable, value in zip(opt.variables, optimizer_variables, strict=True):
    variable.assign(value)


def _resume(kwargs, dtype, case):
  x, y = data(dtype)
  model = _model(init_params(dtype), dtype)
  opt = keras.optimizers.Adadelta(**kwargs)
  _keras_train(model, opt, K_STEPS, x, y)

  tx = adadelta_optax.interop.from_keras_config(
    json.loads(json.dumps(keras.optimizers.serialize(opt)))
  )
  unnamed = lambda config: {k: v for k, v in config.items() if k != "name"}  # noqa: E731
  assert unnamed(adadelta_optax.interop.to_keras_config(tx, version=3)) == unnamed(opt.get_config())
  params = [v.numpy() for v in model.trainable_variables]
  state = adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), opt.variables)

  _keras_train(model, opt, M_STEPS, x, y)
  # jit only in float64: a jitted float32 cos may fuse differently from Keras' by one ulp.
  params, state = run_jax(tx, params, state, M_STEPS, x, y, jit=dtype == np.float64)
  key = ("Keras 3", f"{case} {np.dtype(dtype).name}")
  assert_parity(params, [v.numpy() for v in model.trainable_variables], "params", key)
  assert_parity(
    adadelta_optax.interop.keras3_variables(tx, state),
    [v.numpy() for v in opt.variables],
    "optimizer variables",
    key,
  )


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_keras3_float64(case):
  _resume(CASES[case], np.float64, case)


@pytest.mark.parametrize("case", sorted(CASES_F32))
def test_resume_keras3_float32(case):
  with enable_x64(False):
    _resume(CASES_F32[case], np.float32, case)


@pytest.mark.parametrize("case", ["weight_decay", "ema_accumulation"])
def test_jax_state_back_into_keras3(case):
  """JAX → Keras: ``keras3_variables(tx, state)`` into a fresh Keras optimizer."""
  x, y = data()
  tx = adadelta_optax.interop.from_keras_config(
    keras.optimizers.Adadelta(**CASES[case]).get_config()
  )
  params, state = run_jax(tx, init_params(), tx.init(init_params()), K_STEPS, x, y, jit=True)

  model = _model(params, np.float64)
  opt = keras.optimizers.Adadelta.from_config(adadelta_optax.interop.to_keras_config(tx, version=3))
  opt.build(model.trainable_variables)
  for variable, value in zip(
    opt.variables, adadelta_optax.interop.keras3_variables(tx, state), strict=True
  ):
    variable.assign(value)

  _keras_train(model, opt, M_STEPS, x, y)
  params, state = run_jax(tx, params, state, M_STEPS, x, y, jit=True)
  key = ("Keras 3", f"{case} (JAX to Keras)")
  assert_parity(params, [v.numpy() for v in model.trainable_variables], "params", key)
  assert_parity(
    adadelta_optax.interop.keras3_variables(tx, state),
    [v.numpy() for v in opt.variables],
    "variables",
    key,
  )


def test_ema_and_accumulation_are_not_no_ops():
  """Guards the tests above: without the training options the numbers differ."""
  x, y = data()
  kwargs = CASES["ema_accumulation"]
  model = _model(init_params(), np.float64)
  opt = keras.optimizers.Adadelta(**kwargs)
  _keras_train(model, opt, K_STEPS, x, y)
  plain = adadelta_optax.interop.from_keras_config(
    keras.optimizers.Adadelta(learning_rate=1.0).get_config()
  )
  params, _ = run_jax(plain, init_params(), plain.init(init_params()), K_STEPS, x, y)
  with pytest.raises(AssertionError):
    assert_parity(params, [v.numpy() for v in model.trainable_variables], "params")


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULE_CASES)
def test_schedules_match_keras3(name, kwargs):
  """Float32 values at steps 0..60: equal to Keras 3's, config and serialization too.

  CosineDecay with warmup: Keras evaluates it inside ``lax.cond``, whose compiled float32 ``cos``
  may differ from an eager one by one ulp (ours equals TensorFlow's bit for bit there).
  """
  with enable_x64(False):
    theirs = getattr(SCHEDULES, name)(**kwargs)
    ours = getattr(adadelta_optax.schedules, name)(**kwargs)
    ulps = 1 if kwargs.get("warmup_target") is not None else 0
    for step in range(61):
      a, b = np.asarray(ours(np.int32(step))), np.asarray(theirs(np.int32(step)))
      assert a.dtype == b.dtype == np.float32
      np.testing.assert_array_max_ulp(a, b, maxulp=ulps)
    assert adadelta_optax.schedules.serialize(ours) == keras.optimizers.schedules.serialize(theirs)
    back = keras.optimizers.schedules.deserialize(adadelta_optax.schedules.serialize(ours))
    assert back.get_config() == theirs.get_config()


def test_resume_keras3_with_float64_floatx():
  """With ``set_floatx("float64")`` the learning rate lives in a float64 variable: 0.9 stays 0.9."""
  previous = keras.config.floatx()
  keras.config.set_floatx("float64")
  try:
    x, y = data()
    model = _model(init_params(), np.float64)
    opt = keras.optimizers.Adadelta(learning_rate=0.9, rho=0.9, epsilon=1e-6)
    _keras_train(model, opt, K_STEPS, x, y)
    assert opt.variables[1].dtype == "float64" and float(opt.variables[1].numpy()) == 0.9

    tx = adadelta_optax.interop.from_keras_config(opt.get_config(), floatx="float64")
    assert tx.hyperparams["learning_rate"] == 0.9
    params = [v.numpy() for v in model.trainable_variables]
    state = adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), opt.variables)
    back = adadelta_optax.interop.keras3_variables(tx, state, floatx="float64")
    assert back[1].dtype == np.float64 and float(back[1]) == 0.9
    # Another learning rate is refused, naming the variable. (A float32 variable holding
    # float32(0.9) is what keras3_variables(tx, state) exports for this tx: accepted, so that
    # every export of ours round-trips; the value is compared in the variable's own dtype.)
    others = [v.numpy() for v in opt.variables]
    with pytest.raises(ValueError, match=r"variables\[1\] \(learning_rate\)"):
      adadelta_optax.interop.set_keras3_variables(
        tx, tx.init(params), others[:1] + [np.float64(0.8)] + others[2:]
      )
    exported = adadelta_optax.interop.keras3_variables(tx, state)  # floatx float32
    assert exported[1].dtype == np.float32
    adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), exported)

    _keras_train(model, opt, M_STEPS, x, y)
    params, state = run_jax(tx, params, state, M_STEPS, x, y, jit=True)
    key = ("Keras 3", "floatx float64")
    assert_parity(params, [v.numpy() for v in model.trainable_variables], "params", key)
    assert_parity(
      adadelta_optax.interop.keras3_variables(tx, state, floatx="float64"),
      [v.numpy() for v in opt.variables],
      "optimizer variables",
      key,
    )
  finally:
    keras.config.set_floatx(previous)


def test_keras3_variables_rejects_bad_floatx():
  tx = adadelta_optax.adadelta()
  state = tx.init([np.zeros(2)])
  with pytest.raises(ValueError, match="floatx must be one of .* got 'double'"):
    adadelta_optax.interop.keras3_variables(tx, state, floatx="double")
