"""The fused paths (C++ kernel on CPU, fused JAX elsewhere) against the reference and each other.

Timing is not tested here (see benchmarks/); what is deterministic is: the numbers, which path
runs, that the step works in place, and its memory traffic and temporaries.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax
from adadelta_optax.core import _kernel, _step

import reference
from helpers import (
  JAX_VERSION,
  LEAF_MAX,
  OPTIONS,
  ULPS,
  _options,
  assert_bitwise,
  assert_matches_reference,
  assert_trees_close,
  random_grads,
  random_tree,
  run_jax,
  run_reference,
)

IMPLEMENTATIONS = ["kernel", "fused", "xla"]


def test_kernel_is_built_here():
  """The package's build compiled the CPU kernel on this machine (x86_64 Linux with g++)."""
  assert adadelta_optax.kernel_available(), adadelta_optax.kernel_unavailable_reason()
  assert adadelta_optax.adadelta().implementation == "kernel"


@pytest.mark.parametrize("implementation", ["fused", "xla"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_other_paths_match_reference(name, dtype, rtol, implementation):
  """The fused-JAX and the reference-chain paths also follow the NumPy reference (jitted).

  (The default kernel path is covered eagerly and jitted by test_adadelta.py.)
  """
  kwargs, overrides = OPTIONS[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()) + 7)
  params = random_tree(rng, dtype, complex_leaf=True)
  grads = random_grads(rng, params, 60)
  tx = adadelta_optax.adadelta(**kwargs, implementation=implementation)
  assert tx.implementation == implementation
  final, state = run_jax(tx, params, grads, jit=True)
  ref = run_reference(params, grads, _options(kwargs, overrides))
  assert_matches_reference(final, state, ref, rtol=rtol)


def _random_state(tx, params, rng):
  """A state with random (valid) accumulators and count, to compare single steps tightly."""
  state = tx.init(params)
  leaves = jax.tree.leaves(state.accum_grad)

  def draw(x):
    values = np.abs(rng.normal(size=np.shape(x))) * 10.0 ** rng.uniform(-6, 0)
    if np.iscomplexobj(x):
      values = values + 1j * np.abs(rng.normal(size=np.shape(x))) * 1e-3
    return values.astype(np.asarray(x).dtype)

  weights = [np.int64(7)] + [draw(x) for x in leaves] + [draw(x) for x in leaves]
  return adadelta_optax.set_weights(state, weights)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_kernel_step_equals_reference_chain_step(name, dtype):
  """One step from the same random state: kernel == reference chain to a few ulps.

  Both the optax API (update, then apply_updates) and the fused apply_gradients, which must agree
  with each other as well.
  """
  kwargs, _ = OPTIONS[name]
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = jax.tree.map(jnp.asarray, random_tree(rng, dtype, complex_leaf=True))
  grads = jax.tree.map(jnp.asarray, random_grads(rng, params, 1)[0])
  plain = adadelta_optax.adadelta(**kwargs, implementation="xla")
  fast = adadelta_optax.adadelta(**kwargs, implementation="kernel")
  state = _random_state(plain, params, rng)
  u_plain, s_plain = jax.jit(plain.update)(grads, state, params)
  u_fast, s_fast = jax.jit(fast.update)(grads, state, params)
  p_fast, s_apply = jax.jit(fast.apply_gradients)(grads, state, params)
  tol = ULPS[dtype]
  assert_trees_close(u_fast, u_plain, rtol=tol, floor=LEAF_MAX, what="updates")
  # apply_gradients adds exactly the update that update() returns. (Not compared with p_plain
  # in ulps of the result: p + u can cancel, 0.53 + 0.55 -> 0.022 in float32 here, where one ulp
  # of the update is 32 ulps of the sum.) Bit for bit on the kernel's leaves (its arithmetic is
  # ours); the complex leaf takes the fused JAX path, where XLA may contract p + lr * u into one
  # FMA per component in apply_gradients and not in update (jaxlib 0.12 does): there the two
  # differ by the rounding of lr * u and of the sum, at most eps * (|p + u| + |u|) per component.
  applied = optax.apply_updates(params, u_fast)
  for a, b, u in zip(
    jax.tree.leaves(p_fast), jax.tree.leaves(applied), jax.tree.leaves(u_fast), strict=True
  ):
    if a.dtype in _kernel.KERNEL_DTYPES:
      np.testing.assert_array_equal(a, b)
      continue
    eps = float(jnp.finfo(a.dtype).eps)
    for part in (np.real, np.imag):
      bound = eps * (np.abs(part(np.asarray(b))) + np.abs(part(np.asarray(u))))
      assert np.all(np.abs(part(np.asarray(a)) - part(np.asarray(b))) <= bound), (a, b)
  for s in (s_fast, s_apply):
    assert_trees_close(
      s.accum_grad, s_plain.accum_grad, rtol=tol, floor=LEAF_MAX, what="accum_grad"
    )
    assert_trees_close(s.accum_var, s_plain.accum_var, rtol=tol, floor=LEAF_MAX, what="accum_var")
    assert int(s.count) == 8


def _tree_of(sizes, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  return {f"leaf{i:04d}": rng.normal(size=(n,)).astype(dtype) for i, n in enumerate(sizes)}


@pytest.mark.parametrize(
  "sizes",
  [
    [600_000, 3, 1],  # one leaf large enough for two threads, plus tiny ones
    [10_000] * 40,  # two calls (32 + 8 leaves), threads split across leaf boundaries
    [0, 5, 0, 1],  # empty leaves
  ],
  ids=["big-leaf", "many-leaves", "empty-leaves"],
)
@pytest.mark.parametrize("kwargs", [{}, dict(clipnorm=0.5, clipvalue=0.3, weight_decay=0.01)])
def test_kernel_partitioning(sizes, kwargs):
  """Threads, chunks and calls cut the leaves anywhere without changing a number."""
  params = jax.tree.map(jnp.asarray, _tree_of(sizes))
  grads = jax.tree.map(lambda x: x * 0.5 + 0.1, params)
  plain = adadelta_optax.adadelta(**kwargs, implementation="xla")
  fast = adadelta_optax.adadelta(**kwargs)
  state = _random_state(plain, params, np.random.default_rng(1))
  p_plain = optax.apply_updates(params, jax.jit(plain.update)(grads, state, params)[0])
  p_fast, _ = jax.jit(fast.apply_gradients)(grads, state, params)
  assert_trees_close(p_fast, p_plain, rtol=ULPS[np.float32], floor=LEAF_MAX, what="params")


def _compiled_apply(tx, params):
  step = jax.jit(lambda p, s, g: tx.apply_gradients(g, s, p), donate_argnums=(0, 1))
  return step, step.lower(params, tx.init(params), params).compile()


# The global norm is a reduction XLA compiles around the kernel: how it reads the gradients for
# it is that XLA's choice. From jax 0.10 it reads them once, with no temporary (32 B/param). Older
# XLAs materialize the squares in one float32 temporary of the params' size and read the
# gradients up to four times (measured 44.3 B/param and 1.024 float32 copies of the params in
# temporaries on jax 0.6.2; 40.3 B/param on 0.8.3 and 0.9.2): there the bounds are
# 28 + 4 * 4 + 0.5 B/param and one such temporary plus 5% (XLA's reduction buffers). A property
# of XLA's code, not of this package (benchmarks/bench_step.py measures the time).
_XLA_FUSES_THE_NORM = JAX_VERSION >= (0, 10)
GLOBAL_NORM_LIMIT = 32 if _XLA_FUSES_THE_NORM else 44.5
GLOBAL_NORM_TEMPORARY = 0.01 if _XLA_FUSES_THE_NORM else 1.05  # in float32 copies of the params


@pytest.mark.parametrize(
  "kwargs,limit",
  [
    ({}, 28),
    (dict(global_clipnorm=1.0), GLOBAL_NORM_LIMIT),
    (dict(clipnorm=1.0), 32),
    (dict(weight_decay=0.1, clipvalue=0.5, maximize=True), 28),
  ],
)
def test_memory_traffic_and_temporaries(kwargs, limit):
  """Bytes moved per float32 param (XLA's cost analysis + the kernel's own accounting) and temps.

  The reference chain moves 68 B/param through 200 MB of temporaries for 25M params (the issue's
  figures); the fused step moves each byte once, in place (see GLOBAL_NORM_LIMIT for the norm).
  """
  params = jax.tree.map(jnp.asarray, _tree_of([1_000_000, 300_000, 1000, 10]))
  n = sum(x.size for x in jax.tree.leaves(params))
  tx = adadelta_optax.adadelta(**kwargs)
  _, compiled = _compiled_apply(tx, params)
  xla_bytes = max(compiled.cost_analysis().get("bytes accessed", 0.0), 0.0)
  total = xla_bytes + tx.kernel_bytes(params)
  assert tx.kernel_bytes(params) >= 28 * n  # the kernel really takes every leaf
  assert total / n <= limit + 0.01, total / n
  copies = GLOBAL_NORM_TEMPORARY if "global_clipnorm" in kwargs else 0.01
  assert compiled.memory_analysis().temp_size_in_bytes < copies * 4 * n
  text = compiled.as_text()
  assert text.count('custom_call_target="adadelta_optax_tree_f32"') == 1
  plain = adadelta_optax.adadelta(**kwargs, implementation="xla")
  _, plain_compiled = _compiled_apply(plain, params)
  assert plain_compiled.cost_analysis()["bytes accessed"] / n > 40  # what the fast path avoids


def test_calls_are_chunked():
  """Leaves go to the kernel in calls of at most MAX_LEAVES_PER_CALL (compile-time bound)."""
  params = jax.tree.map(jnp.asarray, _tree_of([7] * 70))
  _, compiled = _compiled_apply(adadelta_optax.adadelta(), params)
  calls = compiled.as_text().count('custom_call_target="adadelta_optax_tree_f32"')
  assert calls == math.ceil(70 / _step.MAX_LEAVES_PER_CALL)


def test_donated_step_updates_in_place():
  """With donation, params and accumulators keep their buffers: nothing is copied.

  The params are made by XLA (``jnp.copy``), not wrapped around NumPy memory: on CPU,
  ``jnp.asarray`` of a NumPy array may share its memory, and before jax 0.10.1 such a buffer was
  copied rather than donated (JAX cannot hand NumPy's memory to XLA), intermittently."""
  params = jax.tree.map(lambda x: jnp.copy(jnp.asarray(x)), _tree_of([50_000, 100]))
  tx = adadelta_optax.adadelta()
  step, _ = _compiled_apply(tx, params)
  state = tx.init(params)
  before = [x.unsafe_buffer_pointer() for x in jax.tree.leaves((params, state.accum_grad))]
  params, state = step(params, state, jax.tree.map(jnp.ones_like, params))
  after = [x.unsafe_buffer_pointer() for x in jax.tree.leaves((params, state.accum_grad))]
  assert before == after


def test_update_writes_into_the_gradient_buffer():
  """``update`` writes the update over the gradient: in a step that computes the gradient (as a
  Flax train step does) the update needs no temporary; a gradient the caller still holds is left
  as it was (XLA copies it first); a donated one gives its buffer to the update."""
  params = jax.tree.map(jnp.asarray, _tree_of([50_000, 100]))
  tx = adadelta_optax.adadelta()
  state = tx.init(params)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
  want, _ = jax.jit(adadelta_optax.adadelta(implementation="fused").update)(grads, state, params)

  kept = jax.jit(tx.update)(grads, state, params)[0]
  assert all(bool(jnp.all(g == 0.25)) for g in jax.tree.leaves(grads))  # not clobbered
  eager = tx.update(grads, state, params)[0]
  assert all(bool(jnp.all(g == 0.25)) for g in jax.tree.leaves(grads))
  for got in (kept, eager):
    np.testing.assert_array_equal(
      np.concatenate(jax.tree.leaves(got)), np.concatenate(jax.tree.leaves(want))
    )

  donated = jax.jit(tx.update, donate_argnums=0)
  fresh = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
  before = [g.unsafe_buffer_pointer() for g in jax.tree.leaves(fresh)]
  updates, _ = donated(fresh, state, params)
  assert [u.unsafe_buffer_pointer() for u in jax.tree.leaves(updates)] == before

  def train_step(params, state, scale):
    grads = jax.tree.map(lambda x: x * scale, params)  # the gradient, made in the step
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  n = sum(x.size for x in jax.tree.leaves(params))
  compiled = jax.jit(train_step).lower(params, state, 0.5).compile()
  # The gradient is written where the new params go and the update in its place: no temporary
  # (without the aliasing the update needs one of 4 B/param).
  assert compiled.memory_analysis().temp_size_in_bytes < 0.01 * 4 * n


def test_mixed_tree_uses_kernel_where_it_can():
  """float32 and float64 groups go to the kernel; bfloat16, complex and cast state do not."""
  rng = np.random.default_rng(3)
  params = {
    "f32": jnp.asarray(rng.normal(size=(40,)), jnp.float32),
    "f64": jnp.asarray(rng.normal(size=(30,)), jnp.float64),
    "bf16": jnp.asarray(rng.normal(size=(20,)), jnp.bfloat16),
    "c64": jnp.asarray(rng.normal(size=(10,)) + 1j, jnp.complex64),
  }
  grads = jax.tree.map(lambda x: x * 0.3, params)
  fast, plain = adadelta_optax.adadelta(), adadelta_optax.adadelta(implementation="xla")
  _, compiled = _compiled_apply(fast, params)
  text = compiled.as_text()
  assert "adadelta_optax_tree_f32" in text and "adadelta_optax_tree_f64" in text
  p_fast, s_fast = jax.jit(fast.apply_gradients)(grads, fast.init(params), params)
  u, s_plain = jax.jit(plain.update)(grads, plain.init(params), params)
  p_plain = optax.apply_updates(params, u)
  for key in ("f32", "f64", "c64"):
    np.testing.assert_allclose(p_fast[key], p_plain[key], rtol=1e-6)
  assert p_fast["bf16"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(p_fast["bf16"]), np.float32(p_plain["bf16"]), rtol=1e-2)
  np.testing.assert_allclose(s_fast.accum_var["bf16"], s_plain.accum_var["bf16"], rtol=1e-2)


def test_lowers_for_gpu_and_tpu_without_the_kernel():
  """One jitted step serves every platform: cuda/tpu lower the fused-JAX branch."""
  params = {"w": jnp.ones((64, 8), jnp.float32), "b": jnp.zeros((8,), jnp.float32)}
  tx = adadelta_optax.adadelta(global_clipnorm=1.0)
  step = jax.jit(lambda p, s, g: tx.apply_gradients(g, s, p))
  args = (params, tx.init(params), params)
  for platform in ("cuda", "tpu"):
    exported = jax.export.export(step, platforms=[platform])(*args)
    assert "adadelta_optax_tree" not in exported.mlir_module(), platform
  assert "adadelta_optax_tree_f32" in step.lower(*args).as_text()


def test_fused_implementation_exports_for_cpu_and_runs():
  """implementation='fused' has no custom call, so a CPU export round-trips and runs."""
  params = {"w": jnp.linspace(-1.0, 1.0, 32, dtype=jnp.float32)}
  tx = adadelta_optax.adadelta(implementation="fused", clipnorm=0.1)
  step = jax.jit(lambda p, s, g: tx.apply_gradients(g, s, p))
  args = (params, tx.init(params), params)
  exported = jax.export.export(step, platforms=["cpu"])(*args)
  restored = jax.export.deserialize(exported.serialize())
  out, _ = restored.call(*args)
  expected, _ = adadelta_optax.adadelta(clipnorm=0.1).apply_gradients(
    params, tx.init(params), params
  )
  np.testing.assert_allclose(out["w"], expected["w"], rtol=1e-6)


def test_unbuilt_kernel(monkeypatch):
  """Without the compiled kernel, 'auto' runs fused JAX and 'kernel' is a clear error."""
  monkeypatch.setattr(_kernel, "_load", lambda: "the kernel was not built (test)")
  assert adadelta_optax.adadelta().implementation == "fused"
  with pytest.raises(ValueError, match="the kernel was not built"):
    adadelta_optax.adadelta(implementation="kernel")
  with pytest.raises(ValueError, match="implementation must be one of"):
    adadelta_optax.adadelta(implementation="cuda")


@pytest.mark.parametrize("implementation", ["kernel", "fused", "xla"])
def test_tiny_gradients_step_as_the_reference(implementation):
  """float64, eps 1e-7, gradients far below sqrt(eps): A + eps == eps == D + eps, so the ratio
  of the roots is exactly 1 and the first update is exactly -lr * g (the NumPy reference's
  ``sqrt(D + eps) / sqrt(A + eps) * g``). The kernel once computed ``1 / sqrt(A + eps)`` first
  and was an ulp off here; it now divides, as the reference and torch do: bit for bit, since its
  operation order is ours (compiled with -ffp-contract=off).

  The fused and xla paths are compiled by XLA, which may rewrite ``a / sqrt(b)`` as
  ``a * rsqrt(b)``; its CPU ``rsqrt`` is an approximation refined by Newton steps whose last bit
  depends on the CPU's instruction set (measured: -9.999999999999999e-31 for -1e-30 on an AMD
  EPYC, exact on an Intel Xeon). There: within 2 ulps (one for ``rsqrt``, one for the product)."""
  params = {"w": jnp.asarray([1.0, 2.0, 3.0, 4.0], jnp.float64)}
  grads = {"w": jnp.asarray([1e-30, -1e-30, 1e-300, 3e-20], jnp.float64)}
  tx = adadelta_optax.adadelta(epsilon=1e-7, implementation=implementation)
  assert tx.implementation == implementation
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  ref = run_reference([params["w"]], [[grads["w"]]], reference.Options(epsilon=1e-7))
  if implementation == "kernel":
    np.testing.assert_array_equal(updates["w"], -np.asarray(grads["w"]))
    np.testing.assert_array_equal(params["w"] + updates["w"], ref.params[0])
    np.testing.assert_array_equal(state.accum_var["w"], ref.accum_var[0])
    return
  eps = np.finfo(np.float64).eps
  np.testing.assert_allclose(updates["w"], -np.asarray(grads["w"]), rtol=2 * eps, atol=0)
  np.testing.assert_allclose(params["w"] + updates["w"], ref.params[0], rtol=2 * eps, atol=0)
  # accum_var = (1 - rho) * update**2: the update's 2 ulps, doubled by the square, and one more.
  np.testing.assert_allclose(state.accum_var["w"], ref.accum_var[0], rtol=5 * eps, atol=0)


STRICT_OPTIONS = {
  "clips_coupled_wd": dict(clipnorm=1.0, clipvalue=0.5, weight_decay=0.01),
  "global_decoupled_schedule": dict(
    global_clipnorm=1.0,
    weight_decay=0.01,
    decoupled_weight_decay=True,
    maximize=True,
    learning_rate=optax.linear_schedule(1.0, 0.1, 10),
    decay=0.01,
  ),
  "state_float32": dict(state_dtype="float32", global_clipnorm=1.0),
  "state_float64": dict(state_dtype="float64", clipnorm=1.0),
}


# Every implementation and layout ("xla" has no flat layout: refused when built).
PATHS = [(i, "tree") for i in IMPLEMENTATIONS] + [("kernel", "flat"), ("fused", "flat")]


@pytest.mark.parametrize(("implementation", "layout"), PATHS)
@pytest.mark.parametrize("name", sorted(STRICT_OPTIONS))
def test_strict_dtype_promotion(name, implementation, layout):
  """Under jax.numpy_dtype_promotion("strict") (what mixed-precision users turn on to catch
  silent upcasts) every path steps 16-bit, 32-bit, 64-bit and complex leaves, and gives exactly
  the numbers of the default mode: the casts are written out, so the program is the same.
  bfloat16 and float16 params once crashed with TypePromotionError on every path."""
  if implementation == "kernel" and not adadelta_optax.kernel_available():
    pytest.fail(adadelta_optax.kernel_unavailable_reason())
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  params = {
    "bf16": jnp.asarray(rng.normal(size=(3, 2)), jnp.bfloat16),
    "f16": jnp.asarray(rng.normal(size=(4,)), jnp.float16),
    "f32": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
    "f64": jnp.asarray(rng.normal(size=(2,)), jnp.float64),
    "c64": jnp.asarray(rng.normal(size=(3,)) + 1j * rng.normal(size=(3,)), jnp.complex64),
  }
  grads = jax.tree.map(lambda x: (x * 0.5 + 0.25).astype(x.dtype), params)
  kwargs = dict(STRICT_OPTIONS[name], implementation=implementation, state_layout=layout)
  results = {}
  for mode in ("standard", "strict"):
    with jax.numpy_dtype_promotion(mode):
      tx = adadelta_optax.adadelta(**kwargs)
      state = tx.init(params)
      results[mode] = (
        jax.jit(tx.update)(grads, state, params),
        jax.jit(tx.apply_gradients)(grads, state, params),
        tx.update(grads, state, params),
      )
  assert_bitwise(results["strict"], results["standard"], f"{name} strict vs standard")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_params_with_a_wider_state_apply_as_they_update(implementation, dtype):
  """float8 params with state_dtype="float32" (what the float8 error advises): apply_gradients
  once crashed where update worked (JAX never promotes 8-bit floats implicitly). Now it steps,
  within one float8 rounding of update + optax.apply_updates (which rounds the update to float8
  before adding it: apply_gradients rounds once) and of the float64 reference."""
  params = {"w": jnp.asarray([0.5, -1.0, 2.0, 0.0, 0.75], dtype)}
  grads = {"w": jnp.asarray([0.25, 0.5, -1.0, 0.125, 0.0], dtype)}
  kwargs = dict(epsilon=0.01, rho=0.9)  # steps of about 0.3: visible in float8
  tx = adadelta_optax.adadelta(**kwargs, state_dtype="float32", implementation=implementation)
  state = tx.init(params)
  applied, _ = jax.jit(tx.apply_gradients)(grads, state, params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  stepped = optax.apply_updates(params, updates)
  assert applied["w"].dtype == stepped["w"].dtype == jnp.dtype(dtype)
  x0 = np.asarray(params["w"], np.float64)
  ref = run_reference([x0], [[np.asarray(grads["w"], np.float64)]], reference.Options(**kwargs))
  moved = np.asarray(applied["w"], np.float64)
  assert np.count_nonzero(moved != x0) >= 3, moved  # a real step, not a rounding to no change
  finfo = jnp.finfo(dtype)
  tiny = float(finfo.smallest_subnormal) if hasattr(finfo, "smallest_subnormal") else 0.0
  one_rounding = float(finfo.eps) * np.abs(ref.params[0]) + tiny
  np.testing.assert_array_less(np.abs(moved - ref.params[0]), one_rounding + 1e-12)
  two_roundings = 2 * float(finfo.eps) * np.abs(moved) + 2 * tiny
  np.testing.assert_array_less(
    np.abs(moved - np.asarray(stepped["w"], np.float64)), two_roundings + 1e-12
  )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
  ("param_dtype", "state_dtype"), [(jnp.float32, jnp.bfloat16), (jnp.float64, jnp.float32)]
)
def test_a_narrower_state_dtype_never_rounds_the_params(implementation, param_dtype, state_dtype):
  """float32 params with a bfloat16 state: the step is computed in float32 (_dtypes.step_dtype)
  and the accumulators stored in bfloat16, but the params keep float32 precision (1.001 once
  became 1.0 and 3.1415927 3.140625 in one tiny step)."""
  params = {"w": jnp.asarray([1.001, 3.1415927, -2.7182817], param_dtype)}
  grads = {"w": jnp.asarray([1e-3, -1e-3, 2e-3], param_dtype)}
  tx = adadelta_optax.adadelta(
    learning_rate=1e-6, state_dtype=state_dtype, implementation=implementation
  )
  state = tx.init(params)
  assert state.accum_grad["w"].dtype == state_dtype
  applied, _ = jax.jit(tx.apply_gradients)(grads, state, params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  stepped = optax.apply_updates(params, updates)
  for new in (applied, stepped):
    assert new["w"].dtype == param_dtype
    # |update| <= lr * sqrt(eps) / sqrt(eps) * |g|-ish: far below 1e-6, far below bfloat16's ulp.
    np.testing.assert_array_less(np.abs(np.asarray(new["w"] - params["w"], np.float64)), 1e-8)
  np.testing.assert_array_equal(applied["w"], stepped["w"])
