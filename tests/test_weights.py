"""get_weights / set_weights in tf.keras' 2.x and 1.x list layouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

import reference
from helpers import random_grads, random_tree, run_jax


def _trained(steps=5):
  rng = np.random.default_rng(0)
  params = random_tree(rng, np.float64, complex_leaf=True)
  grads = random_grads(rng, params, steps)
  tx = adadelta_optax.adadelta()
  final, state = run_jax(tx, params, grads, jit=True)
  return tx, params, grads, final, state


def test_get_weights_layout_matches_reference():
  """[iterations, accum_grad per leaf (tree order)..., accum_var per leaf...] with real values."""
  tx, params, grads, _, state = _trained()
  weights = tx.get_weights(state)
  ref = reference.run(
    jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], reference.Options()
  )
  n = len(jax.tree.leaves(params))
  assert len(weights) == 2 * n + 1
  assert weights[0].dtype == np.int64 and int(weights[0]) == 5
  for i in range(n):
    assert isinstance(weights[1 + i], np.ndarray)
    np.testing.assert_allclose(weights[1 + i], ref.accum_grad[i], rtol=1e-12)
    np.testing.assert_allclose(weights[1 + n + i], ref.accum_var[i], rtol=1e-12)


def test_roundtrip_into_fresh_state_continues_identically():
  """Weights moved into a fresh optimizer's state continue exactly like the original."""
  tx, _, _, final, state = _trained()
  fresh = adadelta_optax.adadelta().init(final)
  restored = tx.set_weights(fresh, tx.get_weights(state))
  g = jax.tree.map(lambda x: jnp.ones_like(x) * 0.3, final)
  a, sa = tx.update(g, state, final)
  b, sb = tx.update(g, restored, final)
  for x, y in zip(jax.tree.leaves((a, sa)), jax.tree.leaves((b, sb)), strict=True):
    np.testing.assert_array_equal(x, y)


def test_keras_v1_layout_keeps_count():
  """2n entries (tf.keras 1.x, no iterations) replace the accumulators, not the count."""
  tx, _, _, _, state = _trained()
  weights = tx.get_weights(state)[1:]
  doubled = [w * 2 for w in weights]
  new = tx.set_weights(state, doubled)
  assert int(new.count) == int(state.count)
  np.testing.assert_array_equal(tx.get_weights(new)[1:][0], doubled[0])


def test_set_weights_through_inject_hyperparams_state():
  """States that wrap the AdadeltaState (inject_hyperparams) are found and rebuilt in place."""
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=0.5)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  weights = [np.int64(7), np.full(3, 0.25), np.full(3, 0.5)]
  new = adadelta_optax.set_weights(state, weights)
  assert type(new) is type(state)
  assert int(new.inner_state.count) == 7
  np.testing.assert_array_equal(new.inner_state.accum_var["w"], 0.5)
  assert int(adadelta_optax.get_weights(new)[0]) == 7


BAD = {
  "count": (lambda w: w[:-2], "for 8 parameter leaves expected 17"),
  "iterations_float": (lambda w: [np.float64(3.0)] + w[1:], "weights[0] (iterations)"),
  "iterations_negative": (lambda w: [np.int64(-1)] + w[1:], "iterations must be in"),
  "shape": (lambda w: w[:1] + [np.zeros((4, 4))] + w[2:], "weights[1] (accum_grad of "),
  "kind_int": (lambda w: w[:2] + [w[2].astype(np.int32)] + w[3:], "weights[2]"),
  "kind_complex_for_real": (
    lambda w: w[:1] + [w[1].astype(np.complex128)] + w[2:],
    "expected a floating array",
  ),
  "kind_real_for_complex": (
    lambda w: w[:15] + [np.abs(w[15])] + w[16:],
    "weights[15] (accum_var of ['phase']): expected a complex",
  ),
  "negative": (lambda w: w[:3] + [-np.abs(w[3]) - 1] + w[4:], "finite and >= 0"),
  "nan": (lambda w: w[:3] + [w[3] * np.nan] + w[4:], "finite and >= 0"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_weights_raise_and_change_nothing(name):
  tx, _, _, _, state = _trained()
  weights = tx.get_weights(state)
  corrupt, fragment = BAD[name]
  before = [np.copy(w) for w in weights]
  with pytest.raises(ValueError) as info:
    tx.set_weights(state, corrupt(list(weights)))
  assert fragment in str(info.value), str(info.value)
  for a, b in zip(tx.get_weights(state), before, strict=True):
    np.testing.assert_array_equal(a, b)


def test_shape_error_names_the_leaf():
  tx = adadelta_optax.adadelta()
  state = tx.init({"a": jnp.ones(2), "b": jnp.ones(3)})
  with pytest.raises(ValueError, match=r"weights\[4\] \(accum_var of \['b'\]\): expected shape"):
    tx.set_weights(state, [np.int64(0), np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2)])


def test_state_without_adadelta_is_refused():
  with pytest.raises(ValueError, match="exactly one AdadeltaState"):
    adadelta_optax.get_weights(optax.sgd(0.1).init(jnp.ones(2)))


@pytest.mark.parametrize(
  ("state_dtype", "value"),
  [(jnp.float32, np.float64(1e300)), (jnp.float16, np.float32(1e6)), (jnp.bfloat16, 1e39)],
)
def test_values_that_overflow_the_state_dtype_are_refused(state_dtype, value):
  """1e300 in a float32 state (or 1e6 in float16) would be stored as inf: a ValueError names
  the entry and the dtype's largest value; nothing is changed."""
  tx = adadelta_optax.adadelta(state_dtype=state_dtype)
  state = tx.init({"w": jnp.ones(2, state_dtype)})
  big = np.asarray([value, 0.5], np.float64 if isinstance(value, float) else type(value))
  with pytest.raises(
    ValueError, match=r"weights\[1\] \(accum_grad of \['w'\]\): values up to .* do not fit"
  ):
    tx.set_weights(state, [np.int64(1), big, np.zeros(2)])
  np.testing.assert_array_equal(state.accum_grad["w"], 0)


def test_weights_of_the_wrong_kind_name_the_entry():
  """A structured (void) dtype, a string, a ragged list: a TypeError or ValueError naming
  weights[i], not a NumPy error."""
  tx = adadelta_optax.adadelta()
  state = tx.init({"w": jnp.ones(2)})
  structured = np.zeros(2, dtype=[("a", np.float32), ("b", np.float32)])
  for bad in (structured, np.array(["a", "b"]), [[1.0], [2.0, 3.0]], "0.5"):
    with pytest.raises((TypeError, ValueError), match=r"weights\[2\]"):
      tx.set_weights(state, [np.int64(1), np.zeros(2), bad])
  with pytest.raises(ValueError, match=r"weights\[0\] \(iterations\)"):
    tx.set_weights(state, [True, np.zeros(2), np.zeros(2)])
