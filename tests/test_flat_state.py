"""state_layout="flat": FlatAdadeltaState, its converters, and the step on it.

The flat layout keeps each accumulator as one 1-D buffer per accumulator dtype. It must give the
tree layout's numbers bit for bit on the C++ kernel's path (same options), and to the rounding of
one fused multiply-add on the fused JAX path (``FUSED_RTOL``), so most tests run both layouts side
by side and compare every update, param and accumulator.
The independent oracles are: the buffers built here with NumPy (not with
``flatten_params``), the NumPy reference (``tests/reference.py``), ``optax.adadelta``, and
finite differences for the derivatives. Tests run with 64-bit JAX enabled (tests/conftest.py).
"""

from __future__ import annotations

import functools
import re
import warnings
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
  ULPS,
  _exp_schedule,
  _mask_fn,
  assert_bitwise,
  assert_trees_close,
  random_grads,
  random_tree,
)

# --- Trees, layouts and comparisons -------------------------------------------------------------


def _normal(rng, shape, dtype):
  return rng.normal(size=shape).astype(dtype)


def two_dtype_params(rng):
  """float64 and float32 (the kernel's dtypes): nested dicts and lists, scalars, empty leaves."""
  tree = random_tree(rng, np.float64)
  tree["f32"] = {
    "kernel": _normal(rng, (3, 4), np.float32),
    "bias": _normal(rng, (4,), np.float32),
    "scalar": _normal(rng, (), np.float32),
    "empty": _normal(rng, (0, 2), np.float32),
  }
  return tree


def three_dtype_params(rng):
  """:func:`two_dtype_params` with bfloat16 leaves between the others."""
  tree = two_dtype_params(rng)
  tree["half"] = [_normal(rng, (5,), jnp.bfloat16), {"w": _normal(rng, (2, 3), jnp.bfloat16)}]
  return tree


def as_jax(tree):
  return jax.tree.map(jnp.asarray, tree)


def numpy_buffers(tree, state_dtype=None):
  """The flat layout built with NumPy: per accumulator dtype (the leaf's, or ``state_dtype``),
  the leaves ravelled and concatenated in ``jax.tree.leaves`` order."""
  pieces: dict[str, list[np.ndarray]] = {}
  for leaf in jax.tree.leaves(tree):
    leaf = np.asarray(leaf)
    dtype = np.dtype(leaf.dtype if state_dtype is None else state_dtype)
    pieces.setdefault(dtype.name, []).append(np.ravel(leaf).astype(dtype))
  return {name: np.concatenate(parts) for name, parts in pieces.items()}


def assert_flat_state(state, count, accum_grad, accum_var, what="state"):
  """``state`` is a FlatAdadeltaState holding exactly these (NumPy-built) values."""
  assert type(state) is adadelta_optax.FlatAdadeltaState, f"{what}: {type(state)}"
  assert np.asarray(state.count).dtype == np.int32 and np.shape(state.count) == ()
  assert int(state.count) == count, f"{what}.count: {int(state.count)} != {count}"
  for field, expected in (("accum_grad", accum_grad), ("accum_var", accum_var)):
    buffers = getattr(state, field)
    assert isinstance(buffers, dict), f"{what}.{field}: {type(buffers)}"
    assert_bitwise(buffers, expected, what=f"{what}.{field}")


def leaf_at(tree, b):
  return jax.tree.map(lambda x: x[b], tree)


# --- Running both layouts -------------------------------------------------------------------


def both(**kwargs):
  """The tree- and flat-layout optimizers with the same options."""
  tree_tx = adadelta_optax.adadelta(**kwargs, state_layout="tree")
  flat_tx = adadelta_optax.adadelta(**kwargs, state_layout="flat")
  assert flat_tx.implementation == tree_tx.implementation
  return tree_tx, flat_tx


def _step_fn(tx):
  """One jitted call: ``update`` and ``apply_gradients`` from the same params and state."""

  def step(params, state, grads):
    updates, new_state = tx.update(grads, state, params)
    applied, applied_state = tx.apply_gradients(grads, state, params)
    return updates, new_state, applied, applied_state

  return jax.jit(step)


# The fused JAX path: XLA fuses the flat layout's per-leaf step differently from the tree's (the
# leaf is cut out of the buffer inside the fusion), and the CPU backend contracts a multiply and
# an add into one FMA in one fusion and not the other: a scalar leaf with global_clipnorm and
# weight decay measured 1 ulp apart (-0.013585789 flat, -0.013585788 tree). The fused path
# promises the same numbers up to such rounding (as between implementations); 2 ulps of the
# leaf's magnitude bound it.
FUSED_RTOL = {np.dtype(d): 2 * float(jnp.finfo(d).eps) for d in ("float64", "float32", "bfloat16")}


def compare_layouts(tree_tx, flat_tx, params, grads, *, jit=True, rtol=None):
  """Steps both layouts through ``grads``; asserts at every step that the flat layout's
  updates, new params and new state are the tree layout's (its state via ``flat_state``),
  bitwise (or, given ``rtol`` by dtype, that close relative to each leaf's magnitude).
  Returns the final params and flat state."""
  same = assert_bitwise
  if rtol is not None:

    def same(actual, expected, what):
      assert_trees_close(actual, expected, rtol=rtol, floor=LEAF_MAX, check_dtype=True, what=what)

  if jit:
    tree_step, flat_step = _step_fn(tree_tx), _step_fn(flat_tx)
  else:
    tree_step, flat_step = _step_fn(tree_tx).__wrapped__, _step_fn(flat_tx).__wrapped__
  tree_state, flat_state = tree_tx.init(params), flat_tx.init(params)
  assert_bitwise(flat_state, adadelta_optax.flat_state(tree_state), "init")
  for t, g in enumerate(grads):
    g = as_jax(g)
    u_tree, s_tree, p_tree, a_tree = tree_step(params, tree_state, g)
    u_flat, s_flat, p_flat, a_flat = flat_step(params, flat_state, g)
    assert type(s_flat) is type(a_flat) is adadelta_optax.FlatAdadeltaState
    same(u_flat, u_tree, f"step {t} updates")
    same(s_flat, adadelta_optax.flat_state(s_tree), f"step {t} update state")
    same(p_flat, p_tree, f"step {t} apply_gradients params")
    same(a_flat, adadelta_optax.flat_state(a_tree), f"step {t} apply_gradients state")
    params = optax.apply_updates(params, u_flat)
    tree_state, flat_state = s_tree, s_flat
  assert int(flat_state.count) == len(grads)
  return params, flat_state


