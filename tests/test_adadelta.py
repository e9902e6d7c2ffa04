"""adadelta(): every option against the independent NumPy reference, and published values."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

import reference
from helpers import (
  LEAF_MAX,
  OPTIONS,
  _mask_fn,
  _options,
  assert_matches_reference,
  assert_trees_close,
  random_grads,
  random_tree,
  run_jax,
  run_reference,
)

STEPS = 110


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_trajectory_float64(name, jit):
  """110 steps on a nested tree (scalar, empty and complex leaves) agree to 1e-12 in float64."""
  kwargs, overrides = OPTIONS[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = random_tree(rng, np.float64, complex_leaf=True)
  grads = random_grads(rng, params, STEPS)
  final, state = run_jax(adadelta_optax.adadelta(**kwargs), params, grads, jit=jit)
  assert all(x.dtype in (jnp.float64, jnp.complex128) for x in jax.tree.leaves(final))
  assert_matches_reference(
    final, state, run_reference(params, grads, _options(kwargs, overrides)), rtol=1e-12
  )


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_trajectory_float32(name, jit):
  """The same in float32 (and complex64) agrees with the float64 reference to 1e-6."""
  kwargs, overrides = OPTIONS[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()) + 32)
  params = random_tree(rng, np.float32, complex_leaf=True)
  grads = random_grads(rng, params, STEPS)
  final, state = run_jax(adadelta_optax.adadelta(**kwargs), params, grads, jit=jit)
  assert all(x.dtype in (jnp.float32, jnp.complex64) for x in jax.tree.leaves(final))
  assert all(x.dtype in (jnp.float32, jnp.complex64) for x in jax.tree.leaves(state.accum_var))
  assert_matches_reference(
    final, state, run_reference(params, grads, _options(kwargs, overrides)), rtol=1e-6
  )


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("mask_kind", ["tree", "prefix", "callable"])
def test_weight_decay_mask(mask_kind, decoupled):
  """Only masked-in leaves decay; a tree mask, a prefix mask and a callable agree."""
  rng = np.random.default_rng(7)
  params = random_tree(rng, np.float64)
  grads = random_grads(rng, params, 40)
  leaf_mask = jax.tree.map(lambda x: np.ndim(x) > 1, params)
  mask = {
    "tree": leaf_mask,
    "prefix": {"dense": True, "layers": False, "scalar": False},
    "callable": _mask_fn,
  }[mask_kind]
  if mask_kind == "prefix":
    leaf_mask = jax.tree.map(lambda _: False, params)
    leaf_mask["dense"] = jax.tree.map(lambda _: True, params["dense"])
  kwargs = dict(weight_decay=0.1, decoupled_weight_decay=decoupled, weight_decay_mask=mask)
  final, state = run_jax(adadelta_optax.adadelta(**kwargs), params, grads, jit=True)
  options = reference.Options(
    weight_decay=0.1,
    decoupled_weight_decay=decoupled,
    mask=[bool(m) for m in jax.tree.leaves(leaf_mask)],
  )
  assert_matches_reference(final, state, run_reference(params, grads, options), rtol=1e-12)


def test_state_dtype_float32_for_bfloat16_params():
  """bfloat16 params with float32 accumulators: the step is computed in float32.

  The reference steps in float64 from the same bfloat16 params (rounded every step, as
  ``optax.apply_updates`` stores them), so accumulators agree to float32 precision and each
  update to one bfloat16 rounding.
  """
  rng = np.random.default_rng(3)
  params = {"w": rng.normal(size=(64,)).astype(jnp.bfloat16), "b": np.float32(0.5)}
  tx = adadelta_optax.adadelta(state_dtype=jnp.float32, weight_decay=0.01)
  p = jax.tree.map(jnp.asarray, params)
  state = tx.init(p)
  assert state.accum_grad["w"].dtype == jnp.float32
  ref = reference.Reference(
    jax.tree.leaves(jax.tree.map(lambda x: np.float64(x), p)), reference.Options(weight_decay=0.01)
  )
  update = jax.jit(tx.update)
  for _ in range(30):
    g = {"w": jnp.asarray(rng.normal(size=(64,)), jnp.bfloat16), "b": jnp.float32(rng.normal())}
    updates, state = update(g, state, p)
    assert updates["w"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.float32
    ref.params = [np.asarray(x, np.float64) for x in jax.tree.leaves(p)]
    expected = ref.step([np.asarray(x, np.float64) for x in jax.tree.leaves(g)])
    expected_bf16 = np.asarray(jnp.asarray(expected[1], jnp.bfloat16), np.float64)
    # Computed in float32 by XLA (a few float32 ulps from the exact value, by CPU and XLA
    # version), then rounded to bfloat16: that double rounding may land one bfloat16 ulp from
    # the float64 reference rounded once.
    bf16_ulp = float(jnp.finfo(jnp.bfloat16).eps)
    np.testing.assert_allclose(
      np.asarray(updates["w"], np.float64), expected_bf16, rtol=bf16_ulp, atol=0
    )
    assert_trees_close(updates["b"], expected[0], rtol=1e-6, floor=LEAF_MAX, what="update b")
    assert_trees_close(
      state.accum_grad, ref.accum_grad, rtol=1e-6, floor=LEAF_MAX, what="accum_grad"
    )
    assert_trees_close(state.accum_var, ref.accum_var, rtol=1e-6, floor=LEAF_MAX, what="accum_var")
    p = optax.apply_updates(p, updates)
  assert p["w"].dtype == jnp.bfloat16


def test_state_dtype_float64_for_float32_params():
  """float32 params with float64 state agree with the float64 reference to float32 rounding."""
  rng = np.random.default_rng(11)
  params = random_tree(rng, np.float32, complex_leaf=True)
  grads = random_grads(rng, params, STEPS)
  final, state = run_jax(adadelta_optax.adadelta(state_dtype="float64"), params, grads, jit=True)
  assert state.accum_grad["phase"].dtype == jnp.complex128
  assert final["phase"].dtype == jnp.complex64
  ref = run_reference(params, grads, reference.Options())
  assert_trees_close(state.accum_var, ref.accum_var, rtol=1e-6, floor=LEAF_MAX, what="accum_var")
  assert_trees_close(final, ref.params, rtol=1e-6, floor=LEAF_MAX, what="params")


def test_complex_parts_are_independent():
  """A complex leaf behaves exactly like its real and imaginary parts as two real leaves."""
  rng = np.random.default_rng(5)
  z = rng.normal(size=(6,)) + 1j * rng.normal(size=(6,))
  grads = [rng.normal(size=(6,)) + 1j * rng.normal(size=(6,)) for _ in range(50)]
  tx = adadelta_optax.adadelta(learning_rate=0.7, weight_decay=0.1)
  complex_final, complex_state = run_jax(tx, z, grads, jit=True)
  real_final, real_state = run_jax(
    tx, {"re": z.real, "im": z.imag}, [{"re": g.real, "im": g.imag} for g in grads], jit=True
  )
  np.testing.assert_allclose(np.real(complex_final), real_final["re"], rtol=1e-14)
  np.testing.assert_allclose(np.imag(complex_final), real_final["im"], rtol=1e-14)
  np.testing.assert_allclose(
    np.imag(complex_state.accum_grad), real_state.accum_grad["im"], rtol=1e-14
  )


def test_presets_defaults():
  """Each preset carries its framework's documented defaults."""
  expected = {
    "paper": (1.0, 0.95, 1e-6, False),
    "keras_v1": (1.0, 0.95, 1e-7, False),
    "keras_v2": (0.001, 0.95, 1e-7, False),
    "keras3": (0.001, 0.95, 1e-7, True),
    "torch": (1.0, 0.9, 1e-6, False),
    "optax": (1.0, 0.9, 1e-6, False),
  }
  for name, (lr, rho, eps, decoupled) in expected.items():
    h = getattr(adadelta_optax.presets, name)().hyperparams
    assert (h["learning_rate"], h["rho"], h["epsilon"], h["decoupled_weight_decay"]) == (
      lr,
      rho,
      eps,
      decoupled,
    ), name
  assert adadelta_optax.presets.keras3(learning_rate=1.0).hyperparams["learning_rate"] == 1.0
  default = adadelta_optax.adadelta().hyperparams
  assert (default["learning_rate"], default["rho"], default["epsilon"]) == (1.0, 0.95, 1e-7)


