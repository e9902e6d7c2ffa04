"""flatten_params: the flat layout's round trip, its derivative, its compiled cost, and training.

The gradient through ``unflatten`` is compared with the gradient on the tree, flattened here with
NumPy (not with flatten_params). The cost of that gradient is read from the compiled step (XLA's
optimized HLO and its cost analysis), not from wall time: it must not grow with leaves x params,
as it did when ``unflatten`` cut one ``lax.slice`` per leaf (each slice's derivative is a
zero-padded copy of the whole buffer; XLA fuses the sum of those pads into one loop that computes
every padded copy, so the bytes it reports stay O(params) while its flops grow as leaves x
params). Tests run with 64-bit JAX enabled (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax

from helpers import assert_bitwise, enable_x64, require_float16

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nnx_flat_params.py"


def mixed_tree(rng):
  """Leaves of five dtypes, with a scalar, an empty leaf and a 3-D leaf among them."""
  return {
    "conv": jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32),
    "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
    "scale": jnp.asarray(rng.normal(), jnp.float32),
    "empty": jnp.zeros((0, 3), jnp.float32),
    "wide": [jnp.asarray(rng.normal(size=(4, 2)), jnp.float64), jnp.asarray(rng.normal(size=3))],
    "half": jnp.asarray(rng.normal(size=(6,)), jnp.bfloat16),
    "f16": jnp.asarray(rng.normal(size=(2, 2)), jnp.float16),
    "more_half": jnp.asarray(rng.normal(size=(3, 1)), jnp.bfloat16),
  }


def numpy_flatten(tree):
  """The expected buffers, built with NumPy: per dtype, leaves ravelled in tree order."""
  out: dict[str, list[np.ndarray]] = {}
  for leaf in jax.tree.leaves(tree):
    out.setdefault(np.dtype(leaf.dtype).name, []).append(np.ravel(np.asarray(leaf)))
  return {name: np.concatenate(parts) for name, parts in out.items()}


def loss(tree):
  """Touches every leaf with per-element work, computed in the leaf's own dtype."""
  return sum(jnp.sum(jnp.tanh(x) * jnp.cos(x)).astype(jnp.float32) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("jit", [False, True])
def test_round_trip_is_exact_and_keeps_dtypes(jit):
  tree = mixed_tree(np.random.default_rng(0))
  flat, unflatten = adadelta_optax.flatten_params(tree)
  assert_bitwise(flat, numpy_flatten(tree))
  assert {k: v.shape for k, v in flat.items()} == {
    "float32": (24 + 5 + 1,),
    "float64": (8 + 3,),
    "bfloat16": (6 + 3,),
    "float16": (4,),
  }
  back = (jax.jit(unflatten) if jit else unflatten)(flat)
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.ravel(a).view(np.uint8), np.ravel(b).view(np.uint8))


def test_unflatten_refuses_other_buffers():
  tree = {"w": jnp.ones((2, 3)), "h": jnp.ones(2, jnp.bfloat16)}
  flat, unflatten = adadelta_optax.flatten_params(tree)
  for bad in (
    {"float64": jnp.zeros(6)},  # a dtype missing
    {**flat, "float32": jnp.zeros(3)},  # a dtype more
    {**flat, "float64": jnp.zeros(5)},  # a wrong length
    {**flat, "float64": jnp.zeros((2, 3))},  # not 1-D
  ):
    expected = r"unflatten expects buffers \{'bfloat16': \(2,\), 'float64': \(6,\)\}, got"
    with pytest.raises(ValueError, match=expected):
      unflatten(bad)


def test_empty_tree():
  flat, unflatten = adadelta_optax.flatten_params({})
  assert flat == {} and unflatten({}) == {}


@pytest.mark.parametrize("jit", [False, True])
def test_gradient_through_unflatten_is_the_tree_gradient(jit):
  """Bitwise, in every dtype: the same per-element derivative, only moved into one buffer."""
  require_float16()
  tree = mixed_tree(np.random.default_rng(1))
  flat, unflatten = adadelta_optax.flatten_params(tree)
  grad_flat = jax.grad(lambda f: loss(unflatten(f)))
  grad_tree = jax.grad(loss)
  if jit:
    grad_flat, grad_tree = jax.jit(grad_flat), jax.jit(grad_tree)
  assert_bitwise(grad_flat(flat), numpy_flatten(grad_tree(tree)))


