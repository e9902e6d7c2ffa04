"""scale_by_adadelta (the bare rule) and scale_by_decayed_learning_rate on their own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

import reference
from helpers import LEAF_MAX, assert_trees_close, random_grads, random_tree


@pytest.mark.parametrize("jit", [False, True])
def test_bare_rule_returns_unscaled_positive_update(jit):
  """u_t itself (no learning rate, no sign flip), 100 steps, against the reference."""
  rng = np.random.default_rng(1)
  params = random_tree(rng, np.float64, complex_leaf=True)
  grads = random_grads(rng, params, 100)
  tx = adadelta_optax.scale_by_adadelta(rho=0.9, epsilon=1e-6)
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  # learning_rate=-1 makes the reference's applied delta equal to +u_t.
  ref = reference.Reference(
    jax.tree.leaves(params), reference.Options(learning_rate=-1.0, rho=0.9, epsilon=1e-6)
  )
  for g in grads:
    updates, state = update(g, state)
    expected = ref.step(jax.tree.leaves(g))
    assert_trees_close(updates, expected, rtol=1e-12, floor=LEAF_MAX, what="updates")
  assert isinstance(state, adadelta_optax.ScaleByAdadeltaState)
  assert_trees_close(
    state.accum_grad, ref.accum_grad, rtol=1e-12, floor=LEAF_MAX, what="accum_grad"
  )
  assert_trees_close(state.accum_var, ref.accum_var, rtol=1e-12, floor=LEAF_MAX, what="accum_var")


def test_first_step_closed_form():
  """Step 1: u = sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g, D = (1 - rho) u^2."""
  tx = adadelta_optax.scale_by_adadelta(rho=0.95, epsilon=1e-6)
  g = np.array([1.0, -2.0, 0.0, 1e-4])
  u, state = tx.update(jnp.asarray(g), tx.init(jnp.zeros(4)))
  expected = np.sqrt(1e-6) / np.sqrt(0.05 * g**2 + 1e-6) * g
  np.testing.assert_allclose(u, expected, rtol=1e-15)
  np.testing.assert_allclose(state.accum_grad, 0.05 * g**2, rtol=1e-15)
  np.testing.assert_allclose(state.accum_var, 0.05 * expected**2, rtol=1e-15)


def test_state_dtype_keeps_update_dtype():
  tx = adadelta_optax.scale_by_adadelta(state_dtype=jnp.float32)
  params = {"w": jnp.ones(3, jnp.bfloat16), "z": jnp.ones(2, jnp.complex64)}
  state = tx.init(params)
  assert state.accum_grad["w"].dtype == jnp.float32
  assert state.accum_var["z"].dtype == jnp.complex64
  u, _ = tx.update(params, state)
  assert u["w"].dtype == jnp.bfloat16 and u["z"].dtype == jnp.complex64


def test_tree_get_finds_named_fields():
  """Named state fields are reachable with optax.tree_utils.tree_get, also inside chains."""
  tx = optax.chain(optax.clip(1.0), adadelta_optax.adadelta())
  state = tx.init({"w": jnp.ones(2)})
  assert optax.tree_utils.tree_get(state, "accum_grad")["w"].shape == (2,)
  assert int(optax.tree_utils.tree_get(state, "count")) == 0


def test_decayed_learning_rate_formula():
  """lr_t = lr(t) / (1 + decay * t), t = updates already applied (0 at the first update)."""
  schedule = lambda t: 0.5 + 0.1 * t  # noqa: E731
  tx = adadelta_optax.scale_by_decayed_learning_rate(schedule, decay=0.25)
  state = tx.init(None)
  for t in range(6):
    updates, state = tx.update(jnp.float64(1.0), state)
    assert float(updates) == -(0.5 + 0.1 * t) / (1 + 0.25 * t)
  assert int(state.count) == 6


def test_count_saturates_instead_of_overflowing():
  tx = adadelta_optax.scale_by_decayed_learning_rate(1.0)
  state = adadelta_optax.ScaleByDecayedLearningRateState(jnp.asarray(2**31 - 1, jnp.int32))
  _, state = tx.update(jnp.float32(1.0), state)
  assert int(state.count) == 2**31 - 1


# --- The step as an optax chain of the package's transforms ----------------------------------


def _recipe(*, decoupled, **k):
  """docs/howto/behaviour.md, "The step as an optax chain", with these arguments."""
  decay = adadelta_optax.add_decayed_weights(k["weight_decay"], k["weight_decay_mask"])
  none = adadelta_optax.add_decayed_weights(0.0)
  return optax.chain(
    adadelta_optax.clip_gradients(k.get("clipvalue"), k.get("clipnorm"), k.get("global_clipnorm")),
    none if decoupled else decay,  # coupled L2: before the rule (torch, optax)
    adadelta_optax.scale_by_adadelta(k["rho"], k["epsilon"]),
    decay if decoupled else none,  # decoupled (Keras 3): after it
    adadelta_optax.scale_by_decayed_learning_rate(k["learning_rate"], k["decay"]),
  )


@pytest.mark.parametrize(
  "options",
  [
    dict(clipvalue=0.3, clipnorm=0.8, decoupled_weight_decay=False),
    dict(clipvalue=0.3, global_clipnorm=0.8, decoupled_weight_decay=True),
  ],
  ids=["clips_coupled", "global_decoupled"],
)
def test_the_optax_chain_recipe_is_the_xla_path(options):
  """adadelta(implementation="xla") is this chain of public transforms, bit for bit (float32
  and float64 leaves, a weight-decay mask, the legacy decay and a schedule), so a user who wants
  the pieces can compose them and get the same numbers."""
  rng = np.random.default_rng(3)
  params = {
    "w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(3,)), jnp.float64),
  }
  k = dict(
    learning_rate=optax.exponential_decay(0.5, 3, 0.7),
    rho=0.9,
    epsilon=1e-6,
    decay=0.01,
    weight_decay=1e-3,
    weight_decay_mask={"w": True, "b": False},
    **{key: value for key, value in options.items() if key != "decoupled_weight_decay"},
  )
  decoupled = options["decoupled_weight_decay"]
  tx = adadelta_optax.adadelta(**k, decoupled_weight_decay=decoupled, implementation="xla")
  recipe = _recipe(decoupled=decoupled, **k)
  state, recipe_state = tx.init(params), recipe.init(params)
  for _ in range(6):
    grads = {key: jnp.asarray(rng.normal(size=v.shape), v.dtype) for key, v in params.items()}
    updates, state = jax.jit(tx.update)(grads, state, params)
    expected, recipe_state = jax.jit(recipe.update)(grads, recipe_state, params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
      assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    params = optax.apply_updates(params, updates)
  assert bool(jnp.any(updates["w"] != 0))