def kernel_dtypes(tx, params):
  """The dtypes ("f32", "f64") for which the lowered (CPU) step calls the C++ kernel."""
  text = jax.jit(tx.apply_gradients).lower(params, tx.init(params), params).as_text()
  return {target.rsplit("_", 1)[1] for target in re.findall(r"@(adadelta_optax_\w+)\(", text)}


def alternate_mask(params):
  """A weight-decay mask as a pytree of bools: every other leaf decays."""
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [i % 2 == 0 for i in range(len(leaves))])


# Option sets, each a function of the params (for pytree masks). Together they cover every
# option of adadelta(); "clipnorm" alone is where a norm of the flat buffer would show most.
CONFIGS = {
  "defaults": lambda p: {},
  "lr_array_rho_eps": lambda p: dict(learning_rate=np.float64(0.3), rho=0.9, epsilon=1e-6),
  "clipnorm": lambda p: dict(clipnorm=0.7),
  "global_clipnorm": lambda p: dict(global_clipnorm=1.5),
  "schedule_decay_clips_coupled_mask_fn": lambda p: dict(
    learning_rate=_exp_schedule,
    decay=0.02,
    clipvalue=0.4,
    clipnorm=0.9,
    weight_decay=0.01,
    weight_decay_mask=_mask_fn,
  ),
  "norm_then_value_maximize_decoupled_mask_tree": lambda p: dict(
    clipvalue=0.4,
    clipnorm=0.9,
    clip_order="norm_then_value",
    maximize=True,
    weight_decay=0.05,
    decoupled_weight_decay=True,
    weight_decay_mask=alternate_mask(p),
  ),
  "global_clipvalue_coupled_maximize": lambda p: dict(
    global_clipnorm=1.1, clipvalue=0.4, weight_decay=0.03, maximize=True
  ),
  "everything": lambda p: OPTIONS["everything"][0],
}
# The fused path runs the same per-leaf JAX code for every option; these two cover them all
# between them except clip_order (its kernel counterpart is above).
FUSED_CONFIGS = ["schedule_decay_clips_coupled_mask_fn", "everything"]


def reference_options(kwargs, params):
  """``reference.Options`` for ``adadelta(**kwargs)``: the mask as one bool per leaf."""
  fields = {k: v for k, v in kwargs.items() if k not in ("weight_decay_mask", "state_dtype")}
  mask = kwargs.get("weight_decay_mask")
  if mask is not None:
    fields["mask"] = [bool(m) for m in jax.tree.leaves(mask(params) if callable(mask) else mask)]
  if isinstance(fields.get("learning_rate"), np.ndarray | np.generic):
    fields["learning_rate"] = float(fields["learning_rate"])
  return reference.Options(**fields)


# --- Configuration and errors ---------------------------------------------------------------


def test_state_layout_is_configuration():
  assert adadelta_optax.AdadeltaConfig().state_layout == "tree"
  assert adadelta_optax.adadelta().config.state_layout == "tree"
  assert adadelta_optax.adadelta(state_layout="flat").config.state_layout == "flat"
  config = adadelta_optax.AdadeltaConfig(state_layout="flat", rho=0.9)
  tx = adadelta_optax.from_adadelta_config(config)
  assert tx.config.state_layout == "flat"
  params = {"w": jnp.ones(3)}
  assert type(tx.init(params)) is adadelta_optax.FlatAdadeltaState
  assert type(adadelta_optax.adadelta().init(params)) is adadelta_optax.AdadeltaState


def test_get_config_round_trip_keeps_the_layout():
  """from_config inverts get_config: a flat optimizer comes back flat (its state is flat)."""
  tx = adadelta_optax.adadelta(state_layout="flat", rho=0.9)
  config = tx.get_config()
  assert config["state_layout"] == "flat"
  again = adadelta_optax.Adadelta.from_config(config)
  assert again.config.state_layout == "flat" and again.config.rho == 0.9
  assert type(again.init({"w": jnp.ones(2)})) is adadelta_optax.FlatAdadeltaState
  assert adadelta_optax.adadelta(**tx.hyperparams).config.state_layout == "flat"
  assert adadelta_optax.adadelta().get_config()["state_layout"] == "tree"


@pytest.mark.parametrize("layout", ["Flat", "trees", "", None, 1])
def test_unknown_state_layout_is_refused(layout):
  with pytest.raises(ValueError, match="state_layout"):
    adadelta_optax.adadelta(state_layout=layout)
  with pytest.raises(ValueError, match="state_layout"):
    adadelta_optax.AdadeltaConfig(state_layout=layout)


def test_flat_layout_refuses_xla_and_sparse_rows_when_built():
  """Refused when the optimizer is made, naming the conflicting argument."""
  with pytest.raises(ValueError, match="xla") as info:
    adadelta_optax.adadelta(state_layout="flat", implementation="xla")
  assert "flat" in str(info.value)
  with pytest.raises(ValueError, match="sparse_rows") as info:
    adadelta_optax.adadelta(state_layout="flat", sparse_rows=True)
  assert "flat" in str(info.value)
  with pytest.raises(ValueError, match="xla"):
    adadelta_optax.AdadeltaConfig(state_layout="flat", implementation="xla")
  # Each is fine with the tree layout, and the flat layout with every other implementation.
  adadelta_optax.adadelta(implementation="xla")
  adadelta_optax.adadelta(sparse_rows=True)
  for implementation in ("auto", "kernel", "fused"):
    tx = adadelta_optax.adadelta(state_layout="flat", implementation=implementation)
    assert tx.config.state_layout == "flat"


