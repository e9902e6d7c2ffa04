"""Resuming TensorFlow training: tf.keras 2.x (``tf_keras.optimizers.legacy.Adadelta``, TF's C++
``ResourceApplyAdadelta`` kernel) and tf.keras 1.x (``optimizer_v1.Adadelta``, the 1.x code, run
in a TF1 graph session).

Each test trains the MLP of ``migration.py`` k steps in TensorFlow, carries the config
(``serialize`` → JSON → :func:`from_keras_config`) and the optimizer weights
(``get_weights`` → :func:`set_weights`) over, then continues m steps in both and requires the
same params and optimizer weights (float64: 1e-12, float32: 1e-6 relative). The way back
(:func:`get_weights` into a fresh TF optimizer) is tested too. All TF tests run on one xdist
worker (``xdist_group``) so TensorFlow is imported once.
"""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras.src import backend as tf_keras_backend  # noqa: E402
from tf_keras.src.optimizers import optimizer_v1  # noqa: E402

import adadelta_optax  # noqa: E402

from migration import SCHEDULE_CASES, assert_parity, data, init_params, run_jax  # noqa: E402

pytestmark = pytest.mark.xdist_group("tensorflow")

K_STEPS, M_STEPS = 7, 8
TF_SCHEDULES = tf_keras.optimizers.schedules

CASES_V2 = {
  "lr1": dict(learning_rate=1.0),
  "decay": dict(learning_rate=1.0, rho=0.9, decay=0.05),
  "epsilon_rho": dict(learning_rate=0.5, rho=0.8, epsilon=1e-4),
  "clipnorm": dict(learning_rate=1.0, clipnorm=0.05),
  "clipvalue": dict(learning_rate=1.0, clipvalue=0.01),
  "clipvalue_clipnorm": dict(learning_rate=1.0, clipvalue=0.02, clipnorm=0.03),
  "global_clipnorm": dict(learning_rate=1.0, global_clipnorm=0.05),
  "exponential": dict(learning_rate=TF_SCHEDULES.ExponentialDecay(1.0, 3, 0.7, staircase=True)),
  "inverse_time": dict(learning_rate=TF_SCHEDULES.InverseTimeDecay(1.0, 2, 0.5), decay=0.1),
  "piecewise": dict(learning_rate=TF_SCHEDULES.PiecewiseConstantDecay([4, 9], [1.0, 0.5, 0.1])),
  "polynomial": dict(
    learning_rate=TF_SCHEDULES.PolynomialDecay(1.0, 5, 0.1, power=2.0, cycle=True)
  ),
  "cosine_warmup": dict(
    learning_rate=TF_SCHEDULES.CosineDecay(0.1, 10, alpha=0.1, warmup_target=1.0, warmup_steps=4)
  ),
  "cosine_restarts": dict(learning_rate=TF_SCHEDULES.CosineDecayRestarts(1.0, 3, m_mul=0.8)),
}


def _tf_loss(variables, x, y):
  w1, b1, w2, b2 = variables
  return tf.reduce_mean((tf.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)


def _tf_train(opt, variables, steps, x, y):
  x, y = tf.constant(x), tf.constant(y)
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = _tf_loss(variables, x, y)
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))


def _assert_same_tf_config(ours, theirs):
  """Same keys and values; numbers as TF holds them (float32), schedules exactly."""
  theirs = _json(theirs)
  assert sorted(ours) == sorted(theirs)
  for key, value in theirs.items():
    if isinstance(value, float):
      assert np.float32(ours[key]) == np.float32(value), key
    else:
      assert ours[key] == value, key


def _json(config):
  return json.loads(json.dumps(config, default=float))  # np.float32 hyperparameters


@pytest.mark.parametrize(
  ("case", "dtype"),
  [(case, np.float64) for case in sorted(CASES_V2)]
  + [(case, np.float32) for case in ("decay", "clipvalue_clipnorm", "cosine_warmup")],
)
def test_resume_tf_keras_v2(case, dtype):
  x, y = data(dtype)
  variables = [tf.Variable(p) for p in init_params(dtype)]
  opt = tf_keras.optimizers.legacy.Adadelta(**CASES_V2[case])
  _tf_train(opt, variables, K_STEPS, x, y)

  config = _json(tf_keras.optimizers.serialize(opt))
  tx = adadelta_optax.interop.from_keras_config(config)
  _assert_same_tf_config(adadelta_optax.interop.to_keras_config(tx, version=2), opt.get_config())
  params = [v.numpy() for v in variables]
  state = adadelta_optax.set_weights(tx.init(params), opt.get_weights())
  assert int(state.count) == K_STEPS

  _tf_train(opt, variables, M_STEPS, x, y)
  params, state = run_jax(tx, params, state, M_STEPS, x, y)
  key = ("tf.keras 2.x", f"{case} {np.dtype(dtype).name}")
  assert_parity(params, [v.numpy() for v in variables], "params", key)
  assert_parity(adadelta_optax.get_weights(state), opt.get_weights(), "optimizer weights", key)


