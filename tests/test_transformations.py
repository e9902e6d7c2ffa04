"""JAX transformations of the default path (the C++ kernel on CPU): vmap, grad, jvp, export.

``optax.adadelta`` and ``implementation="fused"`` are plain JAX, so every transformation works on
them; the kernel is an FFI call, which has no vmap or differentiation rule of its own. These tests
hold the default path to the same: under ``vmap`` the numbers equal a loop over the problems (a
few ulps: the per-leaf norms are summed in another order), and derivatives equal those of the
fused path in float64.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

from helpers import LEAF_MAX, OPTIONS, ULPS, _mask_fn, assert_trees_close

# Every option of adadelta(): the trajectory tests' set, plus masks, state_dtype and sparse rows.
CASES = {name: kwargs for name, (kwargs, _) in OPTIONS.items()}
CASES.update(
  {
    "coupled_wd_mask": dict(weight_decay=0.05, weight_decay_mask=_mask_fn),
    "decoupled_wd_mask": dict(
      weight_decay=0.05, decoupled_weight_decay=True, weight_decay_mask=_mask_fn
    ),
    "state_dtype": dict(state_dtype="float64", clipnorm=0.8),
    "sparse_rows": dict(sparse_rows=True, weight_decay=0.01, clipvalue=0.6),
  }
)

BATCH = 3


def _tree(rng, dtype, batch=None):
  lead = () if batch is None else (batch,)

  def leaf(*shape):
    return jnp.asarray(rng.normal(size=lead + shape), dtype)

  return {"w": leaf(4, 3), "b": leaf(3), "s": leaf(), "e": leaf(0), "rows": leaf(5, 2)}


def _grads(rng, params):
  grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
  # A row with a zero gradient everywhere (what sparse_rows skips), in every problem.
  grads["rows"] = grads["rows"].at[..., 1, :].set(0)
  return grads


def _index(tree, b):
  return jax.tree.map(lambda x: x[b], tree)


def _check_states(actual, expected, tol):
  assert_trees_close(
    actual.accum_grad, expected.accum_grad, rtol=tol, floor=LEAF_MAX, what="accum_grad"
  )
  assert_trees_close(
    actual.accum_var, expected.accum_var, rtol=tol, floor=LEAF_MAX, what="accum_var"
  )
  np.testing.assert_array_equal(actual.count, expected.count)


def test_the_default_path_is_the_kernel_here():
  assert adadelta_optax.adadelta().implementation == "kernel"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_equals_a_loop_over_problems(name, dtype):
  """``jax.vmap(update)`` and ``jax.vmap(apply_gradients)`` over B problems, three steps.

  Everything batched, the count too (an ensemble made by ``jax.vmap(tx.init)``), so schedules,
  ``decay`` and global clipping give every problem its own hyperparameters.
  """
  kwargs = CASES[name]
  tx = adadelta_optax.adadelta(**kwargs)
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = _tree(rng, dtype, BATCH)
  state = jax.vmap(tx.init)(params)
  steps = [_grads(rng, params) for _ in range(3)]
  batched_update = jax.jit(jax.vmap(tx.update))
  batched_apply = jax.jit(jax.vmap(tx.apply_gradients))
  if kwargs.get("state_dtype") is None:  # the kernel takes float32/float64 state of that dtype
    assert "adadelta_optax_tree" in batched_update.lower(steps[0], state, params).as_text()
  p_update, s_update = params, state
  p_apply, s_apply = params, state
  for grads in steps:
    updates, s_update = batched_update(grads, s_update, p_update)
    p_update = optax.apply_updates(p_update, updates)
    p_apply, s_apply = batched_apply(grads, s_apply, p_apply)

  update, apply = jax.jit(tx.update), jax.jit(tx.apply_gradients)
  tol = ULPS[dtype]
  for b in range(BATCH):
    p_loop, s_loop = _index(params, b), tx.init(_index(params, b))
    for grads in steps:
      updates, s_loop = update(_index(grads, b), s_loop, p_loop)
      p_loop = optax.apply_updates(p_loop, updates)
    p_loop_apply, s_loop_apply = _index(params, b), tx.init(_index(params, b))
    for grads in steps:
      p_loop_apply, s_loop_apply = apply(_index(grads, b), s_loop_apply, p_loop_apply)
    assert_trees_close(
      _index(p_update, b), p_loop, rtol=tol, floor=LEAF_MAX, what=f"update params[{b}]"
    )
    _check_states(_index(s_update, b), s_loop, tol)
    assert_trees_close(
      _index(p_apply, b), p_loop_apply, rtol=tol, floor=LEAF_MAX, what=f"apply params[{b}]"
    )
    _check_states(_index(s_apply, b), s_loop_apply, tol)


@pytest.mark.parametrize("kwargs", [{}, dict(clipnorm=0.5, weight_decay=0.1)])
def test_vmap_with_shared_and_per_problem_inputs(kwargs):
  """in_axes mixing batched and unbatched inputs, and per-problem hyperparameters.

  One gradient shared by every problem (``in_axes=None``), and a learning rate per problem
  through :func:`optax.inject_hyperparams` (a batched hyperparameter state).
  """
  rng = np.random.default_rng(1)
  params = _tree(rng, np.float32, BATCH)
  grads = _grads(rng, _index(params, 0))
  tx = adadelta_optax.adadelta(**kwargs)
  state = jax.vmap(tx.init)(params)
  updates, new_state = jax.jit(jax.vmap(tx.update, in_axes=(None, 0, 0)))(grads, state, params)
  for b in range(BATCH):
    u, s = tx.update(grads, _index(state, b), _index(params, b))
    assert_trees_close(_index(updates, b), u, rtol=ULPS[np.float32], floor=LEAF_MAX, what="updates")
    _check_states(_index(new_state, b), s, ULPS[np.float32])

  injected = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=0.1, **kwargs)
  states = jax.vmap(injected.init)(params)
  rates = jnp.asarray([0.1, 0.5, 2.0], jnp.float32)
  states.hyperparams["learning_rate"] = rates
  grads = _grads(rng, params)
  updates, _ = jax.jit(jax.vmap(injected.update))(grads, states, params)
  for b, rate in enumerate([0.1, 0.5, 2.0]):
    u, _ = adadelta_optax.adadelta(**{**kwargs, "learning_rate": rate}).update(
      _index(grads, b), _index(state, b), _index(params, b)
    )
    assert_trees_close(
      _index(updates, b), u, rtol=ULPS[np.float32], floor=LEAF_MAX, what=f"learning rate {rate}"
    )


def test_nested_vmap_and_vmap_of_a_jitted_train_step():
  """vmap of vmap (models x seeds), and vmap of a whole jitted step that takes its gradient."""
  tx = adadelta_optax.adadelta(learning_rate=0.5, clipnorm=1.0)
  rng = np.random.default_rng(3)
  params = _tree(rng, np.float32, BATCH)
  params = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)  # (2, BATCH, ...)
  x = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)

  def loss(p):
    # Elementwise in every parameter, so that the gradient holds no sum: the batched and the
    # one-problem steps then do the same arithmetic on each element, and the comparison is of
    # the optimizer's step. (With x @ w, XLA sums the batched dot in another order on some CPUs:
    # measured 1 ulp past the bound on an AMD EPYC.)
    return (
      jnp.sum(jnp.tanh(p["w"] * x) ** 2)
      + jnp.sum(jnp.sin(p["b"]))
      + jnp.sum(p["rows"] ** 2)
      + p["s"] ** 2
    )

  @jax.jit
  def train_step(p, s):
    return tx.apply_gradients(jax.grad(loss)(p), s, p)

  state = jax.vmap(jax.vmap(tx.init))(params)
  step = jax.jit(jax.vmap(jax.vmap(train_step)))
  assert "adadelta_optax_tree" in step.lower(params, state).as_text()
  p_batched, s_batched = params, state
  for _ in range(4):
    p_batched, s_batched = step(p_batched, s_batched)
  for i in range(2):
    for b in range(BATCH):
      p, s = _index(_index(params, i), b), tx.init(_index(_index(params, i), b))
      for _ in range(4):
        p, s = train_step(p, s)
      assert_trees_close(
        _index(_index(p_batched, i), b),
        p,
        rtol=ULPS[np.float32],
        floor=LEAF_MAX,
        what=f"params[{i},{b}]",
      )
      _check_states(_index(_index(s_batched, i), b), s, ULPS[np.float32])


def _unrolled_loss(tx, steps=3):
  """The loss after ``steps`` optax steps, as a function of the initial params."""
  target = jnp.linspace(-2.0, 3.0, 12, dtype=jnp.float64).reshape(4, 3)

  def loss_of(p):
    return jnp.sum((p["w"] - target) ** 2) + jnp.sum(jnp.sin(p["b"])) + p["s"] ** 4

  def run(params):
    state = tx.init(params)
    for _ in range(steps):
      updates, state = tx.update(jax.grad(loss_of)(params), state, params)
      params = optax.apply_updates(params, updates)
    return loss_of(params)

  return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_derivatives_equal_the_fused_paths(name):
  """``jax.grad``, ``jax.jvp`` and ``jax.linearize`` through update + apply_updates, float64.

  Each under ``jax.jit``: the transformations are the same, and the unrolled steps compile once
  instead of dispatching op by op (about 5x faster here)."""
  kwargs = CASES[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = {k: v for k, v in _tree(rng, np.float64).items() if k in ("w", "b", "s")}
  tangent = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
  kernel = _unrolled_loss(adadelta_optax.adadelta(**kwargs))
  fused = _unrolled_loss(adadelta_optax.adadelta(**kwargs, implementation="fused"))

  grad_kernel, grad_fused = jax.jit(jax.grad(kernel))(params), jax.jit(jax.grad(fused))(params)
  for k in params:
    np.testing.assert_allclose(grad_kernel[k], grad_fused[k], rtol=1e-9, atol=1e-12, err_msg=k)

  def jvp(f):
    return jax.jit(lambda p, t: jax.jvp(f, (p,), (t,)))(params, tangent)

  def linearized(p, t):
    value, linear = jax.linearize(kernel, p)
    return value, linear(t)

  (value_k, tangent_k), (value_f, tangent_f) = jvp(kernel), jvp(fused)
  np.testing.assert_allclose(value_k, value_f, rtol=1e-12)
  np.testing.assert_allclose(tangent_k, tangent_f, rtol=1e-9, atol=1e-12)
  value_lin, tangent_lin = jax.jit(linearized)(params, tangent)
  np.testing.assert_allclose(value_lin, value_f, rtol=1e-12)
  np.testing.assert_allclose(tangent_lin, tangent_f, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
  "kwargs", [{}, dict(clipnorm=0.4, weight_decay=0.1, decoupled_weight_decay=True)]
)
def test_hypergradient_of_the_learning_rate(kwargs):
  """d(loss after K steps)/d(learning rate) through inject_hyperparams: the kernel path equals
  the fused path, and both equal a central finite difference (an independent check)."""

  def loss_after_steps(rate, implementation):
    tx = optax.inject_hyperparams(adadelta_optax.adadelta)(
      learning_rate=rate, implementation=implementation, **kwargs
    )
    params = {"w": jnp.linspace(-1.0, 2.0, 9, dtype=jnp.float64)}
    state = tx.init(params)
    for _ in range(4):
      grads = jax.grad(lambda p: jnp.sum(jnp.cos(p["w"]) + p["w"] ** 2))(params)
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
    return jnp.sum(params["w"] ** 2)

  rate = jnp.float64(0.7)
  kernel = jax.grad(loss_after_steps)(rate, "auto")
  fused = jax.grad(loss_after_steps)(rate, "fused")
  np.testing.assert_allclose(kernel, fused, rtol=1e-9)
  h = 1e-6
  numeric = (loss_after_steps(rate + h, "auto") - loss_after_steps(rate - h, "auto")) / (2 * h)
  np.testing.assert_allclose(kernel, numeric, rtol=1e-6)


def test_export_of_a_vmapped_step():
  """A vmapped, jitted step exports: for CPU with the kernel (its custom call allowed), and
  portably with implementation='fused'; both round-trip and match the eager batch."""
  rng = np.random.default_rng(5)
  params = _tree(rng, np.float32, BATCH)
  grads = _grads(rng, params)
  results = {}
  for implementation in ("auto", "fused"):
    tx = adadelta_optax.adadelta(clipnorm=0.5, implementation=implementation)
    state = jax.vmap(tx.init)(params)
    step = jax.jit(jax.vmap(tx.apply_gradients))
    if implementation == "auto":
      exported = jax.export.export(
        step,
        platforms=("cpu",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("adadelta_optax_tree_f32")],
      )(grads, state, params)
    else:
      exported = jax.export.export(step, platforms=("cpu", "cuda", "tpu"))(grads, state, params)
    restored = jax.export.deserialize(exported.serialize())
    results[implementation] = restored.call(grads, state, params)
    expected = step(grads, state, params)
    assert_trees_close(
      results[implementation][0], expected[0], rtol=ULPS[np.float32], floor=LEAF_MAX, what="params"
    )
  assert_trees_close(
    results["auto"][0],
    results["fused"][0],
    rtol=4 * ULPS[np.float32],
    floor=LEAF_MAX,
    what="auto vs fused",
  )