def test_state_of_the_other_layout_is_a_type_error():
  params = as_jax(two_dtype_params(np.random.default_rng(0)))
  tree_tx, flat_tx = both()
  tree_s, flat_s = tree_tx.init(params), flat_tx.init(params)
  for method in ("update", "apply_gradients"):
    with pytest.raises(TypeError, match="flat_state"):
      getattr(flat_tx, method)(params, tree_s, params)
    with pytest.raises(TypeError, match="tree_state"):
      getattr(tree_tx, method)(params, flat_s, params)


def test_gradient_that_does_not_fit_the_buffers_is_refused():
  params = as_jax({"a": np.ones((2, 3)), "b": [np.ones(4, np.float32), np.ones(())]})
  _, flat_tx = both(weight_decay=0.01)
  state = flat_tx.init(params)
  bad_grads = {
    "a leaf too long": {**params, "a": jnp.ones((2, 4))},
    "a leaf missing": {"a": params["a"], "b": [params["b"][0]]},
    "a leaf more": {**params, "c": jnp.ones(2)},
    "a float64 leaf as float32": {**params, "a": jnp.ones((2, 3), jnp.float32)},
    "a float32 leaf as bfloat16": {**params, "b": [jnp.ones(4, jnp.bfloat16), params["b"][1]]},
  }
  for grads in bad_grads.values():
    for method in ("update", "apply_gradients"):
      with pytest.raises(ValueError, match="gradient"):
        getattr(flat_tx, method)(grads, state, params)
      with pytest.raises(ValueError, match="gradient"):
        jax.jit(getattr(flat_tx, method))(grads, state, params)


def test_tree_state_refuses_params_that_do_not_fit():
  params = as_jax({"a": np.ones((2, 3)), "b": [np.ones(4, np.float32), np.ones(())]})
  state = adadelta_optax.adadelta(state_layout="flat").init(params)
  for bad in (
    {**params, "a": jnp.ones((2, 4))},  # 8 float64 elements, the buffer holds 7
    {"a": params["a"], "b": [params["b"][0]]},  # one fewer
    {**params, "c": jnp.ones(2, jnp.float32)},  # one more
    {**params, "a": jnp.ones((2, 3), jnp.float32)},  # float64 leaves as float32
  ):
    with pytest.raises(ValueError, match="params"):
      adadelta_optax.tree_state(state, bad)


def _two_layers():
  return as_jax(
    {
      "dense": {"bias": np.ones(4, np.float32), "kernel": np.ones((3, 4), np.float32)},
      "head": {"bias": np.ones(2, np.float32), "kernel": np.ones((4, 2), np.float32)},
    }
  )


def _same_size_trees():
  """Trees that fill the buffers of :func:`_two_layers` exactly, element for element and dtype
  for dtype (the buffer sizes alone accept them), each with the first leaf that differs."""
  p = _two_layers()
  dense, head = p["dense"], p["head"]
  ones = functools.partial(jnp.ones, dtype=jnp.float32)
  return {
    # torch's Linear weight is (out, in), Flax's Dense kernel (in, out).
    "a kernel transposed": (
      {**p, "dense": {**dense, "kernel": ones((4, 3))}},
      r"tree\['dense'\]\['kernel'\] with shape \(4, 3\).*made for tree\['dense'\]\['kernel'\] "
      r"with shape \(3, 4\)",
    ),
    # A layer renamed: the same shapes, but it sorts first now.
    "a layer renamed": (
      {"a_head": head, "dense": dense},
      r"tree\['a_head'\]\['bias'\] with shape \(2,\).*made for tree\['dense'\]\['bias'\]",
    ),
    # Same shapes under new names: the shapes alone would fit.
    "layers renamed, same shapes": (
      {"dense": dense, "out": head},
      r"tree\['out'\]\['bias'\].*made for tree\['head'\]\['bias'\]",
    ),
    # Two layers resized with the same total: 12 + 8 = 8 + 12.
    "two layers resized": (
      {
        "dense": {"bias": ones(4), "kernel": ones((2, 4))},
        "head": {"bias": ones(2), "kernel": ones((4, 3))},
      },
      r"tree\['dense'\]\['kernel'\] with shape \(2, 4\)",
    ),
    "one leaf more, one fewer": (
      {
        "dense": {"bias": ones(4), "kernel": ones((3, 4)), "scale": ones(2)},
        "head": head | {"kernel": ones((3, 2))},
      },
      r"tree\['dense'\]\['scale'\]",
    ),
  }


@pytest.mark.parametrize("case", sorted(_same_size_trees()))
@pytest.mark.parametrize("implementation", ["auto", "fused"])
def test_a_tree_of_the_same_size_is_refused_naming_the_leaf(case, implementation):
  """Issue 22, item 1: the buffers hold as many elements of each dtype, so only the state's spec
  can tell; every entry point refuses, eager and under jit, before anything is computed."""
  params = _two_layers()
  grads, message = _same_size_trees()[case]
  shapes = [
    {name: b.shape for name, b in adadelta_optax.flatten_params(tree)[0].items()}
    for tree in (grads, params)
  ]
  assert shapes[0] == shapes[1], "the case must fill the same buffers"
  tx = adadelta_optax.adadelta(state_layout="flat", implementation=implementation)
  state = tx.init(params)
  for method in ("update", "apply_gradients"):
    for call in (getattr(tx, method), jax.jit(getattr(tx, method))):
      with pytest.raises(ValueError, match="gradient tree does not fit") as error:
        call(grads, state, params)
      assert re.search(message, str(error.value)), str(error.value)
  with pytest.raises(ValueError, match="params tree does not fit") as error:
    adadelta_optax.tree_state(state, grads)
  assert re.search(message, str(error.value)), str(error.value)
  # The tree layout refuses the same input (docs/howto/behaviour.md promises both do).
  tree_tx = adadelta_optax.adadelta(implementation=implementation)
  with pytest.raises(ValueError):
    tree_tx.update(grads, tree_tx.init(params), params)