@pytest.mark.parametrize("case", ["decay", "clipvalue_clipnorm", "piecewise"])
def test_jax_state_back_into_tf_keras_v2(case):
  """JAX → TF: ``get_weights(state)`` into a fresh TF optimizer continues identically."""
  x, y = data()
  tx = adadelta_optax.interop.from_keras_config(
    _json(tf_keras.optimizers.serialize(tf_keras.optimizers.legacy.Adadelta(**CASES_V2[case])))
  )
  params, state = run_jax(tx, init_params(), tx.init(init_params()), K_STEPS, x, y)

  variables = [tf.Variable(np.asarray(p)) for p in params]
  opt = tf_keras.optimizers.legacy.Adadelta.from_config(
    adadelta_optax.interop.to_keras_config(tx, version=2)
  )
  # A zero gradient creates the slots and changes no param; set_weights then replaces them all.
  opt.apply_gradients([(tf.zeros_like(v), v) for v in variables])
  opt.set_weights(adadelta_optax.get_weights(state))

  _tf_train(opt, variables, M_STEPS, x, y)
  params, state = run_jax(tx, params, state, M_STEPS, x, y)
  key = ("tf.keras 2.x", f"{case} (JAX to TF)")
  assert_parity(params, [v.numpy() for v in variables], "params", key)
  assert_parity(adadelta_optax.get_weights(state), opt.get_weights(), "optimizer weights", key)


CASES_V1 = {
  "defaults": dict(),
  "decay": dict(lr=0.7, rho=0.9, decay=0.05),
  "clipnorm_clipvalue": dict(clipnorm=0.03, clipvalue=0.02),
  "epsilon": dict(epsilon=1e-4),
}


def _run_v1(kwargs, dtype, first, then, x, y):
  """tf.keras 1.x: ``first`` steps, snapshot, ``then`` more; in a TF1 graph and session."""
  graph = tf.Graph()
  old_floatx = tf_keras_backend.floatx()
  tf_keras_backend.set_floatx(np.dtype(dtype).name)  # 1.x keeps lr and decay in floatx
  try:
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
      variables = [tf.compat.v1.Variable(p, use_resource=True) for p in init_params(dtype)]
      opt = optimizer_v1.Adadelta(**kwargs)
      updates = opt.get_updates(_tf_loss(variables, tf.constant(x), tf.constant(y)), variables)
      session.run(tf.compat.v1.global_variables_initializer())
      for _ in range(first):
        session.run(updates)
      snapshot = (
        opt.get_config(),
        session.run(variables),
        [session.run(opt.iterations)] + session.run(opt.weights),
      )
      for _ in range(then):
        session.run(updates)
      return snapshot, session.run(variables), session.run(opt.weights)
  finally:
    tf_keras_backend.set_floatx(old_floatx)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES_V1))
def test_resume_tf_keras_v1(case, dtype):
  x, y = data(dtype)
  (config, params, weights), tf_params, tf_weights = _run_v1(
    CASES_V1[case], dtype, K_STEPS, M_STEPS, x, y
  )
  tx = adadelta_optax.interop.from_keras_config(_json(config), floatx=np.dtype(dtype).name)
  assert tx.hyperparams["clip_order"] == "norm_then_value"
  # tf.keras 1.x weights have no iterations: prepend optimizer.iterations (2.x layout).
  state = adadelta_optax.set_weights(tx.init(params), weights)
  params, state = run_jax(tx, params, state, M_STEPS, x, y)
  key = ("tf.keras 1.x", f"{case} {np.dtype(dtype).name}")
  assert_parity(params, tf_params, "params", key)
  assert_parity(adadelta_optax.get_weights(state)[1:], tf_weights, "optimizer weights", key)