PRESETS = ["paper", "keras_v1", "keras_v2", "keras3", "torch", "optax"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_wrap_like_adadelta(name):
  """optax.inject_hyperparams(preset) works like inject_hyperparams(adadelta): the preset's own
  defaults stay, the injected learning rate steers the numbers, and static_args are accepted."""
  preset = getattr(adadelta_optax.presets, name)
  defaults = preset().hyperparams
  params = {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(2)}
  grads = jax.tree.map(lambda x: 0.3 * x + 0.1, params)
  injected = optax.inject_hyperparams(preset)(learning_rate=0.1)
  state = injected.init(params)
  for field in ("rho", "epsilon", "decay", "weight_decay"):
    np.testing.assert_allclose(state.hyperparams[field], defaults[field], rtol=1e-7)
  updates, _ = jax.jit(injected.update)(grads, state, params)
  expected, _ = preset(learning_rate=0.1).update(grads, preset().init(params), params)
  assert_trees_close(updates, expected, rtol=1e-6, floor=LEAF_MAX, what=name)
  # Positional arguments and static_args bind as for adadelta().
  assert preset(0.25).hyperparams["learning_rate"] == 0.25
  static = optax.inject_hyperparams(preset, static_args=("weight_decay",))(weight_decay=0.0)
  assert "weight_decay" not in static.init(params).hyperparams


def test_optax_preset_matches_optax_adadelta():
  """presets.optax() equals optax.adadelta (with a learning rate) on real-valued trees."""
  rng = np.random.default_rng(2)
  params = random_tree(rng, np.float64)
  grads = random_grads(rng, params, 60)
  ours, _ = run_jax(
    adadelta_optax.presets.optax(learning_rate=0.5, weight_decay=0.01), params, grads, jit=True
  )
  theirs, _ = run_jax(optax.adadelta(learning_rate=0.5, weight_decay=0.01), params, grads, jit=True)
  assert_trees_close(ours, theirs, rtol=1e-12, floor=LEAF_MAX, what="params")


# --- Published values -------------------------------------------------------------------------

TF_VAR0_GRAD02_LR1 = [0.9995527875, 0.9990998779, 0.9986431144, 0.9981834098]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("grad", [0.2, 0.1, 0.01])
@pytest.mark.parametrize("lr", [1.0, 0.5, 0.1])
def test_tensorflow_adadelta_test(grad, lr, dtype):
  """TensorFlow's adadelta_test.doTestBasic: 4 steps, rho 0.95, eps 1e-8, two variables.

  TF checks params and both slots against its closed form with rtol 1e-5; the 10-digit values
  for grad 0.2, lr 1.0 are the published ones.
  """
  rho, eps = 0.95, 1e-8
  tx = adadelta_optax.adadelta(lr, rho, eps)
  params = {"var0": jnp.array([1.0, 2.0], dtype), "var1": jnp.array([3.0, 4.0], dtype)}
  state = tx.init(params)
  accum = accum_update = total = 0.0
  for step in range(4):
    g = jnp.full((2,), grad, dtype)
    updates, state = tx.update({"var0": g, "var1": g}, state, params)
    params = optax.apply_updates(params, updates)
    accum = accum * rho + grad**2 * (1 - rho)
    update = np.sqrt(accum_update + eps) * (1.0 / np.sqrt(accum + eps)) * grad
    accum_update = accum_update * rho + update**2 * (1.0 - rho)
    total += update * lr
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    for name, init in (("var0", [1.0, 2.0]), ("var1", [3.0, 4.0])):
      np.testing.assert_allclose(params[name], np.array(init) - total, rtol=tol)
      np.testing.assert_allclose(state.accum_grad[name], [accum, accum], rtol=tol)
      np.testing.assert_allclose(state.accum_var[name], [accum_update] * 2, rtol=tol)
    if grad == 0.2 and lr == 1.0:
      np.testing.assert_allclose(
        params["var0"][0],
        TF_VAR0_GRAD02_LR1[step],
        rtol=1e-6 if dtype == jnp.float32 else 0,
        atol=5e-11,
      )


def test_tensorflow_sparse_minimize_published():
  """TF testMinimizeSparseResourceVariable: Adadelta(1, 1, 1), (x0 @ [4, 5])^2 -> [-111, -138]."""
  tx = adadelta_optax.adadelta(1.0, 1.0, 1.0)
  var0 = jnp.array([[1.0, 2.0]])
  updates, _ = tx.get_updates(
    lambda v: jnp.sum((v @ jnp.array([[4.0], [5.0]])) ** 2), var0, tx.init(var0)
  )
  np.testing.assert_array_equal(optax.apply_updates(var0, updates), [[-111.0, -138.0]])


def test_keras3_single_step():
  """Keras 3 test_single_step: lr 0.5, grads [1, 6, 7, 2] on [1, 2, 3, 4] -> x - 0.000707."""
  tx = adadelta_optax.presets.keras3(learning_rate=0.5)
  x = jnp.array([1.0, 2.0, 3.0, 4.0], jnp.float32)
  updates, _ = tx.update(jnp.array([1.0, 6.0, 7.0, 2.0], jnp.float32), tx.init(x), x)
  np.testing.assert_allclose(
    optax.apply_updates(x, updates), [0.99929289, 1.99929289, 2.99929289, 3.99929289], rtol=1e-7
  )


def test_keras3_golden():
  """Keras 3 test_correctness_with_golden: lr 1, rho 0.8, eps 1e-6 (0.997818 after one step)."""
  tx = adadelta_optax.presets.keras3(learning_rate=1.0, rho=0.8, epsilon=1e-6)
  x = jnp.ones(10, jnp.float32)
  state = tx.init(x)
  updates, state = tx.update(jnp.full((10,), 0.01, jnp.float32), state, x)
  x = optax.apply_updates(x, updates)
  np.testing.assert_allclose(x, np.full(10, 0.997818), rtol=0, atol=5e-7)
  grads = jnp.arange(0.1, 1.1, 0.1, dtype=jnp.float32)[:10]
  for golden in [0.9947, 0.9915, 0.9882, 0.9849]:
    updates, state = tx.update(grads, state, x)
    x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(x, np.full(10, golden), rtol=5e-4, atol=5e-4)


def test_keras3_weight_decay_published():
  """Keras 3 test_weight_decay: wd 0.004 on zero grads, 3 steps -> 2 * 0.996**3; excluded stays."""
  tx = adadelta_optax.presets.keras3(
    learning_rate=1.0, weight_decay=0.004, weight_decay_mask={"var1": True, "exclude": False}
  )
  params = {"var1": jnp.float32(2.0), "exclude": jnp.float32(2.0)}
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params["var1"], 1.9760959, atol=1e-6)
  np.testing.assert_allclose(2 * 0.996**3, 1.9760959, atol=1e-7)
  assert float(params["exclude"]) == 2.0