def test_spec_records_paths_shapes_and_accumulator_dtypes():
  params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": [jnp.ones(3), jnp.ones((), jnp.complex64)]}
  state = adadelta_optax.adadelta(state_layout="flat", state_dtype="float32").init(params)
  spec = state.spec
  assert spec.paths == ("['b'][0]", "['b'][1]", "['w']")
  assert spec.shapes == ((3,), (), (2, 3))
  assert spec.dtypes == ("float32", "complex64", "float32")
  assert spec.layout() == [("float32", 0, 3), ("complex64", 0, 1), ("float32", 3, 6)]
  # Static: no leaf of its own, the same object out of a jitted step, equal across processes.
  assert jax.tree.leaves(spec) == []
  tx = adadelta_optax.adadelta(state_layout="flat", state_dtype="float32")
  _, after = jax.jit(tx.update)(params, state, params)
  assert after.spec == spec
  assert repr(spec).startswith("TreeSpec(3 leaves, sha256 ")
  assert spec != adadelta_optax.flat_state(adadelta_optax.adadelta().init(params)).spec
  # flat_state derives the spec from the tree state's accumulators: the same as init's.
  tree_s = adadelta_optax.adadelta(state_dtype="float32").init(params)
  assert adadelta_optax.flat_state(tree_s).spec == spec


def test_keras_and_torch_state_tools_take_only_the_tree_layout():
  params = {"b": jnp.zeros(2), "w": jnp.zeros((3, 2))}
  tree_tx, flat_tx = both()
  state = flat_tx.init(params)
  with pytest.raises(TypeError, match="tree_state"):
    adadelta_optax.get_weights(state)
  with pytest.raises(TypeError, match="tree_state"):
    flat_tx.get_weights(state)
  weights = adadelta_optax.get_weights(tree_tx.init(params))
  with pytest.raises(TypeError, match="tree_state"):
    adadelta_optax.set_weights(state, weights)
  with pytest.raises(TypeError, match="tree_state"):
    adadelta_optax.interop.keras3_variables(flat_tx, state)
  with pytest.raises(TypeError, match="tree_state"):
    adadelta_optax.interop.to_torch_state_dict(flat_tx, state)
  # The documented way: convert first.
  weights = adadelta_optax.get_weights(adadelta_optax.tree_state(state, params))
  assert [w.shape for w in weights] == [(), (2,), (3, 2), (2,), (3, 2)]


# --- The layout and the converters ----------------------------------------------------------


@pytest.mark.parametrize(
  "state_dtype, expected",
  [
    (None, {"float64": 26, "float32": 17, "bfloat16": 11}),
    ("float32", {"float32": 54}),
    (jnp.float64, {"float64": 54}),
  ],
)
def test_init_layout(state_dtype, expected):
  """One zero buffer per accumulator dtype, as long as that dtype's leaves together."""
  params = as_jax(three_dtype_params(np.random.default_rng(1)))
  tx = adadelta_optax.adadelta(state_layout="flat", state_dtype=state_dtype)
  for state in (tx.init(params), jax.jit(tx.init)(params)):
    zeros = {name: np.zeros(n, name) for name, n in expected.items()}
    assert_flat_state(state, 0, zeros, zeros)
    tree = adadelta_optax.adadelta(state_dtype=state_dtype).init(params)
    assert_bitwise(state, adadelta_optax.flat_state(tree), "init")


def test_empty_and_single_leaf_trees():
  """An empty tree has no buffers; a bare array is a tree of one leaf."""
  tx = adadelta_optax.adadelta(state_layout="flat")
  state = tx.init({})
  assert_flat_state(state, 0, {}, {})
  assert_bitwise(tx.update({}, state, {})[0], {})
  w = jnp.arange(4.0)
  state = tx.init(w)
  assert_flat_state(state, 0, {"float64": np.zeros(4)}, {"float64": np.zeros(4)})
  new_w, state = tx.apply_gradients(jnp.ones(4), state, w)
  tree_tx = adadelta_optax.adadelta()
  tree_w, tree_s = tree_tx.apply_gradients(jnp.ones(4), tree_tx.init(w), w)
  assert_bitwise(new_w, tree_w)
  assert_bitwise(state, adadelta_optax.flat_state(tree_s))


def random_tree_state(rng, params, count, state_dtype=None):
  """An AdadeltaState with random positive accumulators (in each leaf's accumulator dtype)."""

  def draw(leaf):
    dtype = leaf.dtype if state_dtype is None else jnp.dtype(state_dtype)
    values = np.abs(rng.normal(size=leaf.shape)) * 10.0 ** rng.uniform(-4, 0)
    return jnp.asarray(values.astype(dtype))

  return adadelta_optax.AdadeltaState(
    jnp.asarray(count, jnp.int32), jax.tree.map(draw, params), jax.tree.map(draw, params)
  )


def small_params(rng):
  """Three float64 leaves (a matrix, a vector, a scalar): the derivative tests' tree."""
  return {"w": rng.normal(size=(3, 4)), "b": [rng.normal(size=(4,)), rng.normal(size=())]}


@pytest.mark.parametrize("state_dtype", [None, "float32"])
def test_converters_round_trip_bitwise(state_dtype):
  """flat_state gives the NumPy-built layout; tree_state (from the params or the gradients)
  gives back the tree state; both round trips are exact."""
  rng = np.random.default_rng(2)
  params = as_jax(three_dtype_params(rng))
  tree = random_tree_state(rng, params, 3, state_dtype)
  flat = adadelta_optax.flat_state(tree)
  assert_flat_state(
    flat,
    3,
    numpy_buffers(tree.accum_grad),
    numpy_buffers(tree.accum_var),
    what="flat_state(tree)",
  )
  assert set(flat.accum_grad) == (
    {"float32"} if state_dtype else {"float64", "float32", "bfloat16"}
  )
  grads = as_jax(random_grads(rng, params, 1)[0])
  for like in (params, grads):
    back = adadelta_optax.tree_state(flat, like)
    assert type(back) is adadelta_optax.AdadeltaState
    assert_bitwise(back, tree, "tree_state(flat_state(tree))")
  # And from the flat side: flat -> tree -> flat.
  assert_bitwise(
    adadelta_optax.flat_state(adadelta_optax.tree_state(flat, params)), flat, "flat -> tree -> flat"
  )


