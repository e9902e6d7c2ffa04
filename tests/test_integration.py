"""Adadelta inside optax wrappers and Flax training loops, checked against the NumPy reference.

Every trajectory is compared step by step with ``tests/reference.py`` (float64): either the
reference computes its own gradients in NumPy from its own params (the linear least-squares
problem below), or it is fed the exact gradients the JAX side used (Flax models).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import adadelta_optax
from adadelta_optax import AdadeltaState

import reference
from helpers import assert_trees_close, count_compiles

RTOL, ATOL = 1e-10, 1e-12
F64 = jnp.float64

# A fixed linear least-squares problem: loss = mean_n sum_k (x_n w + b - y_n)_k^2.
_RNG = np.random.default_rng(0)
X_NP = _RNG.normal(size=(24, 3))
Y_NP = X_NP @ np.array([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]]) + np.array([0.3, -0.7])
W0_NP = _RNG.normal(size=(3, 2))
B0_NP = _RNG.normal(size=(2,))


def init_params() -> dict[str, jax.Array]:
  """The starting params (float64; leaf order in ``jax.tree.leaves`` is ``b``, ``w``)."""
  return {"w": jnp.asarray(W0_NP, F64), "b": jnp.asarray(B0_NP, F64)}


def loss_fn(params, x, y):
  residual = x @ params["w"] + params["b"] - y
  return jnp.mean(jnp.sum(residual**2, axis=1))


def np_loss(b, w, x=X_NP, y=Y_NP) -> float:
  residual = x @ w + b - y
  return float(np.mean(np.sum(residual**2, axis=1)))


def np_grads(b, w, x=X_NP, y=Y_NP) -> list[np.ndarray]:
  """The gradient of :func:`loss_fn` in NumPy, as ``[grad_b, grad_w]`` (leaf order)."""
  residual = x @ w + b - y
  n = x.shape[0]
  return [2.0 * residual.sum(axis=0) / n, 2.0 * x.T @ residual / n]


def data() -> tuple[jax.Array, jax.Array]:
  return jnp.asarray(X_NP, F64), jnp.asarray(Y_NP, F64)


def assert_state_matches(state: AdadeltaState, ref: reference.Reference) -> None:
  assert isinstance(state, AdadeltaState)
  assert int(state.count) == ref.count
  assert_trees_close(state.accum_grad, ref.accum_grad, rtol=RTOL, atol=ATOL, what="accum_grad")
  assert_trees_close(state.accum_var, ref.accum_var, rtol=RTOL, atol=ATOL, what="accum_var")


def at_int32(schedule):
  """``schedule`` as the optimizer evaluates it: jitted, at an int32 count.

  optax schedules then compute in float32, and jitted float32 can differ from eager by an ulp.
  """
  jitted = jax.jit(schedule)
  return lambda count: float(jitted(jnp.asarray(count, jnp.int32)))


def np_clip_by_global_norm(grads: list[np.ndarray], max_norm: float) -> list[np.ndarray]:
  norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
  return [g if norm < max_norm else g / norm * max_norm for g in grads]


# --- the Adadelta type itself ---------------------------------------------------------------


def test_adadelta_is_a_gradient_transformation_extra_args():
  """isinstance checks hold; reconstruction keeps the type and get_config; extra args pass."""
  tx = adadelta_optax.adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-6, weight_decay=1e-3)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  assert isinstance(tx, optax.GradientTransformation)
  assert optax.with_extra_args_support(tx) is tx
  config = tx.get_config()
  assert config["learning_rate"] == 0.5 and config["rho"] == 0.9
  for rebuilt in (type(tx)(*tx), jax.tree.map(lambda f: f, tx), tx._replace()):
    assert type(rebuilt) is adadelta_optax.Adadelta
    assert rebuilt.get_config() == config
    assert rebuilt.hyperparams == tx.hyperparams
  assert adadelta_optax.Adadelta.from_config(config).get_config() == config

  # Extra args (as optax.chain forwards them, e.g. reduce_on_plateau's `value`) are accepted.
  x, y = data()
  params = init_params()
  chained = optax.chain(tx, optax.contrib.reduce_on_plateau(patience=100))
  state = chained.init(params)
  loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
  updates, state = jax.jit(chained.update)(grads, state, params, value=loss)
  direct, _ = tx.update(grads, tx.init(params), params, value=loss, unused=1)
  assert_trees_close(updates, direct, rtol=RTOL, atol=ATOL, what="chained updates")
  ref = reference.Reference(
    [B0_NP, W0_NP], reference.Options(learning_rate=0.5, rho=0.9, epsilon=1e-6, weight_decay=1e-3)
  )
  assert_trees_close(
    updates, ref.step(np_grads(B0_NP, W0_NP)), rtol=RTOL, atol=ATOL, what="updates"
  )
  assert_state_matches(state[0], ref)


# --- optax.chain --------------------------------------------------------------------------------


def test_chain_with_clip_by_global_norm_matches_reference():
  """chain(clip_by_global_norm, adadelta): the reference is fed NumPy-clipped gradients."""
  max_norm = 0.5
  tx = optax.chain(
    optax.clip_by_global_norm(max_norm),
    adadelta_optax.adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-4),
  )
  x, y = data()

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = tx.init(params)
  ref = reference.Reference([B0_NP, W0_NP], reference.Options(rho=0.9, epsilon=1e-4))
  clipped_steps = 0
  for _ in range(60):
    params, state = step(params, state)
    grads = np_grads(*ref.params)
    clipped_steps += np.sqrt(sum(np.sum(g * g) for g in grads)) > max_norm
    ref.step(np_clip_by_global_norm(grads, max_norm))
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
  assert clipped_steps >= 5  # the clipping really acted
  assert_state_matches(state[1], ref)
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 100


def test_chain_with_schedule_learning_rate_matches_reference():
  """chain(clip, adadelta(learning_rate=schedule)): the schedule is read at the update count."""
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.2, peak_value=2.0, warmup_steps=4, decay_steps=60, end_value=0.5
  )
  tx = optax.chain(
    optax.clip(0.4), adadelta_optax.adadelta(learning_rate=schedule, rho=0.95, epsilon=1e-4)
  )
  x, y = data()

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = tx.init(params)
  ref = reference.Reference(
    [B0_NP, W0_NP], reference.Options(learning_rate=at_int32(schedule), rho=0.95, epsilon=1e-4)
  )
  for _ in range(60):
    params, state = step(params, state)
    ref.step([np.clip(g, -0.4, 0.4) for g in np_grads(*ref.params)])
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
  assert_state_matches(state[1], ref)
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 1000
  # A constant learning rate gives another trajectory: the schedule was really used.
  constant = reference.Reference(
    [B0_NP, W0_NP], reference.Options(learning_rate=2.0, rho=0.95, epsilon=1e-4)
  )
  for _ in range(60):
    constant.step([np.clip(g, -0.4, 0.4) for g in np_grads(*constant.params)])
  assert not np.allclose(constant.params[1], ref.params[1], rtol=1e-3)


# --- optax.inject_hyperparams -------------------------------------------------------------------


def make_counting_step(tx):
  """A jitted train step and a list that grows by one each time it is traced.

  The step also returns the gradients it used, for the reference to take: this trajectory is
  sensitive enough (learning rates up to 2) that one ulp of difference in a gradient moves a
  param by up to 4.6e-10 relative within 60 steps, more than the tolerance, so a reference that
  computed its own gradients would compare gradient rounding, not the optimizer.
  """
  traces = []
  x, y = data()

  @jax.jit
  def step(params, state):
    traces.append(1)
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, grads

  return step, traces


def np_leaves(tree) -> list[np.ndarray]:
  """A params or gradient tree as the reference takes it: NumPy arrays, leaf order ``b``, ``w``."""
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def test_inject_hyperparams_matches_reference_and_changes_without_retracing():
  """Changing learning_rate and rho between jitted steps follows the reference, one trace."""
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=1.0, rho=0.95, epsilon=1e-4)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  step, traces = make_counting_step(tx)
  params = init_params()
  state = tx.init(params)
  assert isinstance(state.inner_state, AdadeltaState)
  options = reference.Options(learning_rate=1.0, rho=0.95, epsilon=1e-4)
  ref = reference.Reference([B0_NP, W0_NP], options)
  unchanged = reference.Reference([B0_NP, W0_NP], reference.Options(**vars(options)))
  changes = {15: (0.3, 0.8), 30: (1.5, 0.99), 45: (0.7, 0.5)}
  with count_compiles() as compiled:
    for t in range(60):
      if t in changes:
        lr, rho = changes[t]
        state.hyperparams["learning_rate"] = jnp.asarray(lr, F64)
        state.hyperparams["rho"] = jnp.asarray(rho, F64)
        ref.o.learning_rate, ref.o.rho = lr, rho
      expected_grads = np_grads(*np_leaves(params))
      params, state, grads = step(params, state)
      assert_trees_close(grads, expected_grads, rtol=RTOL, atol=ATOL, what="grads")
      ref.step(np_leaves(grads))
      unchanged.step(np_grads(*unchanged.params))
      assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
  assert_state_matches(state.inner_state, ref)
  assert float(state.hyperparams["learning_rate"]) == 0.7
  assert float(state.hyperparams["rho"]) == 0.5
  assert len(traces) == 1
  assert compiled.count("jit(step)") == 1  # one executable served all 60 steps
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 8
  # The changes mattered: without them the trajectory is different.
  assert not np.allclose(unchanged.params[1], ref.params[1], rtol=1e-3)


def test_inject_hyperparams_with_schedules_for_learning_rate_and_rho():
  """Schedules for learning_rate and rho are evaluated at each step, as in the reference."""
  lr_schedule = optax.linear_schedule(0.5, 2.0, transition_steps=30)
  rho_schedule = optax.linear_schedule(0.5, 0.95, transition_steps=10)
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(
    learning_rate=lr_schedule, rho=rho_schedule, epsilon=1e-4
  )
  step, traces = make_counting_step(tx)
  params = init_params()
  state = tx.init(params)
  ref = reference.Reference(
    [B0_NP, W0_NP], reference.Options(learning_rate=at_int32(lr_schedule), epsilon=1e-4)
  )
  for t in range(60):
    ref.o.rho = at_int32(rho_schedule)(t)
    expected_grads = np_grads(*np_leaves(params))
    params, state, grads = step(params, state)
    assert_trees_close(grads, expected_grads, rtol=RTOL, atol=ATOL, what="grads")
    ref.step(np_leaves(grads))
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
    # The hyperparams record the values used by this step.
    assert float(state.hyperparams["rho"]) == ref.o.rho
    assert float(state.hyperparams["learning_rate"]) == at_int32(lr_schedule)(t)
  assert_state_matches(state.inner_state, ref)
  assert len(traces) == 1
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 5


def test_inject_hyperparams_weight_decay_needs_params_unless_static():
  """A traced weight_decay needs params (clear ValueError); static_args avoids it."""
  x, y = data()
  params = init_params()
  grads = jax.grad(loss_fn)(params, x, y)

  traced = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=1.0, epsilon=1e-4)
  assert "weight_decay" in traced.init(params).hyperparams
  with pytest.raises(ValueError, match=r"weight_decay needs the params.*static_args"):
    jax.jit(traced.update)(grads, traced.init(params))

  static = optax.inject_hyperparams(adadelta_optax.adadelta, static_args=("weight_decay",))(
    learning_rate=1.0, epsilon=1e-4
  )
  state = static.init(params)
  assert "weight_decay" not in state.hyperparams
  update = jax.jit(static.update)
  ref = reference.Reference([B0_NP, W0_NP], reference.Options(epsilon=1e-4))
  for _ in range(5):
    updates, state = update(jax.grad(loss_fn)(params, x, y), state)  # no params
    params = optax.apply_updates(params, updates)
    ref.step(np_grads(*ref.params))
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")

  # With params, a traced non-zero weight_decay (changed between steps) is applied.
  params = init_params()
  state = traced.init(params)
  traces = []

  @jax.jit
  def update(grads, state, params):
    traces.append(1)
    return traced.update(grads, state, params)

  ref = reference.Reference([B0_NP, W0_NP], reference.Options(epsilon=1e-4))
  for t in range(6):
    if t == 2:
      state.hyperparams["weight_decay"] = jnp.asarray(0.1, F64)
      ref.o.weight_decay = 0.1
    updates, state = update(jax.grad(loss_fn)(params, x, y), state, params)
    params = optax.apply_updates(params, updates)
    ref.step(np_grads(*ref.params))
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
  assert len(traces) == 1


# --- optax.MultiSteps ---------------------------------------------------------------------------


def test_multi_steps_equals_reference_on_mean_of_micro_batches():
  """MultiSteps(k): params move only every k-th call, by the step on the mean gradient."""
  k = 3
  tx = optax.MultiSteps(
    adadelta_optax.adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-4),
    every_k_schedule=k,
    accumulator_dtype=F64,
  )
  x, y = data()
  batches = [(x[i::k], y[i::k]) for i in range(k)]
  np_batches = [(X_NP[i::k], Y_NP[i::k]) for i in range(k)]

  @jax.jit
  def micro_step(params, state, xb, yb):
    grads = jax.grad(loss_fn)(params, xb, yb)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = tx.init(params)
  ref = reference.Reference([B0_NP, W0_NP], reference.Options(rho=0.9, epsilon=1e-4))
  for outer in range(40):
    for i in range(k):
      before = params
      params, state = micro_step(params, state, *batches[i])
      if i < k - 1:
        assert_trees_close(params, before, rtol=0, what="params between micro-steps")
        assert not bool(tx.has_updated(state))
    assert bool(tx.has_updated(state))
    micro = [np_grads(*ref.params, xb, yb) for xb, yb in np_batches]
    ref.step([np.mean(leaves, axis=0) for leaves in zip(*micro, strict=True)])
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
    assert int(state.gradient_step) == outer + 1
  assert_state_matches(state.inner_opt_state, ref)
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 3


# --- optax.apply_if_finite ----------------------------------------------------------------------


def test_apply_if_finite_skips_nan_step():
  """A NaN gradient changes neither params nor the inner state; later steps skip it."""
  tx = optax.apply_if_finite(
    adadelta_optax.adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-4), max_consecutive_errors=3
  )
  x, y = data()

  @jax.jit
  def step(params, state, poison):
    grads = jax.grad(loss_fn)(params, x, y)
    grads["w"] = grads["w"].at[1, 0].multiply(poison)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = tx.init(params)
  ref = reference.Reference([B0_NP, W0_NP], reference.Options(rho=0.95, epsilon=1e-4))
  nan_steps = {3, 7, 8}
  for t in range(60):
    previous_params, previous_inner = params, state.inner_state
    params, state = step(params, state, jnp.asarray(np.nan if t in nan_steps else 1.0, F64))
    if t in nan_steps:
      assert not bool(state.last_finite)
      for got, want in zip(
        jax.tree.leaves((params, state.inner_state)),
        jax.tree.leaves((previous_params, previous_inner)),
        strict=True,
      ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    else:
      assert bool(state.last_finite)
      ref.step(np_grads(*ref.params))
    assert np.all(np.isfinite(np.asarray(params["w"])))
    assert_trees_close(params, ref.params, rtol=RTOL, atol=ATOL, what="params")
  assert int(state.total_notfinite) == 3
  assert int(state.notfinite_count) == 0
  assert_state_matches(state.inner_state, ref)
  assert ref.count == 57
  assert np_loss(*ref.params) < np_loss(B0_NP, W0_NP) / 5


# --- optax.masked -------------------------------------------------------------------------------


def test_masked_with_integer_leaf():
  """Plain adadelta refuses an int leaf (naming it); masked(...) skips it and a masked float."""
  x, y = data()
  params = {**init_params(), "step": jnp.asarray(7, jnp.int32)}
  plain = adadelta_optax.adadelta()
  with pytest.raises(TypeError, match=r"tree\['step'\].*int32"):
    plain.init(params)

  mask = {"w": True, "b": False, "step": False}
  tx = optax.masked(adadelta_optax.adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-4), mask)
  b_frozen = jnp.asarray([0.3, -0.7], F64)  # the true intercept: w alone can fit the data
  params["b"] = b_frozen

  @jax.jit
  def step(params, state):
    grads = {
      **jax.grad(loss_fn)({"w": params["w"], "b": params["b"]}, x, y),
      "step": jnp.zeros((), jnp.int32),
    }
    grads["b"] = jnp.zeros_like(grads["b"])  # the frozen leaf's update is passed through
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  state = tx.init(params)
  ref = reference.Reference([W0_NP], reference.Options(rho=0.9, epsilon=1e-4))
  for _ in range(60):
    params, state, updates = step(params, state)
    ref.step([np_grads(np.asarray(b_frozen), ref.params[0])[1]])
    np.testing.assert_allclose(np.asarray(params["w"]), ref.params[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(np.asarray(params["b"]), np.asarray(b_frozen))
    assert params["step"].dtype == jnp.int32 and int(params["step"]) == 7
    assert int(updates["step"]) == 0
  inner = state.inner_state
  assert isinstance(inner, AdadeltaState)
  assert int(inner.count) == 60
  np.testing.assert_allclose(np.asarray(inner.accum_grad["w"]), ref.accum_grad[0], rtol=RTOL)
  np.testing.assert_allclose(np.asarray(inner.accum_var["w"]), ref.accum_var[0], rtol=RTOL)
  assert isinstance(inner.accum_grad["step"], optax.MaskedNode)
  b = np.asarray(b_frozen)
  assert np_loss(b, ref.params[0]) < np_loss(b, W0_NP) / 10


# --- Flax NNX -----------------------------------------------------------------------------------


class MLP(nnx.Module):
  def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs) -> None:
    self.hidden = nnx.Linear(din, dhidden, param_dtype=F64, dtype=F64, rngs=rngs)
    self.out = nnx.Linear(dhidden, dout, param_dtype=F64, dtype=F64, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x)))


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits

  images, labels = load_digits(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(labels))
  images, labels = images[order] / 16.0, labels[order]
  return images[:1400], labels[:1400], images[1400:], labels[1400:]


def test_flax_nnx_optimizer_learns_and_matches_reference():
  """nnx.Optimizer with adadelta: first steps equal the reference, digits test accuracy > 0.9."""
  x_train, y_train, x_test, y_test = digits()
  x_train, x_test = jnp.asarray(x_train, F64), jnp.asarray(x_test, F64)
  y_train = jnp.asarray(y_train, jnp.int32)
  model = MLP(64, 32, 10, rngs=nnx.Rngs(0))
  tx = adadelta_optax.adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  def loss_of(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @nnx.jit
  def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_of)(model, x, y)
    optimizer.update(model, grads)
    return loss, grads

  params0 = nnx.state(model, nnx.Param)
  ref = reference.Reference(
    [np.asarray(p) for p in jax.tree.leaves(params0)],
    reference.Options(learning_rate=1.0, rho=0.95, epsilon=1e-6),
  )
  losses = []
  for t in range(150):
    loss, grads = train_step(model, optimizer, x_train, y_train)
    losses.append(float(loss))
    if t < 5:
      assert jax.tree.structure(grads) == jax.tree.structure(params0)
      ref.step([np.asarray(g) for g in jax.tree.leaves(grads)])
      assert_trees_close(
        nnx.state(model, nnx.Param), ref.params, rtol=RTOL, atol=ATOL, what="params"
      )
      assert_state_matches(nnx.as_pure(optimizer.opt_state), ref)
  assert int(optimizer.step[...]) == 150
  assert int(nnx.as_pure(optimizer.opt_state).count) == 150
  assert losses[-1] < losses[0] / 10
  accuracy = float(jnp.mean(jnp.argmax(model(x_test), axis=1) == jnp.asarray(y_test)))
  assert accuracy > 0.9


# --- Flax linen ---------------------------------------------------------------------------------


class LinenMLP(linen.Module):
  @linen.compact
  def __call__(self, x):
    x = jnp.tanh(linen.Dense(32, param_dtype=F64, dtype=F64)(x))
    return linen.Dense(1, param_dtype=F64, dtype=F64)(x)


def test_flax_linen_train_state_learns_and_matches_reference():
  """TrainState.create(tx=adadelta): first steps equal the reference, regression loss / 20."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(-2.0, 2.0, size=(256, 2)), F64)
  y = jnp.sin(x[:, :1]) * jnp.cos(x[:, 1:]) + 0.5 * x[:, :1]
  module = LinenMLP()
  params = module.init(jax.random.key(0), x)["params"]
  tx = adadelta_optax.adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6)
  state = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=tx)
  assert isinstance(state.opt_state, AdadeltaState)

  @jax.jit
  def train_step(state):
    def loss_of(params):
      return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_of)(state.params)
    return state.apply_gradients(grads=grads), loss, grads

  ref = reference.Reference(
    [np.asarray(p) for p in jax.tree.leaves(params)],
    reference.Options(learning_rate=1.0, rho=0.95, epsilon=1e-6),
  )
  losses = []
  for t in range(300):
    state, loss, grads = train_step(state)
    losses.append(float(loss))
    if t < 5:
      ref.step([np.asarray(g) for g in jax.tree.leaves(grads)])
      assert_trees_close(state.params, ref.params, rtol=RTOL, atol=ATOL, what="params")
      assert_state_matches(state.opt_state, ref)
  assert int(state.step) == 300 and int(state.opt_state.count) == 300
  assert losses[-1] < losses[0] / 20
