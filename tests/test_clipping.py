"""Clipping reproduces TensorFlow's formulas operation for operation, quirks included."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

import reference


def _clip(tree, **kwargs):
  return adadelta_optax.clip_gradients(**kwargs).update(tree, optax.EmptyState())[0]


def test_clipnorm_formula():
  """tf.clip_by_norm: (g * c) / max(||g||, c), to the last bit or one (XLA's reciprocal)."""
  rng = np.random.default_rng(0)
  for scale in (1e-3, 1.0, 1e3):
    g = rng.normal(size=1000) * scale
    c = 0.7
    out = np.asarray(_clip(jnp.asarray(g), clipnorm=c))
    expected = (g * c) / max(np.linalg.norm(g), c)
    np.testing.assert_allclose(out, expected, rtol=3e-16, atol=0)
    assert np.linalg.norm(out) <= c * (1 + 1e-15)


def test_global_scale_quirk():
  """scale = c * min(1 / norm, 1 / c): 49 * (1 / 49) != 1 in float64, as in TF."""
  g = jnp.array([0.5, 0.25])
  out = np.asarray(_clip(g, global_clipnorm=49.0))
  scale = 49.0 * (1.0 / 49.0)
  assert scale != 1.0
  np.testing.assert_array_equal(out, np.array([0.5, 0.25]) * scale)


def test_global_norm_clips_all_leaves_together():
  tree = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
  out = _clip(tree, global_clipnorm=1.0)
  np.testing.assert_allclose([out["a"][0], out["b"][0]], [0.6, 0.8], rtol=1e-15)


def test_zero_gradient_is_safe():
  for kwargs in (dict(clipnorm=1.0), dict(global_clipnorm=1.0)):
    out = _clip({"a": jnp.zeros(3)}, **kwargs)
    np.testing.assert_array_equal(out["a"], 0.0)


def test_non_finite_global_norm_gives_nan_like_tf():
  out = _clip({"a": jnp.array([np.inf, 1.0]), "b": jnp.array([2.0])}, global_clipnorm=1.0)
  assert np.all(np.isnan(out["a"])) and np.all(np.isnan(out["b"]))


def test_order_value_then_norm():
  """clipvalue first: [10, 0.1] -> [1, 0.1] -> norm-clipped; the other order differs."""
  out = np.asarray(_clip(jnp.array([10.0, 0.1]), clipvalue=1.0, clipnorm=0.5))
  v = np.array([1.0, 0.1])
  np.testing.assert_allclose(out, v * 0.5 / np.linalg.norm(v), rtol=1e-15)


def test_complex_norm_and_value():
  z = jnp.array([3.0 + 4.0j])
  np.testing.assert_allclose(_clip(z, clipnorm=1.0), [0.6 + 0.8j], rtol=1e-15)
  np.testing.assert_array_equal(_clip(z, clipvalue=3.5), [3.0 + 3.5j])


# Every clipping option, for non-finite gradients on every path and layout.
NONFINITE_OPTIONS = {
  "none": {},
  "clipvalue": dict(clipvalue=0.5),
  "clipnorm": dict(clipnorm=1.0),
  "clipvalue_then_clipnorm": dict(clipvalue=0.5, clipnorm=1.0),
  "clipnorm_then_clipvalue": dict(clipvalue=0.5, clipnorm=1.0, clip_order="norm_then_value"),
  "global_clipnorm": dict(global_clipnorm=1.0),
}
PATHS = [
  ("kernel", "tree"),
  ("kernel", "flat"),
  ("fused", "tree"),
  ("fused", "flat"),
  ("xla", "tree"),
]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(NONFINITE_OPTIONS))
def test_nonfinite_gradients_with_every_clipping_option_match_the_reference(name, bad):
  """One non-finite entry in one leaf of random float64 gradients: every path and layout gives
  the formulas' result, NaN and inf where the reference has them and its numbers elsewhere.

  With clipnorm a NaN makes that leaf's norm NaN and ``c / max(norm, c)`` NaN: the whole leaf
  NaN, as jnp.maximum and tf.maximum propagate it (the C++ kernel once took ``norm > c`` false
  for NaN and stepped the rest of the leaf unclipped). With global_clipnorm any non-finite entry
  makes every leaf NaN (tf.clip_by_global_norm). Other leaves step as usual."""
  kwargs = NONFINITE_OPTIONS[name]
  rng = np.random.default_rng(zlib.crc32(f"{name}{bad}".encode()))
  params = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}
  grads = {"a": rng.normal(size=(3, 4)) * 2.0, "b": rng.normal(size=(5,)) * 2.0}
  grads["a"][1, 2] = bad
  with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
    ref = reference.run(
      [params["a"], params["b"]], [[grads["a"], grads["b"]]], reference.Options(**kwargs)
    )
  params_j = jax.tree.map(jnp.asarray, params)
  grads_j = jax.tree.map(jnp.asarray, grads)
  for implementation, layout in PATHS:
    tx = adadelta_optax.adadelta(**kwargs, implementation=implementation, state_layout=layout)
    state = tx.init(params_j)
    new_params, new_state = jax.jit(tx.apply_gradients)(grads_j, state, params_j)
    updates, _ = jax.jit(tx.update)(grads_j, state, params_j)
    if layout == "flat":
      new_state = adadelta_optax.tree_state(new_state, params_j)
    got = {
      "params": jax.tree.leaves(new_params),
      "params from update": jax.tree.leaves(optax.apply_updates(params_j, updates)),
      "accum_grad": jax.tree.leaves(new_state.accum_grad),
      "accum_var": jax.tree.leaves(new_state.accum_var),
    }
    want = {
      "params": ref.params,
      "params from update": ref.params,
      "accum_grad": ref.accum_grad,
      "accum_var": ref.accum_var,
    }
    for what, leaves in got.items():
      for leaf, actual, expected in zip("ab", leaves, want[what], strict=True):
        actual, expected = np.asarray(actual), np.asarray(expected)
        where = f"{implementation}/{layout} {what}[{leaf!r}]"
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=where)
        np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected), err_msg=where)
        np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected), err_msg=where)
        finite = np.isfinite(expected)
        np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-12, err_msg=where)