@pytest.mark.parametrize(
  ("param_dtype", "spellings"),
  [
    (np.complex64, ["float64", jnp.float64, np.dtype("float64")]),
    (np.complex128, ["float32", jnp.float32, np.dtype("float32")]),
  ],
)
def test_tree_state_of_complex_params_with_any_state_dtype_spelling(param_dtype, spellings):
  """Complex params with a real state_dtype of the other width (complex128 buffers for complex64
  params under "float64"): tree_state once refused the very params the state was made for, with
  the dtype inferred (only complex buffers to infer from) or given as a string ("float64" was
  compared with jnp.float64). Every spelling adadelta() accepts works, with and without reals."""
  rng = np.random.default_rng(11)
  with_reals = {
    "z": jnp.asarray(rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3)), param_dtype),
    "w": jnp.asarray(rng.normal(size=(4,)), np.float32),
  }
  only_complex = {"z": with_reals["z"]}
  for params in (with_reals, only_complex):
    for spelling in spellings:
      tx = adadelta_optax.adadelta(state_layout="flat", state_dtype=spelling)
      tree_tx = adadelta_optax.adadelta(state_dtype=spelling)
      _, flat = tx.update(params, tx.init(params), params)
      _, tree = tree_tx.update(params, tree_tx.init(params), params)
      for given in ({}, {"state_dtype": spelling}):
        back = adadelta_optax.tree_state(flat, params, **given)
        assert_bitwise(back, tree, f"tree_state {param_dtype.__name__} {spelling!r} {given}")


# --- The step: the tree layout's numbers, bit for bit -----------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kernel_path_equals_tree_layout(name):
  """float64 and float32 leaves on the C++ kernel ("auto"): update, apply_gradients and the new
  state, every step, bitwise."""
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = two_dtype_params(rng)
  grads = random_grads(rng, params, 3)
  params = as_jax(params)
  tree_tx, flat_tx = both(**CONFIGS[name](params))
  assert flat_tx.implementation == "kernel"
  compare_layouts(tree_tx, flat_tx, params, grads)
  assert kernel_dtypes(flat_tx, params) == {"f32", "f64"}


@pytest.mark.parametrize("name", FUSED_CONFIGS)
def test_fused_path_equals_tree_layout(name):
  rng = np.random.default_rng(100 + len(name))
  params = three_dtype_params(rng)
  grads = random_grads(rng, params, 2)
  params = as_jax(params)
  tree_tx, flat_tx = both(**CONFIGS[name](params), implementation="fused")
  assert flat_tx.implementation == "fused"
  compare_layouts(tree_tx, flat_tx, params, grads, rtol=FUSED_RTOL)
  assert kernel_dtypes(flat_tx, params) == set()


def test_eager_step_equals_tree_layout():
  """Without jit (each option's eager branch) on three dtypes, with implementation='kernel'."""
  rng = np.random.default_rng(7)
  params = three_dtype_params(rng)
  grads = random_grads(rng, params, 2)
  params = as_jax(params)
  kwargs = CONFIGS["schedule_decay_clips_coupled_mask_fn"](params)
  tree_tx, flat_tx = both(**kwargs, implementation="kernel")
  compare_layouts(tree_tx, flat_tx, params, grads, jit=False)


@pytest.mark.parametrize(
  "param_dtypes, state_dtype",
  [
    (("bfloat16",), "float32"),
    (("float32", "bfloat16", "float64"), "float32"),
  ],
)
def test_state_dtype_equals_tree_layout(param_dtypes, state_dtype):
  """Accumulators in ``state_dtype`` on mixed trees. Params of another dtype than their state
  take the fused JAX path (the kernel takes a group only where all three dtypes agree), so the
  layouts agree to ``FUSED_RTOL`` of the dtype the step is computed in, the state's: float64
  params with a float32 state measured 1.2e-10 of the leaf apart on jax 0.12.1 (about one
  float32 ulp of the step, added to the float64 param)."""
  rng = np.random.default_rng(len(param_dtypes) * 10 + len(str(state_dtype)))
  shapes = [(3, 4), (5,), (), (0,), (2, 1, 3)]
  params = {
    name: [_normal(rng, shape, name) for shape in shapes[i % 2 :: 2]]
    for i, name in enumerate(param_dtypes)
  }
  grads = random_grads(rng, params, 2)
  params = as_jax(params)
  tree_tx, flat_tx = both(state_dtype=state_dtype, clipnorm=1.0, weight_decay=0.02)
  zeros = {name: np.zeros(n.size, name) for name, n in numpy_buffers(params, state_dtype).items()}
  assert_flat_state(flat_tx.init(params), 0, zeros, zeros)
  assert kernel_dtypes(flat_tx, params) == set()
  computed_in = np.dtype(state_dtype)
  rtol = {np.dtype(d): max(FUSED_RTOL[np.dtype(d)], FUSED_RTOL[computed_in]) for d in FUSED_RTOL}
  final, state = compare_layouts(tree_tx, flat_tx, params, grads, rtol=rtol)
  for leaf, start in zip(jax.tree.leaves(final), jax.tree.leaves(params), strict=True):
    assert leaf.dtype == start.dtype


def test_many_leaves_share_one_buffer_across_kernel_calls():
  """More leaves of a dtype than one kernel call takes (MAX_LEAVES_PER_CALL): several calls
  fill one buffer, and nothing changes; the result also follows the NumPy reference."""
  from adadelta_optax.core import _step

  rng = np.random.default_rng(9)
  n32, n64 = 2 * _step.MAX_LEAVES_PER_CALL + 7, _step.MAX_LEAVES_PER_CALL + 5
  params = {
    "f32": [_normal(rng, (50,), np.float32) for _ in range(n32)],
    "f64": {f"w{i:03d}": _normal(rng, (5, 10), np.float64) for i in range(n64)},
    "odd": [_normal(rng, (), np.float32), _normal(rng, (0,), np.float64)],
  }
  grads = random_grads(rng, params, 2)
  params = as_jax(params)
  kwargs = dict(
    clipnorm=0.5, clipvalue=0.3, weight_decay=0.01, weight_decay_mask=alternate_mask(params)
  )
  tree_tx, flat_tx = both(**kwargs)
  state = flat_tx.init(params)
  assert {k: v.shape for k, v in state.accum_grad.items()} == {
    "float32": (50 * n32 + 1,),
    "float64": (50 * n64,),
  }
  final, state = compare_layouts(tree_tx, flat_tx, params, grads)
  assert kernel_dtypes(flat_tx, params) == {"f32", "f64"}
  ref = reference.run(
    jax.tree.leaves(params),
    [jax.tree.leaves(g) for g in grads],
    reference_options(kwargs, params),
  )

  # The float64 reference, rounded to each leaf's dtype (so that the tolerance is the leaf's).
  def like(values):
    leaves = jax.tree.leaves(params)
    return [np.asarray(v).astype(x.dtype) for v, x in zip(values, leaves, strict=True)]

  rtol = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
  assert_trees_close(final, like(ref.params), rtol=rtol, floor=LEAF_MAX, what="params")
  tree = adadelta_optax.tree_state(state, params)
  for field in ("accum_grad", "accum_var"):
    expected = like(getattr(ref, field))
    assert_trees_close(getattr(tree, field), expected, rtol=rtol, floor=LEAF_MAX, what=field)


