"""``presets.torch`` against the real ``torch.optim.Adadelta``, step by step.

Both optimizers run side by side on the same parameter pytree (torch sees the leaves in
``jax.tree.leaves`` order) with the same gradients: drawn at random, or computed with NumPy from
the current params of a small regression loss (so the trajectory feeds back into the gradients).
After every one of 60 steps the params and the optimizer state (torch ``square_avg``, ``acc_delta``,
``step`` against ``accum_grad``, ``accum_var``, ``count``) must agree elementwise to 1e-12 (float64)
or 1e-6 (float32) relative, plus that fraction of the leaf's magnitude as absolute tolerance (see
:func:`_check`), so entries near zero do not need more digits than the leaf carries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import adadelta_optax
from adadelta_optax import presets

from helpers import LEAF_MAX, assert_trees_close

STEPS = 60
RTOL = {np.float64: 1e-12, np.float32: 1e-6}
COMPLEX = {np.float64: np.complex128, np.float32: np.complex64}

# torch.optim.Adadelta keyword arguments; the JAX side gets the same values under its own names.
OPTIONS = {
  "defaults": {},
  "lr_rho_eps": dict(lr=0.5, rho=0.8, eps=1e-5),
  "weight_decay": dict(weight_decay=0.01),
  "maximize": dict(maximize=True),
  "maximize_weight_decay": dict(maximize=True, weight_decay=0.01),
}
_JAX_NAMES = {"lr": "learning_rate", "eps": "epsilon"}

# (torch foreach, jax.jit): each torch implementation is paired with one JAX execution mode.
IMPLS = {"single-eager": (False, False), "foreach-jit": (True, True)}


@functools.cache
def _preset_and_update(option_name: str, jit: bool) -> tuple[optax.GradientTransformation, Any]:
  """``presets.torch(**OPTIONS[option_name])`` and its update, jitted or not.

  Cached so that tests sharing options reuse one jitted update (one compile per tree structure).
  """
  options = OPTIONS[option_name]
  tx = presets.torch(**{_JAX_NAMES.get(k, k): v for k, v in options.items()})
  return tx, jax.jit(tx.update) if jit else tx.update


def _init_params(rng: np.random.Generator, dtype: Any, complex_leaf: bool) -> dict[str, Any]:
  """A small model's params as NumPy arrays: 2-D weight, 1-D bias, scalar, maybe complex."""
  params = {
    "w": rng.normal(size=(3, 4)).astype(dtype),
    "b": rng.normal(size=(4,)).astype(dtype),
    "s": np.asarray(rng.normal(), dtype=dtype),
  }
  if complex_leaf:
    z = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))
    params["z"] = z.astype(COMPLEX[dtype])
  return params