def test_tf_keras_v1_clip_order_matters():
  """Guards the test above: 2.x's clip order gives different numbers on this run."""
  x, y = data()
  (config, params, weights), tf_params, _ = _run_v1(
    CASES_V1["clipnorm_clipvalue"], np.float64, K_STEPS, M_STEPS, x, y
  )
  v1 = adadelta_optax.interop.from_keras_config(config).config
  tx = adadelta_optax.from_adadelta_config(dataclasses.replace(v1, clip_order="value_then_norm"))
  state = adadelta_optax.set_weights(tx.init(params), weights)
  params, _ = run_jax(tx, params, state, M_STEPS, x, y)
  with pytest.raises(AssertionError):
    assert_parity(params, tf_params, "params")


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULE_CASES)
def test_schedules_match_tf_keras(name, kwargs):
  """Values at steps 0..60 equal tf.keras' bit for bit (float32, the optimizer's step as
  ``tf.cast(iterations, float64)``), and tf.keras rebuilds the schedule from ours."""
  theirs = getattr(TF_SCHEDULES, name)(**kwargs)
  ours = getattr(adadelta_optax.schedules, name)(**kwargs)
  for step in range(61):
    expected = theirs(tf.cast(tf.constant(step, tf.int64), tf.float64)).numpy()
    np.testing.assert_array_equal(np.asarray(ours(step)), expected)
  back = TF_SCHEDULES.deserialize(adadelta_optax.schedules.serialize(ours))
  unnamed = lambda config: {k: v for k, v in config.items() if k != "name"}  # noqa: E731
  assert unnamed(back.get_config()) == unnamed(theirs.get_config())  # tf.keras' default: None


# --- float16 variables: tf-keras' own float16 tests, re-expressed --------------------------------

# tf_keras/optimizers/legacy/adadelta_test.py, doTestBasic: float16 variables [1, 2] and [3, 4],
# a constant gradient, 4 steps of rho=0.95 and epsilon=1e-8 (0 in float16), for each of these.
F16_GRADS, F16_RATES, F16_STEPS, F16_RHO, F16_EPSILON = (
  (0.2, 0.1, 0.01),
  (1.0, 0.5, 0.1),
  4,
  0.95,
  1e-8,
)
# Its float16 bound (tf.test.TestCase.assertAllCloseAccordingToType): |a - b| <= 1e-3 + 1e-3 |b|.
F16_TF_RTOL = F16_TF_ATOL = 1e-3
F16_INIT = np.array([1.0, 2.0, 3.0, 4.0])


def _f16_formula(grad, lr, storage):
  """The test's expected values in float64, from the float16 gradient: params and accumulators
  after each step. With ``storage``, each is rounded to float16 after each step, as float16
  variables must be: the exact rule for float16 storage (what a step computed in float32 and
  rounded once can reach)."""
  store = (lambda v: np.asarray(v, np.float16).astype(np.float64)) if storage else (lambda v: v)
  g = float(np.float16(grad))
  params, accum, accum_update = F16_INIT.copy(), 0.0, 0.0
  for _ in range(F16_STEPS):
    accum = store(accum * F16_RHO + g**2 * (1 - F16_RHO))
    update = np.sqrt(accum_update + F16_EPSILON) / np.sqrt(accum + F16_EPSILON) * g
    accum_update = store(accum_update * F16_RHO + update**2 * (1 - F16_RHO))
    params = store(params - lr * update)
  return params, accum, accum_update


def _f16_tf(grad, lr, callable_params):
  var0 = tf.Variable([1.0, 2.0], dtype=tf.half)
  var1 = tf.Variable([3.0, 4.0], dtype=tf.half)
  grads = tf.constant([grad, grad], dtype=tf.half)
  if callable_params:
    opt = tf_keras.optimizers.legacy.Adadelta(
      learning_rate=lambda: lr, rho=lambda: F16_RHO, epsilon=F16_EPSILON
    )
  else:
    opt = tf_keras.optimizers.legacy.Adadelta(learning_rate=lr, rho=F16_RHO, epsilon=F16_EPSILON)
  for _ in range(F16_STEPS):
    opt.apply_gradients(zip([grads, grads], [var0, var1], strict=True))
  return np.concatenate([var0.numpy(), var1.numpy()]).astype(np.float64)