# --- Independent references -------------------------------------------------------------------


def test_matches_optax_adadelta():
  """optax.adadelta(lr, rho, eps) is this rule without options: float64, 1e-12 relative."""
  rng = np.random.default_rng(11)
  params = random_tree(rng, np.float64)
  grads = random_grads(rng, params, 20)
  params = as_jax(params)
  ours = adadelta_optax.adadelta(0.5, rho=0.9, epsilon=1e-6, state_layout="flat")
  theirs = optax.adadelta(0.5, rho=0.9, eps=1e-6)
  mine, their_params = params, params
  s_ours, s_theirs = ours.init(params), theirs.init(params)
  step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
  for g in grads:
    g = as_jax(g)
    u, s_ours = step_ours(g, s_ours, mine)
    mine = optax.apply_updates(mine, u)
    u, s_theirs = step_theirs(g, s_theirs, their_params)
    their_params = optax.apply_updates(their_params, u)
  assert type(s_ours) is adadelta_optax.FlatAdadeltaState
  assert_trees_close(mine, their_params, rtol=1e-12, floor=LEAF_MAX, what="params")
  e_g = optax.tree_utils.tree_get(s_theirs, "e_g")
  assert_trees_close(
    s_ours.accum_grad, numpy_buffers(e_g), rtol=1e-12, floor=LEAF_MAX, what="accum_grad"
  )


@pytest.mark.parametrize(
  "name",
  [
    "clipnorm",
    "global_clipnorm",
    "schedule_decay_clips_coupled_mask_fn",
    "norm_then_value_maximize_decoupled_mask_tree",
    "everything",
  ],
)
def test_matches_numpy_reference(name):
  """Per-leaf clipping norms and weight-decay masks act on the real leaves (a norm or mask of
  the flat buffer would be far off): float64 params, 8 steps, 1e-12 relative."""
  rng = np.random.default_rng(20 + len(name))
  params = random_tree(rng, np.float64)
  grads = random_grads(rng, params, 8)
  kwargs = CONFIGS[name](params)
  if "clipnorm" in kwargs:
    # Some step has leaves below the clip norm in a buffer above it: clipping by the buffer's
    # norm would scale leaves that must be left alone.
    norms = [[np.linalg.norm(x) for x in jax.tree.leaves(g)] for g in grads]
    c = kwargs["clipnorm"]
    assert any(min(n) < c < np.sqrt(np.sum(np.square(n))) for n in norms)
  tx = adadelta_optax.adadelta(**kwargs, state_layout="flat")
  final, state = as_jax(params), tx.init(as_jax(params))
  update = jax.jit(tx.update)
  for g in grads:
    u, state = update(as_jax(g), state, final)
    final = optax.apply_updates(final, u)
  ref = reference.run(
    jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], reference_options(kwargs, params)
  )
  assert_trees_close(final, ref.params, rtol=1e-12, floor=LEAF_MAX, what="params")
  assert type(state) is adadelta_optax.FlatAdadeltaState and int(state.count) == 8
  assert_trees_close(
    state.accum_grad, numpy_buffers(ref.accum_grad), rtol=1e-12, floor=LEAF_MAX, what="accum_grad"
  )
  assert_trees_close(
    state.accum_var, numpy_buffers(ref.accum_var), rtol=1e-12, floor=LEAF_MAX, what="accum_var"
  )


# --- Transformations: jit with donation, vmap, grad -------------------------------------------


def test_jit_with_donated_params_and_state():
  """Donated params and flat state are updated in place (no 'not usable' warning, the same
  buffers come back) and the numbers are the tree layout's."""
  rng = np.random.default_rng(12)
  params = two_dtype_params(rng)
  grads = [as_jax(g) for g in random_grads(rng, params, 3)]
  params = as_jax(params)
  kwargs = dict(learning_rate=0.7, clipnorm=0.8, weight_decay=0.01)
  tree_tx, flat_tx = both(**kwargs)
  step = jax.jit(lambda p, s, g: flat_tx.apply_gradients(g, s, p), donate_argnums=(0, 1))
  flat_params = jax.tree.map(jnp.copy, params)
  state = flat_tx.init(flat_params)
  tree_params, tree_s = params, tree_tx.init(params)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for g in grads:
      buffers = [
        x for x in jax.tree.leaves((flat_params, state.accum_grad, state.accum_var)) if x.size
      ]
      pointers = [x.unsafe_buffer_pointer() for x in buffers]
      flat_params, state = step(flat_params, state, g)
      assert all(x.is_deleted() for x in buffers)
      new = [x for x in jax.tree.leaves((flat_params, state.accum_grad, state.accum_var)) if x.size]
      assert [x.unsafe_buffer_pointer() for x in new] == pointers
      tree_params, tree_s = jax.jit(tree_tx.apply_gradients)(g, tree_s, tree_params)
  assert not [w for w in caught if "donated" in str(w.message)], [str(w.message) for w in caught]
  assert_bitwise(flat_params, tree_params, "params")
  assert_bitwise(state, adadelta_optax.flat_state(tree_s), "state")