def test_forward_mode_and_vmap():
  """jvp of unflatten is unflatten of the tangent; jvp/jacfwd through it match the tree; vmap
  over a leading batch axis of the buffers gives the leaves with that axis."""
  require_float16()
  tree = mixed_tree(np.random.default_rng(2))
  flat, unflatten = adadelta_optax.flatten_params(tree)
  tangent = {k: jnp.full_like(v, 0.25) for k, v in flat.items()}
  primal_out, tangent_out = jax.jvp(unflatten, (flat,), (tangent,))
  assert_bitwise(numpy_flatten(primal_out), numpy_flatten(tree))
  assert_bitwise(numpy_flatten(tangent_out), {k: np.asarray(v) for k, v in tangent.items()})
  tree_tangent = unflatten(tangent)
  _, d_flat = jax.jvp(lambda f: loss(unflatten(f)), (flat,), (tangent,))
  _, d_tree = jax.jvp(loss, (tree,), (tree_tangent,))
  np.testing.assert_array_equal(d_flat, d_tree)
  small = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.arange(2.0)}
  small_flat, small_unflatten = adadelta_optax.flatten_params(small)
  jac = jax.jacfwd(lambda f: small_unflatten(f)["w"])(small_flat)["float64"]
  np.testing.assert_array_equal(jac.reshape(6, 8), np.eye(8)[2:])  # "b" comes first (sorted)

  batch = {k: jnp.stack([v, 2 * v, -v]) for k, v in flat.items()}
  out = jax.vmap(unflatten)(batch)
  for leaf, expected in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True):
    assert leaf.shape == (3, *expected.shape) and leaf.dtype == expected.dtype
    np.testing.assert_array_equal(leaf[1], 2 * expected)


# --- The compiled cost of the gradient --------------------------------------------------------


def old_flatten_params(tree):
  """The slice-per-leaf unflatten this module replaced (issue 15), for the negative check."""
  leaves, treedef = jax.tree.flatten(tree)
  buffer = jnp.concatenate([jnp.ravel(x) for x in leaves])
  offsets = np.cumsum([0] + [x.size for x in leaves])

  def unflatten(flat):
    return jax.tree.unflatten(
      treedef,
      [
        jax.lax.slice(flat["float32"], (int(start),), (int(start) + x.size,)).reshape(x.shape)
        for start, x in zip(offsets, leaves, strict=False)
      ],
    )

  return {"float32": buffer}, unflatten


def compiled_gradient(leaves, flatten=adadelta_optax.flatten_params, size=1_000):
  """(optimized HLO text, cost analysis, params) of the jitted gradient through unflatten, on a
  float32 tree of ``leaves`` leaves of ``size`` floats."""
  tree = {f"p{i:04d}": jnp.full((size,), 0.5, jnp.float32) for i in range(leaves)}
  flat, unflatten = flatten(tree)
  step = jax.jit(jax.grad(lambda f: loss(unflatten(f))))
  compiled = step.lower(flat).compile()
  return compiled.as_text(), compiled.cost_analysis(), leaves * size


def full_size_pads(hlo, params):
  return re.findall(rf"= f32\[{params}\]\{{0\}} pad\(", hlo)


# What the gradient of the loss must cost, per float32 param: the fusion that computes the
# derivative of a leaf reads its 4 bytes of the param buffer and writes a 4-byte piece, and the
# concatenate reads the pieces and writes the flat gradient (4 + 4): 16 B. Allowing twice that
# (an unfused copy, an extra pass) is still O(params); per-leaf pads would each move the whole
# buffer. XLA counts tanh and cos as transcendentals, and the product, the sum and the
# derivative's multiplies and adds as flops: 7 per param, measured; 16 leaves room for a version
# that counts differently, far below the old implementation's ~1 flop per leaf per param (56 per
# param at 50 leaves, 406 at 400).
MAX_BYTES_PER_PARAM = 32.0
MAX_FLOPS_PER_PARAM = 16.0


def test_gradient_through_unflatten_costs_o_params():
  """From the compiled step: no full-size pad, one concatenate, and bytes and flops per param
  that do not grow from 50 to 200 leaves (4x the leaves and 4x the params)."""
  per_param = {}
  for leaves in (50, 200):
    hlo, cost, params = compiled_gradient(leaves)
    assert not full_size_pads(hlo, params)
    assert " pad(" not in hlo
    assert len(re.findall(rf"= f32\[{params}\]\{{0\}} concatenate\(", hlo)) == 1
    per_param[leaves] = (cost["bytes accessed"] / params, cost["flops"] / params)
  for bytes_pp, flops_pp in per_param.values():
    assert bytes_pp <= MAX_BYTES_PER_PARAM, per_param
    assert flops_pp <= MAX_FLOPS_PER_PARAM, per_param
  assert per_param[200][0] <= 1.25 * per_param[50][0], per_param
  assert per_param[200][1] <= 1.25 * per_param[50][1], per_param


