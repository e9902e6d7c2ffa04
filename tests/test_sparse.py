"""``sparse_rows=True`` against TensorFlow's sparse kernel, and its own rules.

TensorFlow side: an embedding table updated through ``tf.gather`` (an ``IndexedSlices``
gradient, with repeated ids) by ``tf_keras.optimizers.legacy.Adadelta``, which runs
``ResourceSparseApplyAdadelta`` on the looked-up rows; a dense kernel in the same model goes
through the dense kernel. Params and both accumulators must match row by row, for touched and
untouched rows (float64, 1e-12).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import adadelta_optax  # noqa: E402

from migration import assert_parity  # noqa: E402

pytestmark = pytest.mark.xdist_group("tensorflow")

ROWS, DIM, STEPS = 12, 3, 9


def _batches(seed=0, repeats=True):
  rng = np.random.default_rng(seed)
  # ids in [0, 8): rows 8..11 are never looked up; repeats within a batch are common.
  draw = (lambda: rng.integers(0, 8, size=6)) if repeats else (lambda: rng.permutation(8)[:6])
  return [(draw(), rng.normal(size=(6, 1))) for _ in range(STEPS)]


def _init(seed=1):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(ROWS, DIM)), rng.normal(size=(DIM, 1))]


def _tf_run(kwargs, batches):
  table, kernel = (tf.Variable(p) for p in _init())
  opt = tf_keras.optimizers.legacy.Adadelta(**kwargs)
  for ids, y in batches:
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean((tf.gather(table, ids) @ kernel - y) ** 2)
    grads = tape.gradient(loss, [table, kernel])
    assert isinstance(grads[0], tf.IndexedSlices)
    opt.apply_gradients(zip(grads, [table, kernel], strict=True))
  return [table.numpy(), kernel.numpy()], opt.get_weights()


def _jax_run(tx, batches):
  params = [jnp.asarray(p) for p in _init()]
  state = tx.init(params)

  def loss(params, ids, y):
    table, kernel = params
    return jnp.mean((table[ids] @ kernel - y) ** 2)

  for ids, y in batches:
    updates, state = tx.update(jax.grad(loss)(params, ids, y), state, params)
    params = optax.apply_updates(params, updates)
  return params, adadelta_optax.get_weights(state)


@pytest.mark.parametrize(
  ("kwargs", "repeats"),
  [
    (dict(learning_rate=1.0), True),
    (dict(learning_rate=0.5, rho=0.8, decay=0.1), True),
    # TF clips an IndexedSlices per lookup, before summing repeated ids (see _sparse.py), so
    # clipping is compared on batches without repeats.
    (dict(learning_rate=1.0, clipvalue=0.05), False),
    (dict(learning_rate=1.0, clipnorm=0.05), False),
  ],
  ids=["lr1", "decay", "clipvalue", "clipnorm"],
)
def test_matches_tensorflow_sparse_kernel(kwargs, repeats):
  batches = _batches(repeats=repeats)
  tf_params, tf_weights = _tf_run(kwargs, batches)
  config = tf_keras.optimizers.serialize(tf_keras.optimizers.legacy.Adadelta(**kwargs))
  tx = adadelta_optax.interop.from_keras_config(config, sparse_rows=True)
  params, weights = _jax_run(tx, batches)
  key = ("tf.keras 2.x", f"sparse rows {'-'.join(sorted(kwargs))}")
  assert_parity(params, tf_params, "params", key)
  assert_parity(weights, tf_weights, "optimizer weights", key)
  untouched = slice(8, ROWS)
  np.testing.assert_array_equal(tf_params[0][untouched], _init()[0][untouched])
  np.testing.assert_array_equal(np.asarray(weights[1])[untouched], 0.0)  # accum_grad, never decayed

  # Guard: the dense rule decays the accumulators of rows that were not looked up in a batch.
  dense, _ = _jax_run(adadelta_optax.interop.from_keras_config(config), batches)
  with pytest.raises(AssertionError):
    assert_parity(dense, tf_params, "params")


def test_untouched_rows_keep_everything():
  """Rows with an all-zero gradient keep params, both accumulators, even with weight decay."""
  tx = adadelta_optax.adadelta(
    weight_decay=0.1, decoupled_weight_decay=True, sparse_rows=True, clipnorm=1.0
  )
  params = {"table": jnp.ones((4, 2)), "bias": jnp.ones(2)}
  state = tx.init(params)
  grads = {
    "table": jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, -2.0], [0.0, 0.0]]),
    "bias": jnp.zeros(2),
  }
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert int(state.count) == 3
  untouched, touched = np.array([1, 3]), np.array([0, 2])
  np.testing.assert_array_equal(np.asarray(params["table"])[untouched], 1.0)
  np.testing.assert_array_equal(np.asarray(state.accum_grad["table"])[untouched], 0.0)
  np.testing.assert_array_equal(np.asarray(state.accum_var["table"])[untouched], 0.0)
  assert np.all(np.asarray(params["table"])[touched] != 1.0)  # touched rows: decayed and stepped
  assert np.all(np.asarray(params["bias"]) < 1.0)  # ndim < 2: always updated (weight decay)

  dense = adadelta_optax.adadelta(weight_decay=0.1, decoupled_weight_decay=True, clipnorm=1.0)
  p = {"table": jnp.ones((4, 2)), "bias": jnp.ones(2)}
  s = dense.init(p)
  for _ in range(3):
    u, s = dense.update(grads, s, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(
    np.asarray(params["table"])[touched], np.asarray(p["table"])[touched], rtol=1e-15
  )
  np.testing.assert_array_equal(params["bias"], p["bias"])


def test_sparse_rows_under_jit_and_in_config():
  tx = adadelta_optax.adadelta(sparse_rows=True)
  params = jnp.ones((3, 2))
  grads = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(updates)[[0, 2]], 0.0)
  assert np.all(np.asarray(updates[1]) < 0)
  assert tx.get_config()["sparse_rows"] is True
  assert adadelta_optax.Adadelta.from_config(tx.get_config()).config.sparse_rows is True
  with pytest.raises(TypeError, match="sparse_rows must be a bool"):
    adadelta_optax.adadelta(sparse_rows=1)