@functools.cache
def _vmap_runs():
  """3 problems, 2 steps of apply_gradients under jit(vmap) in both layouts (implementation
  "auto"), and each problem stepped alone in the flat layout. Shared by the two vmap tests."""
  batch = 3
  rng = np.random.default_rng(13)
  problems = [as_jax(two_dtype_params(rng)) for _ in range(batch)]
  steps = [[as_jax(g) for g in random_grads(rng, problems[0], 2)] for _ in range(batch)]

  def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

  params_b = stack(problems)
  grads_b = [stack([steps[b][t] for b in range(batch)]) for t in range(2)]
  kwargs = dict(learning_rate=_exp_schedule, clipnorm=0.8, weight_decay=0.02, maximize=True)
  tree_tx, flat_tx = both(**kwargs)
  runs = {}
  for layout, tx in (("tree", tree_tx), ("flat", flat_tx)):
    p, s = params_b, jax.vmap(tx.init)(params_b)
    step = jax.jit(jax.vmap(lambda p, s, g, tx=tx: tx.apply_gradients(g, s, p)))
    for g in grads_b:
      p, s = step(p, s, g)
    runs[layout] = p, s
  alone = []
  step = jax.jit(flat_tx.apply_gradients)
  for b in range(batch):
    p, s = problems[b], flat_tx.init(problems[b])
    for g in steps[b]:
      p, s = step(g, s, p)
    alone.append((p, s))
  return runs, alone


def test_vmap_over_a_batch_of_problems():
  """jax.vmap over 3 problems: each problem's params and flat state are what it gives alone
  and what the tree layout gives under vmap (to a few ulps against the problem alone: batched,
  the kernel may sum a norm in another order; the next test checks the layouts bitwise)."""
  runs, alone = _vmap_runs()
  (flat_p, flat_s), (tree_p, tree_s) = runs["flat"], runs["tree"]
  assert type(flat_s) is adadelta_optax.FlatAdadeltaState
  assert {k: v.shape for k, v in flat_s.accum_grad.items()} == {
    "float64": (3, 26),
    "float32": (3, 17),
  }
  np.testing.assert_array_equal(flat_s.count, [2, 2, 2])
  rtol = {np.dtype(k): v for k, v in ULPS.items()}
  for b, (alone_p, alone_s) in enumerate(alone):
    tree_b = adadelta_optax.flat_state(leaf_at(tree_s, b))
    for expected_p, expected_s, what in (
      (alone_p, alone_s, "alone"),
      (leaf_at(tree_p, b), tree_b, "tree"),
    ):
      assert_trees_close(
        leaf_at(flat_p, b), expected_p, rtol=rtol, floor=LEAF_MAX, what=f"params {b} vs {what}"
      )
      for field in ("accum_grad", "accum_var"):
        assert_trees_close(
          getattr(leaf_at(flat_s, b), field),
          getattr(expected_s, field),
          rtol=rtol,
          floor=LEAF_MAX,
          what=f"{field} {b} vs {what}",
        )


def test_vmap_keeps_the_tree_layouts_numbers_bitwise():
  """Under vmap too the flat layout gives the tree layout's numbers bit for bit (both on the
  kernel path with implementation="auto")."""
  runs, _ = _vmap_runs()
  (flat_p, flat_s), (tree_p, tree_s) = runs["flat"], runs["tree"]
  assert_bitwise(flat_p, tree_p, "params")
  for b in range(3):
    assert_bitwise(leaf_at(flat_s, b), adadelta_optax.flat_state(leaf_at(tree_s, b)), f"state {b}")


def _loss(tree):
  return sum(jnp.sum(jnp.sin(x) * x) for x in jax.tree.leaves(tree))


def _directional_fd(f, x, v, h=1e-6):
  """Central difference of ``f`` at ``x`` along ``v`` (float64)."""
  plus = jax.tree.map(lambda a, b: a + h * b, x, v)
  minus = jax.tree.map(lambda a, b: a - h * b, x, v)
  return (float(f(plus)) - float(f(minus))) / (2 * h)


def test_gradient_through_the_step_equals_tree_layout():
  """d loss(new params) / d gradient through apply_gradients (``update`` is differentiated in
  the learning-rate test below): the flat layout's derivative is the tree layout's (to a few
  ulps) and finite differences'."""
  rng = np.random.default_rng(14)
  params = small_params(rng)
  g = as_jax(random_grads(rng, params, 1)[0])
  params = as_jax(params)
  tree_tx, flat_tx = both(learning_rate=0.5, clipnorm=0.9, weight_decay=0.02)
  tree_s = random_tree_state(rng, params, 2)
  flat_s = adadelta_optax.flat_state(tree_s)

  def loss_of(tx, state):
    def loss(grads):
      applied, _ = tx.apply_gradients(grads, state, params)
      return _loss(applied)

    return jax.jit(loss)

  flat_loss, tree_loss = loss_of(flat_tx, flat_s), loss_of(tree_tx, tree_s)
  # The steps are bitwise equal (tested above); the loss's sums are XLA's to order.
  np.testing.assert_allclose(flat_loss(g), tree_loss(g), rtol=ULPS[np.float64])
  d_flat = jax.jit(jax.grad(flat_loss))(g)
  d_tree = jax.jit(jax.grad(tree_loss))(g)
  assert_trees_close(d_flat, d_tree, rtol=ULPS[np.float64], floor=LEAF_MAX, what="d/dgrad")
  direction = as_jax(random_grads(rng, params, 1)[0])
  expected = _directional_fd(flat_loss, g, direction)
  got = sum(
    float(jnp.vdot(a, b))
    for a, b in zip(jax.tree.leaves(d_flat), jax.tree.leaves(direction), strict=True)
  )
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_gradient_with_respect_to_an_injected_learning_rate():
  """optax.inject_hyperparams: the flat state sits inside, and d loss / d learning_rate equals
  the tree layout's and finite differences'."""
  rng = np.random.default_rng(15)
  params = small_params(rng)
  grads = [as_jax(g) for g in random_grads(rng, params, 3)]
  params = as_jax(params)
  factory = optax.inject_hyperparams(adadelta_optax.adadelta)

  def derivative(layout):
    tx = factory(learning_rate=0.5, clipnorm=0.9, rho=0.9, state_layout=layout)
    state, p = tx.init(params), params
    for g in grads[:2]:
      u, state = jax.jit(tx.update)(g, state, p)
      p = optax.apply_updates(p, u)

    def loss(lr):
      s = state._replace(hyperparams={**state.hyperparams, "learning_rate": lr})
      u, _ = tx.update(grads[2], s, p)
      return _loss(optax.apply_updates(p, u))

    lr = jnp.asarray(0.5, jnp.float64)
    return state, jax.jit(loss), float(jax.jit(jax.grad(loss))(lr))

  flat_state, flat_loss, d_flat = derivative("flat")
  tree_state, _, d_tree = derivative("tree")
  assert type(flat_state.inner_state) is adadelta_optax.FlatAdadeltaState
  assert_bitwise(flat_state.inner_state, adadelta_optax.flat_state(tree_state.inner_state))
  np.testing.assert_allclose(d_flat, d_tree, rtol=ULPS[np.float64])
  h = 1e-6
  fd = (float(flat_loss(0.5 + h)) - float(flat_loss(0.5 - h))) / (2 * h)
  np.testing.assert_allclose(d_flat, fd, rtol=1e-6)
  assert abs(d_flat) > 1e-3  # the derivative is not trivially zero


