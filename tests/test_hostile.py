"""Hostile input: random pytrees, dtypes and hyperparameters (hypothesis), non-finite gradients,
extreme magnitudes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adadelta_optax

import reference
from helpers import LEAF_MAX, assert_trees_close

# Per dtype: (state_dtype, rtol vs the float64 reference over 3 steps). Half precisions keep the
# state in float32 (their own 8/11-bit mantissas cannot hold a moving average: an honest test
# of that would only measure rounding); params and updates round to the leaf dtype each step.
DTYPES = {
  "float16": (jnp.float32, 5e-3),
  "bfloat16": (jnp.float32, 2e-2),
  "float32": (None, 2e-5),
  "float64": (None, 1e-12),
  "complex64": (None, 2e-5),
}


#: Hypothesis problems per dtype (120 in all).
PROBLEMS_PER_DTYPE = 24


@st.composite
def problems(draw, dtype):
  shapes = draw(
    st.lists(st.lists(st.integers(0, 4), max_size=3).map(tuple), min_size=1, max_size=4)
  )
  seed = draw(st.integers(0, 2**31 - 1))
  kwargs = dict(
    learning_rate=draw(st.floats(1e-3, 2.0)),
    rho=draw(st.floats(0.0, 1.0)),
    epsilon=draw(st.floats(1e-10, 1e-2)),
    implementation=draw(st.sampled_from(["auto", "xla"])),
  )
  option = draw(
    st.sampled_from(
      ["none", "clipvalue", "clipnorm", "global_clipnorm", "weight_decay", "maximize"]
    )
  )
  if option == "clipvalue":
    kwargs["clipvalue"] = draw(st.floats(0.1, 10.0))
  elif option == "clipnorm":
    kwargs["clipnorm"] = draw(st.floats(0.1, 10.0))
  elif option == "global_clipnorm":
    kwargs["global_clipnorm"] = draw(st.floats(0.1, 10.0))
  elif option == "weight_decay":
    kwargs["weight_decay"] = draw(st.floats(0.0, 0.1))
  elif option == "maximize":
    kwargs["maximize"] = True
  return dtype, shapes, seed, kwargs, draw(st.floats(-3, 3))


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_random_problems_match_reference(dtype):
  """24 hypothesis problems of each dtype agree with the reference, and all 24 really ran.

  Health checks are off (every problem compiles), so a strategy that came to reject most of its
  draws would pass on a few problems without a word: the count of problems checked says it did not.
  """
  checked = []

  @settings(max_examples=PROBLEMS_PER_DTYPE, deadline=None, suppress_health_check=list(HealthCheck))
  @given(problems(dtype))
  def check(problem):
    _check_problem(problem)
    checked.append(problem)

  check()
  assert len(checked) >= PROBLEMS_PER_DTYPE


def test_bfloat16_moves_that_nearly_cancel():
  """Found by hypothesis: bfloat16 params whose three moves nearly cancel (rho 1 makes each move
  the gradient itself, about 10 here): rounding to bfloat16 on the way is an ulp of ~10, not of
  the net move, and the bound of :func:`_check_problem` counts it."""
  kwargs = dict(learning_rate=1.0, rho=1.0, epsilon=0.0078125)
  _check_problem(("bfloat16", [(2, 3)], 524283, kwargs, 1.0))


def _check_problem(problem):
  dtype, shapes, seed, kwargs, log_scale = problem
  rng = np.random.default_rng(seed)
  state_dtype, rtol = DTYPES[dtype]
  np_dtype = jnp.dtype(dtype)

  def leaf(shape, scale=1.0):
    x = rng.normal(size=shape) * scale
    if dtype == "complex64":
      x = x + 1j * rng.normal(size=shape) * scale
    return np.asarray(x).astype(np_dtype)

  params = {f"p{i}": leaf(s) for i, s in enumerate(shapes)}
  grads = [{k: leaf(np.shape(v), 10.0**log_scale) for k, v in params.items()} for _ in range(3)]
  tx = adadelta_optax.adadelta(**kwargs, state_dtype=state_dtype)
  p, state = params, tx.init(params)
  step = jax.jit(tx.apply_gradients)
  for g in grads:
    p, state = step(g, state, p)
  # The reference sees what the optimizer saw: the leaves rounded to their dtype. It is run for
  # 1, 2 and 3 steps, to know the params on the way.
  options = reference.Options(**{k: v for k, v in kwargs.items() if k != "implementation"})
  start = [np.asarray(x, np.complex128) for x in jax.tree.leaves(params)]
  path = [start] + [
    [
      np.asarray(x, np.complex128)
      for x in reference.run(
        [np.asarray(x) for x in jax.tree.leaves(params)],
        [[np.asarray(x) for x in jax.tree.leaves(g)] for g in grads[:k]],
        options,
      ).params
    ]
    for k in (1, 2, 3)
  ]
  ref = reference.run(
    [np.asarray(x) for x in jax.tree.leaves(params)],
    [[np.asarray(x) for x in jax.tree.leaves(g)] for g in grads],
    options,
  )
  half = dtype in ("float16", "bfloat16")
  # Compare the params' total move with the reference's. Each step's move may be off by rtol of
  # that step's move, and each step rounds the move and the new param to the leaf dtype (half an
  # ulp of each, bounded by eps/2 of their magnitudes). The bound sums these over the steps: with
  # steps that cancel (a move of +20 then -20.5), the rounding at 20 counts, not the net 0.5.
  eps = float(jnp.finfo(np_dtype).eps)
  for i, (new, old) in enumerate(zip(jax.tree.leaves(p), start, strict=True)):
    moved = np.asarray(new, np.complex128) - old
    want = path[3][i] - old
    steps = [np.abs(path[k][i] - path[k - 1][i]) for k in (1, 2, 3)]
    sizes = [np.abs(path[k][i]) for k in (1, 2, 3)]
    bound = sum(rtol * u + 0.5 * eps * (u + x) for u, x in zip(steps, sizes, strict=True))
    assert np.all(np.abs(moved - want) <= bound + 1e-30), (moved, want, bound)
  if not half:
    assert_trees_close(
      state.accum_grad, ref.accum_grad, rtol=rtol * 10, floor=LEAF_MAX, what="accum_grad"
    )


@pytest.mark.parametrize("implementation", ["auto", "xla"])
def test_nonfinite_propagates_as_reference(implementation):
  tx = adadelta_optax.adadelta(implementation=implementation)
  params = {"w": jnp.ones(4, jnp.float32)}
  g = {"w": jnp.array([np.nan, np.inf, -np.inf, 1.0], jnp.float32)}
  p, state = jax.jit(tx.apply_gradients)(g, tx.init(params), params)
  with np.errstate(invalid="ignore"):  # inf * 0 and nan in the reference: the point of the test
    ref = reference.run([np.ones(4)], [[np.asarray(g["w"], np.float64)]], reference.Options())
    for got, want in (
      (p["w"], ref.params[0]),
      (state.accum_grad["w"], ref.accum_grad[0]),
      (state.accum_var["w"], ref.accum_var[0]),
    ):
      np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
      np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))


@pytest.mark.parametrize("implementation", ["auto", "xla"])
def test_skip_nonfinite_keeps_state_and_counts(implementation):
  tx = adadelta_optax.skip_nonfinite(adadelta_optax.adadelta(implementation=implementation))
  params = {"w": jnp.ones(3, jnp.float32)}
  state = tx.init(params)
  step = jax.jit(tx.update)
  updates, state = step({"w": jnp.array([1.0, 2.0, 3.0], jnp.float32)}, state, params)
  params = jax.tree.map(jnp.add, params, updates)
  before = jax.tree.map(np.asarray, state)
  for bad in (np.nan, np.inf, -np.inf):
    updates, state = step({"w": jnp.array([1.0, bad, 3.0], jnp.float32)}, state, params)
    assert np.all(np.asarray(updates["w"]) == 0)
    for a, b in zip(
      jax.tree.leaves(state.inner_state), jax.tree.leaves(before.inner_state), strict=True
    ):
      assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
  assert int(state.skipped_steps) == 3 and int(state.inner_state.count) == 1
  updates, state = step({"w": jnp.array([1.0, 2.0, 3.0], jnp.float32)}, state, params)
  assert int(state.inner_state.count) == 2 and np.all(np.asarray(updates["w"]) != 0)


@pytest.mark.parametrize("magnitude", [1e-30, 1e-10, 1.0, 1e10, 1e30])
@pytest.mark.parametrize("epsilon", [1e-30, 1e-7, 1e3])
def test_extreme_magnitudes_stay_finite(magnitude, epsilon):
  tx = adadelta_optax.adadelta(epsilon=epsilon)
  params = jnp.ones(3, jnp.float64)
  g = jnp.array([magnitude, -magnitude, 0.0])
  p, state = jax.jit(tx.apply_gradients)(g, tx.init(params), params)
  for leaf in jax.tree.leaves((p, state)):
    assert np.all(np.isfinite(np.asarray(leaf)))
  ref = reference.run([np.ones(3)], [[np.asarray(g)]], reference.Options(epsilon=epsilon))
  # 1 - u cancels when u ~ 1: one ulp of the param (1.0) on top of the relative error.
  np.testing.assert_allclose(np.asarray(p), ref.params[0], rtol=1e-12, atol=2 * np.finfo(float).eps)


def test_a_million_steps_of_a_fixed_gradient_in_float32():
  # Fixed point A = D = g^2; compare the accumulators with the float64 recurrence.
  tx = adadelta_optax.adadelta(learning_rate=1e-3, rho=0.95, epsilon=1e-6)
  g = jnp.full(4, 0.5, jnp.float32)
  params = jnp.zeros(4, jnp.float32)

  @jax.jit
  def run(params, state):
    return jax.lax.fori_loop(
      0, 1_000_000, lambda _, c: tx.apply_gradients(g, c[1], c[0]), (params, state)
    )

  p, state = run(params, tx.init(params))
  assert np.all(np.isfinite(np.asarray(p))) and int(state.count) == 1_000_000
  # The same recurrence in float64 for one element (D converges to g^2 at a rate of only
  # (1 - rho) eps / (g^2 + eps) = 2e-7 per step, so after 1e6 steps it is about 18% of the way).
  rho, eps, gg = 0.95, 1e-6, 0.25
  a = d = 0.0
  for _ in range(1_000_000):
    a = rho * a + (1 - rho) * gg
    u2 = (d + eps) / (a + eps) * gg
    d = rho * d + (1 - rho) * u2
  np.testing.assert_allclose(np.asarray(state.accum_grad), a, rtol=1e-6)
  # float32 accumulation of 1e6 tiny increments: relative error well under 1e-2 measured.
  np.testing.assert_allclose(np.asarray(state.accum_var), d, rtol=1e-2)
