"""Every bad input raises early, naming the argument (or path), the value and what is allowed."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

from helpers import enable_x64, require_float16

# (kwargs, exception, fragments that must all appear in the message)
CONSTRUCTION = {
  "lr_negative": (dict(learning_rate=-0.1), ValueError, ["learning_rate", "-0.1", ">= 0"]),
  "lr_nan": (dict(learning_rate=float("nan")), ValueError, ["learning_rate", "nan", "finite"]),
  "lr_inf": (dict(learning_rate=float("inf")), ValueError, ["learning_rate", "inf", "finite"]),
  "lr_string": (dict(learning_rate="0.1"), TypeError, ["learning_rate", "'0.1'", "real number"]),
  "lr_vector": (dict(learning_rate=np.array([0.1, 0.2])), TypeError, ["learning_rate", "(2,)"]),
  "lr_bool": (dict(learning_rate=True), TypeError, ["learning_rate", "True"]),
  "lr_jax_negative": (dict(learning_rate=jnp.array(-1.0)), ValueError, ["learning_rate", "-1"]),
  "rho_negative": (dict(rho=-0.1), ValueError, ["rho", "-0.1", "[0, 1]"]),
  "rho_above_one": (dict(rho=1.5), ValueError, ["rho", "1.5", "[0, 1]"]),
  "rho_nan": (dict(rho=float("nan")), ValueError, ["rho", "nan", "[0, 1]"]),
  "epsilon_zero": (dict(epsilon=0.0), ValueError, ["epsilon", "0.0", "> 0"]),
  "epsilon_negative": (dict(epsilon=-1e-7), ValueError, ["epsilon", "-1e-07", "> 0"]),
  "epsilon_inf": (dict(epsilon=float("inf")), ValueError, ["epsilon", "inf", "> 0"]),
  "decay_negative": (dict(decay=-0.01), ValueError, ["decay", "-0.01", ">= 0"]),
  "decay_nan": (dict(decay=float("nan")), ValueError, ["decay", "nan", ">= 0"]),
  "wd_negative": (dict(weight_decay=-1e-4), ValueError, ["weight_decay", "-0.0001", ">= 0"]),
  "wd_inf": (dict(weight_decay=float("inf")), ValueError, ["weight_decay", "inf", ">= 0"]),
  "clipnorm_zero": (dict(clipnorm=0.0), ValueError, ["clipnorm", "0.0", "> 0"]),
  "clipnorm_negative": (dict(clipnorm=-1.0), ValueError, ["clipnorm", "-1.0", "> 0"]),
  "clipvalue_zero": (dict(clipvalue=0), ValueError, ["clipvalue", "0", "> 0"]),
  "clipvalue_nan": (dict(clipvalue=float("nan")), ValueError, ["clipvalue", "nan", "> 0"]),
  "global_clipnorm_negative": (
    dict(global_clipnorm=-2.0),
    ValueError,
    ["global_clipnorm", "-2.0", "> 0"],
  ),
  "global_clipnorm_inf": (
    dict(global_clipnorm=float("inf")),
    ValueError,
    ["global_clipnorm", "inf", "> 0"],
  ),
  "clipnorm_and_global": (
    dict(clipnorm=1.0, global_clipnorm=2.0),
    ValueError,
    ["clipnorm", "global_clipnorm", "1.0", "2.0", "cannot both"],
  ),
  "state_dtype_int": (dict(state_dtype=jnp.int32), TypeError, ["state_dtype", "int32", "float32"]),
  "state_dtype_complex": (
    dict(state_dtype="complex64"),
    TypeError,
    ["state_dtype", "complex64", "floating"],
  ),
  "state_dtype_garbage": (dict(state_dtype="fp32"), TypeError, ["state_dtype", "fp32", "floating"]),
  "maximize_string": (dict(maximize="yes"), TypeError, ["maximize", "'yes'", "bool"]),
  "decoupled_int": (dict(decoupled_weight_decay=1), TypeError, ["decoupled_weight_decay", "1"]),
  "mask_not_bool": (
    dict(weight_decay=0.1, weight_decay_mask={"w": 1}),
    TypeError,
    ["weight_decay_mask", "['w']", "bool"],
  ),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTION))
def test_bad_construction_arguments(name):
  kwargs, error, fragments = CONSTRUCTION[name]
  with pytest.raises(error) as info:
    adadelta_optax.adadelta(**kwargs)
  for fragment in fragments:
    assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize(
  "kwargs,fragment",
  [
    (dict(rho=2.0), "rho"),
    (dict(epsilon=0.0), "epsilon"),
    (dict(state_dtype="int8"), "state_dtype"),
  ],
)
def test_scale_by_adadelta_validates_too(kwargs, fragment):
  with pytest.raises((ValueError, TypeError), match=fragment):
    adadelta_optax.scale_by_adadelta(**kwargs)


@pytest.mark.parametrize("preset", ["paper", "keras_v1", "keras_v2", "keras3", "torch", "optax"])
def test_presets_validate_overrides(preset):
  with pytest.raises(ValueError, match="rho"):
    getattr(adadelta_optax.presets, preset)(rho=-1.0)
  with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
    getattr(adadelta_optax.presets, preset)(lr=1.0)


def test_integer_leaf_at_init_names_path_and_masked():
  tx = adadelta_optax.adadelta()
  params = {"dense": {"w": jnp.ones(3)}, "step": jnp.array(3, jnp.int32)}
  with pytest.raises(TypeError) as info:
    tx.init(params)
  message = str(info.value)
  assert "['step']" in message and "int32" in message and "optax.masked" in message


def test_integer_gradient_at_update():
  tx = adadelta_optax.adadelta()
  state = tx.init({"w": jnp.ones(2)})
  with pytest.raises(TypeError, match=re.escape("['w']")):
    tx.update({"w": jnp.ones(2, jnp.int32)}, state)


def test_gradient_structure_mismatch():
  tx = adadelta_optax.adadelta()
  state = tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})
  with pytest.raises(ValueError, match="structure differs"):
    tx.update({"w": jnp.ones(2)}, state)


@pytest.mark.parametrize("jit", [False, True])
def test_gradient_shape_mismatch_names_leaf(jit):
  tx = adadelta_optax.adadelta()
  state = tx.init({"w": jnp.ones((2, 3)), "b": jnp.ones(1)})
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(ValueError) as info:
    update({"w": jnp.ones((3, 2)), "b": jnp.ones(1)}, state)
  assert "['w']" in str(info.value) and "(3, 2)" in str(info.value) and "(2, 3)" in str(info.value)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_needs_params(decoupled):
  tx = adadelta_optax.adadelta(weight_decay=0.1, decoupled_weight_decay=decoupled)
  state = tx.init(jnp.ones(2))
  with pytest.raises(ValueError, match="weight_decay needs the params"):
    tx.update(jnp.ones(2), state)


def test_zero_weight_decay_needs_no_params():
  tx = adadelta_optax.adadelta()
  updates, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
  assert updates.shape == (2,)


def test_params_tree_mismatch_for_weight_decay():
  tx = adadelta_optax.adadelta(weight_decay=0.1)
  state = tx.init({"w": jnp.ones(2)})
  with pytest.raises(ValueError, match="params"):
    tx.update({"w": jnp.ones(2)}, state, {"v": jnp.ones(2)})


def test_traced_weight_decay_without_params_is_explained():
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=0.1)
  state = tx.init(jnp.ones(2))
  with pytest.raises(ValueError, match="static_args"):
    jax.jit(tx.update)(jnp.ones(2), state)
  static = optax.inject_hyperparams(adadelta_optax.adadelta, static_args=("weight_decay",))(
    learning_rate=0.1
  )
  updates, _ = jax.jit(static.update)(jnp.ones(2), static.init(jnp.ones(2)))
  assert np.all(np.isfinite(updates))


def test_float64_state_without_x64_is_refused():
  with enable_x64(False):
    tx = adadelta_optax.adadelta(state_dtype="float64")
    with pytest.raises(ValueError, match="jax_enable_x64"):
      tx.init(jnp.ones(2))


def test_wrong_state_type():
  tx = adadelta_optax.adadelta()
  with pytest.raises(TypeError, match="AdadeltaState"):
    tx.update(jnp.ones(2), optax.sgd(0.1).init(jnp.ones(2)))


def test_negative_concrete_value_through_inject_hyperparams_is_refused():
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=-0.5)
  with pytest.raises(ValueError, match="learning_rate"):
    tx.init(jnp.ones(2))


def test_tracers_are_accepted_without_value_checks():
  """Hyperparameters traced by jit are not inspected (they may legitimately be anything)."""

  @jax.jit
  def step(lr, rho, eps, g):
    tx = adadelta_optax.adadelta(lr, rho, eps, weight_decay=lr * 0.0, clipnorm=rho + 1.0)
    return tx.update(g, tx.init(g), g)[0]

  out = step(0.5, 0.9, 1e-6, jnp.ones(3))
  assert out.shape == (3,) and bool(jnp.all(out < 0))


@pytest.mark.parametrize(
  ("kwargs", "dtype", "fragment"),
  [
    (dict(epsilon=3.5e38), jnp.float32, "epsilon=3.5e+38 overflows float32"),
    (dict(clipnorm=1e39), jnp.float32, "clipnorm=1e+39 overflows float32"),
    (dict(global_clipnorm=1e39), jnp.float32, "global_clipnorm=1e+39 overflows float32"),
    (dict(decay=1e39), jnp.float32, "decay=1e+39 overflows float32"),
    (dict(weight_decay=1e39), jnp.float32, "weight_decay=1e+39 overflows float32"),
    # 16-bit params step in float32 (_dtypes.step_dtype): what float32 cannot hold is refused.
    (dict(clipvalue=1e39), jnp.float16, "clipvalue=1e+39 overflows float32"),
    (dict(epsilon=1e-50), jnp.bfloat16, "epsilon=1e-50 is 0 in float32"),
    (dict(epsilon=1e-50), jnp.float32, "epsilon=1e-50 is 0 in float32"),
    (dict(learning_rate=1e39), jnp.float32, "learning_rate=1e+39 overflows float32"),
  ],
)
@pytest.mark.parametrize("implementation", ["auto", "fused", "xla"])
def test_hyperparameters_that_do_not_fit_the_params_dtype(kwargs, dtype, fragment, implementation):
  """Numbers that become inf (or 0 for epsilon) in the dtype the step computes in once turned
  the params into NaN; now the first update (eager or traced) names the argument and dtype."""
  if dtype == jnp.float16:
    require_float16()
  tx = adadelta_optax.adadelta(**kwargs, implementation=implementation)
  params = {"w": jnp.zeros(3, dtype), "v": jnp.ones(2, dtype)}
  state = tx.init(params)
  for step in (tx.update, jax.jit(tx.update), jax.jit(tx.apply_gradients)):
    with pytest.raises(ValueError, match=fragment.replace("+", r"\+")):
      step(params, state, params)
  # The same numbers are fine where they fit: float64 params (or a wider state_dtype).
  wide = {k: v.astype(jnp.float64) for k, v in params.items()}
  updates, _ = tx.update(wide, tx.init(wide), wide)
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("implementation", ["auto", "fused", "xla"])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_a_16_bit_step_takes_an_epsilon_that_is_0_in_16_bits(implementation, dtype):
  """Issue 22, item 6: epsilon=1e-8 (tf-keras' own float16 tests) is 0 in float16, and was
  refused; the step now computes in float32, so it works, and a zero gradient moves nothing
  (in 16 bits it gave 0 / 0 = NaN)."""
  if dtype == jnp.float16:
    require_float16()
  tx = adadelta_optax.adadelta(epsilon=1e-8, implementation=implementation)
  params = {"w": jnp.asarray([1.0, -2.0, 0.5], dtype)}
  state = tx.init(params)
  zero = {"w": jnp.zeros(3, dtype)}
  for step in (tx.update, jax.jit(tx.update)):
    updates, new_state = step(zero, state, params)
    np.testing.assert_array_equal(np.asarray(updates["w"], np.float32), 0.0)
    np.testing.assert_array_equal(np.asarray(new_state.accum_grad["w"], np.float32), 0.0)
  # A gradient of 0.2: the update is sqrt(1e-8) / sqrt(0.05 * 0.04 + 1e-8) * 0.2 (float64),
  # computed in float32 (a few float32 ulps from float64: sqrt, divide, multiplies) and rounded
  # once to the param's dtype (half an ulp of it).
  g = jnp.asarray(0.2, dtype)
  updates, _ = jax.jit(tx.update)({"w": jnp.full(3, g)}, state, params)
  exact = -1e-4 / np.sqrt(0.05 * float(g) ** 2 + 1e-8) * float(g)
  bound = 0.5 * float(np.spacing(np.asarray(abs(exact), dtype))) + 4 * 2.0**-23 * abs(exact)
  np.testing.assert_allclose(np.asarray(updates["w"], np.float64), exact, rtol=0, atol=bound)