# --- optax and Flax ---------------------------------------------------------------------------


def test_in_an_optax_chain_after_clip_by_global_norm():
  rng = np.random.default_rng(16)
  params = random_tree(rng, np.float64)
  grads = random_grads(rng, params, 4, scale=3.0)
  params = as_jax(params)
  tree_tx, flat_tx = both(learning_rate=0.6)
  chains = {
    layout: optax.chain(optax.clip_by_global_norm(1.0), tx)
    for layout, tx in (("tree", tree_tx), ("flat", flat_tx))
  }
  results = {}
  for layout, chain in chains.items():
    p, s = params, chain.init(params)
    update = jax.jit(chain.update)
    for g in grads:
      u, s = update(as_jax(g), s, p)
      p = optax.apply_updates(p, u)
    results[layout] = p, s
  (flat_p, flat_s), (tree_p, tree_s) = results["flat"], results["tree"]
  assert type(flat_s[1]) is adadelta_optax.FlatAdadeltaState
  assert_bitwise(flat_p, tree_p, "params")
  assert_bitwise(flat_s[1], adadelta_optax.flat_state(tree_s[1]), "state")
  ref = reference.run(
    jax.tree.leaves(params),
    [jax.tree.leaves(g) for g in grads],
    reference.Options(learning_rate=0.6, global_clipnorm=1.0),
  )
  assert_trees_close(flat_p, ref.params, rtol=1e-12, floor=LEAF_MAX, what="params")


@pytest.mark.frameworks
def test_flax_nnx_optimizer():
  """nnx.Optimizer(model, tx, wrt=nnx.Param) trains the same model to the same params in both
  layouts, and keeps a FlatAdadeltaState."""
  from flax import nnx

  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.hidden = nnx.Linear(3, 8, rngs=rngs)
      self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
      return self.out(jnp.tanh(self.hidden(x)))

  rng = np.random.default_rng(17)
  x = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)

  def loss_of(model):
    return jnp.mean((model(x) - y) ** 2)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_of)(model)
    optimizer.update(model, grads)
    return loss

  trained = {}
  for layout in ("tree", "flat"):
    model = MLP(nnx.Rngs(0))
    tx = adadelta_optax.adadelta(learning_rate=0.5, clipnorm=1.0, state_layout=layout)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    losses = [float(train_step(model, optimizer)) for _ in range(4)]
    trained[layout] = nnx.state(model, nnx.Param), nnx.as_pure(optimizer.opt_state), losses
  (flat_params, flat_s, flat_losses), (tree_params, tree_s, tree_losses) = (
    trained["flat"],
    trained["tree"],
  )
  assert type(flat_s) is adadelta_optax.FlatAdadeltaState
  assert int(flat_s.count) == 4
  assert {k: v.shape for k, v in flat_s.accum_grad.items()} == {"float32": (3 * 8 + 8 + 8 * 2 + 2,)}
  assert flat_losses == tree_losses
  assert flat_losses[-1] < flat_losses[0]
  assert_bitwise(nnx.as_pure(flat_params), nnx.as_pure(tree_params), "params")
  assert_bitwise(flat_s, adadelta_optax.flat_state(tree_s), "opt_state")


@pytest.mark.frameworks
def test_orbax_checkpoint_round_trip(tmp_path):
  """adadelta_optax.checkpoint (orbax) restores a flat state as it was, type included, and
  training continues from it exactly."""
  rng = np.random.default_rng(18)
  params = three_dtype_params(rng)
  grads = [as_jax(g) for g in random_grads(rng, params, 3)]
  params = as_jax(params)
  tx = adadelta_optax.adadelta(state_layout="flat", clipnorm=1.0)
  state = tx.init(params)
  for g in grads[:2]:
    params, state = jax.jit(tx.apply_gradients)(g, state, params)
  tree = {"params": params, "opt_state": state}
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "ckpt", tree)
  like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  restored = adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "ckpt", like)
  assert type(restored["opt_state"]) is adadelta_optax.FlatAdadeltaState
  assert_bitwise(restored, tree, "restored")
  after = jax.jit(tx.apply_gradients)(grads[2], restored["opt_state"], restored["params"])
  expected = jax.jit(tx.apply_gradients)(grads[2], state, params)
  assert_bitwise(after, expected, "the step after restoring")


@pytest.mark.frameworks
def test_a_checkpoint_of_another_tree_of_the_same_size_is_refused(tmp_path):
  """A state-only checkpoint resumed into the optimizer of a tree that fills the same buffers
  (a kernel transposed): the manifest records the spec, so restoring raises instead of pairing
  one kernel's accumulators with the other's elements."""
  params = _two_layers()
  tx = adadelta_optax.adadelta(state_layout="flat")
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "ckpt", tx.init(params))
  other = {**params, "dense": {**params["dense"], "kernel": jnp.ones((4, 3), jnp.float32)}}
  with pytest.raises(adadelta_optax.checkpoint.CheckpointError, match="TreeSpec"):
    adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "ckpt", tx.init(other))
  restored = adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "ckpt", tx.init(params))
  assert restored.spec == tx.init(params).spec