def _f16_ours(grad, lr, callable_params):
  import jax
  import jax.numpy as jnp
  import optax

  if callable_params:
    # Hyperparameters evaluated at every step: optax's inject_hyperparams. It stores them in the
    # params' dtype unless told otherwise, and epsilon=1e-8 is 0 in float16 (refused, naming it).
    tx = optax.inject_hyperparams(adadelta_optax.adadelta, hyperparam_dtype=jnp.float32)(
      learning_rate=lambda count: lr, rho=lambda count: F16_RHO, epsilon=F16_EPSILON
    )
  else:
    tx = adadelta_optax.adadelta(learning_rate=lr, rho=F16_RHO, epsilon=F16_EPSILON)
  params = {
    "var0": jnp.asarray([1.0, 2.0], jnp.float16),
    "var1": jnp.asarray([3.0, 4.0], jnp.float16),
  }
  grads = {name: jnp.full(2, grad, jnp.float16) for name in params}
  state = tx.init(params)
  step = jax.jit(
    lambda p, s: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(grads, s, p))
  )
  for _ in range(F16_STEPS):
    params, state = step(params, state)
  inner = state.inner_state if callable_params else state
  assert params["var0"].dtype == jnp.float16 and inner.accum_grad["var0"].dtype == jnp.float16
  values = np.concatenate([np.asarray(params["var0"]), np.asarray(params["var1"])])
  accums = [
    np.asarray(getattr(inner, f)["var0"][0], np.float64) for f in ("accum_grad", "accum_var")
  ]
  return values.astype(np.float64), accums


@pytest.mark.parametrize(
  "callable_params", [False, True], ids=["testResourceBasic[float16]", "testBasicCallableParams"]
)
def test_float16_variables_as_tf_keras_tests_them(callable_params):
  """tf-keras' float16 Adadelta tests, on our optimizer and on real tf-keras side by side.

  epsilon=1e-8 is 0 in float16. tf-keras computes the step in float16, so its update is
  sqrt(0 + 0) / sqrt(A) * g = 0: its float16 variables never move, and its own test passes only
  because its float16 bound (1e-3 + 1e-3 |b|) exceeds the 4 steps' movement. Ours computes in
  float32 and rounds once (_dtypes.step_dtype), so:

  - both pass tf-keras' float16 bound against the formula, and ours is within it of tf-keras;
  - ours is within one float16 ulp of the exact rule for float16 storage (float64 arithmetic,
    params and accumulators rounded to float16 after each step): float32 arithmetic can move a
    value across one rounding boundary, never further;
  - ours is never further from the float64 formula than tf-keras, and nearer where the steps
    add up to more than half an ulp (lr=1: 0.72 ulp against tf-keras' 3.72 at 1.0).
  """
  nearer = 0
  for grad in F16_GRADS:
    for lr in F16_RATES:
      ours, (accum, accum_update) = _f16_ours(grad, lr, callable_params)
      theirs = _f16_tf(grad, lr, callable_params)
      exact, exact_accum, exact_update = _f16_formula(grad, lr, storage=False)
      stored, stored_accum, stored_update = _f16_formula(grad, lr, storage=True)
      case = f"grad={grad}, lr={lr}"
      for got in (ours, theirs):  # tf-keras' own assertion, on both
        np.testing.assert_allclose(got, exact, rtol=F16_TF_RTOL, atol=F16_TF_ATOL, err_msg=case)
      np.testing.assert_allclose(ours, theirs, rtol=F16_TF_RTOL, atol=F16_TF_ATOL, err_msg=case)
      np.testing.assert_allclose(accum, exact_accum, rtol=F16_TF_RTOL, atol=F16_TF_ATOL)
      np.testing.assert_allclose(accum_update, exact_update, rtol=F16_TF_RTOL, atol=F16_TF_ATOL)
      ulp = np.spacing(np.abs(stored).astype(np.float16)).astype(np.float64)
      assert np.all(np.abs(ours - stored) <= ulp), (case, ours, stored)
      assert abs(accum - stored_accum) <= np.spacing(np.float16(stored_accum)), case
      assert abs(accum_update - stored_update) <= np.spacing(np.float16(stored_update)), case
      ours_error, tf_error = np.abs(ours - exact), np.abs(theirs - exact)
      assert np.all(ours_error <= tf_error), (case, ours_error, tf_error)
      nearer += int(np.any(ours_error < tf_error))
      assert np.array_equal(theirs, F16_INIT), "tf-keras' float16 variables once moved"
  assert nearer >= 3, "lr=1 moves ours at 1.0 for every gradient"