def test_keras3_clipping_published():
  """Keras 3 test_clip_norm / test_clip_value on [100, 100]."""
  g = jnp.array([100.0, 100.0])
  by_norm, _ = adadelta_optax.clip_gradients(clipnorm=1.0).update(g, optax.EmptyState())
  by_value, _ = adadelta_optax.clip_gradients(clipvalue=1.0).update(g, optax.EmptyState())
  np.testing.assert_allclose(by_norm, [2**0.5 / 2, 2**0.5 / 2], rtol=1e-15)
  np.testing.assert_array_equal(by_value, [1.0, 1.0])


def test_paper_default_reaches_lower_loss_than_keras_v2_default():
  """The tf.keras 2.x default lr 0.001 barely moves ("not learning"); the paper's form learns."""
  target = jnp.linspace(-1.0, 1.0, 8)
  loss = lambda x: jnp.mean((x - target) ** 2)  # noqa: E731
  losses = {}
  for name in ("paper", "keras_v2"):
    tx = getattr(adadelta_optax.presets, name)()
    x = jnp.zeros(8)
    state = tx.init(x)
    for _ in range(300):
      updates, state = tx.update(jax.grad(loss)(x), state, x)
      x = optax.apply_updates(x, updates)
    losses[name] = float(loss(x))
  assert losses["paper"] < 0.05 * float(loss(jnp.zeros(8)))
  assert losses["keras_v2"] > 0.9 * float(loss(jnp.zeros(8)))