def test_the_old_unflatten_fails_the_cost_check():
  """The check above is not vacuous: the slice-per-leaf unflatten has one full-size pad per leaf
  and flops that grow with the leaves. Its bytes stay O(params) (XLA fuses the pads into one
  loop), which is why flops are checked too."""
  hlo, cost, params = compiled_gradient(50, flatten=old_flatten_params)
  assert len(full_size_pads(hlo, params)) == 50
  assert cost["flops"] / params > 40  # ~1 add per leaf per param
  assert cost["flops"] / params > MAX_FLOPS_PER_PARAM


def test_jaxpr_of_the_gradient_has_one_split_and_one_concatenate_per_dtype():
  tree = mixed_tree(np.random.default_rng(3))
  flat, unflatten = adadelta_optax.flatten_params(tree)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda f: loss(unflatten(f))))(flat))
  # One split and one concatenate per dtype of several leaves; none for f16, which has one leaf
  # (its buffer is that leaf, and JAX's concatenate of one operand is that operand).
  assert len(flat) == 4
  assert jaxpr.count(" split[") == 3
  assert jaxpr.count(" concatenate[") == 3
  assert " pad[" not in jaxpr and " slice[" not in jaxpr


# --- Training -----------------------------------------------------------------------------------


def test_flatten_params_round_trip_and_training():
  """A flat layout keeps dtypes, round-trips, and trains exactly like the tree."""
  rng = np.random.default_rng(4)
  tree = {
    "a": rng.normal(size=(3, 4)).astype(np.float32),
    "b": [rng.normal(size=(5,)), rng.normal(size=()).astype(np.float32)],
    "h": jnp.ones((2,), jnp.bfloat16),
  }
  tree = jax.tree.map(jnp.asarray, tree)
  flat, unflatten = adadelta_optax.flatten_params(tree)
  assert {k: v.shape for k, v in flat.items()} == {
    "float32": (13,),
    "float64": (5,),
    "bfloat16": (2,),
  }
  for a, b in zip(jax.tree.leaves(unflatten(flat)), jax.tree.leaves(tree), strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)

  def loss(p):
    return sum(jnp.sum(jnp.sin(x.astype(jnp.float32)) ** 2) for x in jax.tree.leaves(p))

  tx = adadelta_optax.adadelta(global_clipnorm=1.0, weight_decay=0.01)
  flat_state, tree_state = tx.init(flat), tx.init(tree)
  for _ in range(5):
    flat_grads = jax.grad(lambda f: loss(unflatten(f)))(flat)
    assert set(flat_grads) == set(flat)
    flat, flat_state = jax.jit(tx.apply_gradients)(flat_grads, flat_state, flat)
    tree, tree_state = jax.jit(tx.apply_gradients)(jax.grad(loss)(tree), tree_state, tree)
  for a, b in zip(jax.tree.leaves(unflatten(flat)), jax.tree.leaves(tree), strict=True):
    np.testing.assert_allclose(np.float64(a), np.float64(b), rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="unflatten expects buffers"):
    unflatten({"float32": jnp.zeros(3)})


def test_nnx_flat_params_example():
  """examples/nnx_flat_params.py: the loss goes down, and the flat model follows the same model
  trained on the tree layout (same init, same data) step for step."""
  spec = importlib.util.spec_from_file_location("nnx_flat_params", EXAMPLE)
  assert spec is not None and spec.loader is not None
  module = importlib.util.module_from_spec(spec)
  sys.modules["nnx_flat_params"] = module
  try:
    spec.loader.exec_module(module)
    with enable_x64(False):  # as a user runs it
      result = module.main(["--steps", "30", "--quiet"])
  finally:
    del sys.modules["nnx_flat_params"]
  flat_losses, tree_losses = np.asarray(result["flat"]), np.asarray(result["tree"])
  assert flat_losses.shape == tree_losses.shape == (30,)
  assert flat_losses[-1] < 0.5 * flat_losses[0]
  np.testing.assert_allclose(flat_losses, tree_losses, rtol=1e-5)
  final_flat, final_tree = result["final_params"]
  for name in final_tree:
    np.testing.assert_allclose(final_flat[name], final_tree[name], rtol=1e-4, atol=1e-6)