def _random_grads(rng: np.random.Generator) -> Callable[[dict[str, np.ndarray]], dict]:
  """Gradients independent of the params, magnitudes over four decades, some exact zeros."""

  def grads(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    scale = 10.0 ** rng.uniform(-3, 1)
    out = {}
    for key in sorted(params):
      p = params[key]
      g = rng.normal(size=p.shape) * scale
      if np.iscomplexobj(p):
        g = g + 1j * rng.normal(size=p.shape) * scale
      g = np.where(rng.uniform(size=p.shape) < 0.1, 0.0, g)
      out[key] = np.asarray(g, dtype=p.dtype)
    return out

  return grads


def _regression_grads(rng: np.random.Generator) -> Callable[[dict[str, np.ndarray]], dict]:
  """Gradient of ``0.5 * mean((x @ w + b + s - y)**2)`` plus a nonlinear pull on ``z``.

  Computed with NumPy in the params' own dtype from whichever params are passed in, so each
  framework follows its own trajectory.
  """
  x_data = rng.normal(size=(8, 3))
  y_data = rng.normal(size=(8, 4))
  z_target = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))

  def grads(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    dtype = params["w"].dtype
    x, y = x_data.astype(dtype), y_data.astype(dtype)
    r = (x @ params["w"] + params["b"] + params["s"] - y) / np.asarray(y.size, dtype)
    out = {
      "w": x.T @ r,
      "b": r.sum(axis=0),
      "s": np.asarray(r.sum(), dtype=dtype),
    }
    if "z" in params:
      z = params["z"]
      zt = z_target.astype(z.dtype)
      out["z"] = (z - zt) * (np.asarray(1.0, dtype) + np.asarray(0.1, dtype) * np.abs(z) ** 2)
    return {k: np.asarray(v, dtype=params[k].dtype) for k, v in out.items()}

  return grads


GRADS = {"random": _random_grads, "regression": _regression_grads}


def _check(
  step: int,
  jax_params: Any,
  jax_state: adadelta_optax.AdadeltaState,
  torch_params: list[torch.Tensor],
  opt: torch.optim.Adadelta,
  rtol: float,
  param_scales: list[float],
) -> float:
  """Asserts params and optimizer state agree; returns the largest scaled error seen.

  The accumulators are sums of non-negative terms, judged against their current magnitude. A
  param is a running sum that may cross zero (a scalar leaf then has no large entry to be judged
  against), so it is judged against the largest magnitude its leaf has had so far:
  ``param_scales`` holds that per leaf and is updated in place.
  """
  names = [jax.tree_util.keystr(path) for path, _ in jax.tree.leaves_with_path(jax_params)]
  errors = [0.0]
  assert int(jax_state.count) == step
  for i, (name, p_jax, a_jax, d_jax, p_torch) in enumerate(
    zip(
      names,
      jax.tree.leaves(jax_params),
      jax.tree.leaves(jax_state.accum_grad),
      jax.tree.leaves(jax_state.accum_var),
      torch_params,
      strict=True,
    )
  ):
    torch_state = opt.state[p_torch]
    assert int(torch_state["step"].item()) == step
    where = f"step {step}, leaf {name}"
    p_ref = p_torch.detach().numpy()
    param_scales[i] = max(param_scales[i], float(np.max(np.abs(p_ref))))
    close = functools.partial(assert_trees_close, rtol=rtol, check_dtype=True)
    errors += [
      close(p_jax, p_ref, floor=param_scales[i], what=f"params, {where}"),
      close(a_jax, torch_state["square_avg"].numpy(), floor=LEAF_MAX, what=f"square_avg, {where}"),
      close(d_jax, torch_state["acc_delta"].numpy(), floor=LEAF_MAX, what=f"acc_delta, {where}"),
    ]
  return max(errors)


def _param_scales(params: Any) -> list[float]:
  return [float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(params)]


def _torch_params(params: dict[str, np.ndarray]) -> list[torch.Tensor]:
  """Leaf tensors in ``jax.tree.leaves`` order, each with its NumPy dtype."""
  return [torch.tensor(np.array(leaf), requires_grad=True) for leaf in jax.tree.leaves(params)]


def _numpy_tree(treedef: Any, leaves: list[Any]) -> dict[str, np.ndarray]:
  return jax.tree.unflatten(treedef, [np.array(leaf) for leaf in leaves])


def _run_parity(
  *,
  option_name: str,
  dtype: Any,
  complex_leaf: bool,
  grad_kind: str,
  impl: str,
  seed: int,
  grads_from_torch_params: bool = False,
) -> float:
  """Runs both optimizers for ``STEPS`` steps, checking after each one; returns the max error.

  With ``grad_kind="regression"`` each framework's gradient is computed from its own params,
  unless ``grads_from_torch_params``, where torch's params give the gradient fed to both.
  """
  foreach, jit = IMPLS[impl]
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  init = _init_params(rng, dtype, complex_leaf)
  grad_fn = GRADS[grad_kind](rng)
  rtol = RTOL[dtype]

  params = jax.tree.map(jnp.asarray, init)
  treedef = jax.tree.structure(params)
  tx, update = _preset_and_update(option_name, jit)
  state = tx.init(params)

  t_params = _torch_params(init)
  opt = torch.optim.Adadelta(t_params, foreach=foreach, **OPTIONS[option_name])

  max_err, scales = 0.0, _param_scales(init)
  for step in range(1, STEPS + 1):
    if grad_kind == "random":
      g_jax_np = g_torch_np = grad_fn(init)
    else:
      g_torch_np = grad_fn(_numpy_tree(treedef, [p.detach().numpy() for p in t_params]))
      g_jax_np = (
        g_torch_np
        if grads_from_torch_params
        else grad_fn(_numpy_tree(treedef, jax.tree.leaves(params)))
      )

    for p, g in zip(t_params, jax.tree.leaves(g_torch_np), strict=True):
      p.grad = torch.from_numpy(np.array(g))
    opt.step()

    updates, state = update(jax.tree.map(jnp.asarray, g_jax_np), state, params)
    params = optax.apply_updates(params, updates)

    max_err = max(max_err, _check(step, params, state, t_params, opt, rtol, scales))

  for leaf, ref in zip(jax.tree.leaves(params), jax.tree.leaves(init), strict=True):
    assert leaf.dtype == ref.dtype
    assert not np.allclose(np.asarray(leaf), ref)  # the run actually moved every leaf
  return max_err


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("grad_kind", sorted(GRADS))
@pytest.mark.parametrize("complex_leaf", [False, True], ids=["real", "complex128"])
@pytest.mark.parametrize("option_name", sorted(OPTIONS))
def test_float64_matches_torch(option_name, complex_leaf, grad_kind, impl):
  """float64/complex128 params and state equal torch's to 1e-12 after each of 60 steps.

  Regression gradients come from each framework's own params: the trajectories are coupled.
  """
  _run_parity(
    option_name=option_name,
    dtype=np.float64,
    complex_leaf=complex_leaf,
    grad_kind=grad_kind,
    impl=impl,
    seed=sorted(OPTIONS).index(option_name) + 10 * complex_leaf,
  )


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("grad_kind", sorted(GRADS))
@pytest.mark.parametrize("complex_leaf", [False, True], ids=["real", "complex64"])
@pytest.mark.parametrize("option_name", sorted(OPTIONS))
def test_float32_matches_torch(option_name, complex_leaf, grad_kind, impl):
  """float32/complex64 params and state equal torch's to 1e-6 after each of 60 steps.

  The two float32 implementations round differently in the last bit (e.g. torch's ``addcmul``
  forms ``value * g * g`` in another order), and a free-running regression loss amplifies that
  through its own conditioning; so the regression gradient is computed from torch's params and
  fed to both, which still makes it depend on the trajectory.
  """
  _run_parity(
    option_name=option_name,
    dtype=np.float32,
    complex_leaf=complex_leaf,
    grad_kind=grad_kind,
    impl=impl,
    seed=100 + sorted(OPTIONS).index(option_name) + 10 * complex_leaf,
    grads_from_torch_params=True,
  )


@functools.cache
def _injected_and_update(weight_decay: float, jit: bool) -> tuple[Any, Any]:
  tx = optax.inject_hyperparams(adadelta_optax.adadelta)(
    learning_rate=1.0, rho=0.9, epsilon=1e-6, weight_decay=weight_decay
  )
  return tx, jax.jit(tx.update) if jit else tx.update


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_learning_rate_changed_mid_run(weight_decay, foreach, jit):
  """torch ``param_groups[0]['lr']`` edits equal ``state.hyperparams['learning_rate']`` edits.

  The JAX side is ``optax.inject_hyperparams(adadelta)`` with torch's defaults; both learning
  rates change before steps 20 and 40 of a coupled float64 regression run.
  """
  rng = np.random.default_rng(7)
  init = _init_params(rng, np.float64, complex_leaf=False)
  grad_fn = _regression_grads(rng)
  treedef = jax.tree.structure(init)
  lr_changes = {20: 0.3, 40: 2.0}

  tx, update = _injected_and_update(weight_decay, jit)
  params = jax.tree.map(jnp.asarray, init)
  state = tx.init(params)

  t_params = _torch_params(init)
  opt = torch.optim.Adadelta(t_params, weight_decay=weight_decay, foreach=foreach)

  scales = _param_scales(init)
  for step in range(1, STEPS + 1):
    if step in lr_changes:
      opt.param_groups[0]["lr"] = lr_changes[step]
      state.hyperparams["learning_rate"] = jnp.asarray(lr_changes[step], jnp.float64)

    g_jax = grad_fn(_numpy_tree(treedef, jax.tree.leaves(params)))
    g_torch = grad_fn(_numpy_tree(treedef, [p.detach().numpy() for p in t_params]))
    for p, g in zip(t_params, jax.tree.leaves(g_torch), strict=True):
      p.grad = torch.from_numpy(np.array(g))
    opt.step()
    updates, state = update(jax.tree.map(jnp.asarray, g_jax), state, params)
    params = optax.apply_updates(params, updates)

    _check(step, params, state.inner_state, t_params, opt, RTOL[np.float64], scales)

  assert float(state.hyperparams["learning_rate"]) == 2.0
  assert opt.param_groups[0]["lr"] == 2.0
