"""Shared test helpers: random pytrees, trajectories and tolerant comparisons."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import reference


def random_tree(
  rng: np.random.Generator, dtype: Any = np.float64, complex_leaf: bool = False
) -> Any:
  """A nested dict/list pytree with a scalar, an empty leaf and mixed shapes."""

  def leaf(shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape).astype(dtype)

  tree = {
    "dense": {"kernel": leaf((4, 3)), "bias": leaf((3,))},
    "layers": [leaf(()), leaf((2, 1, 2)), {"empty": leaf((0,)), "w": leaf((5,))}],
    "scalar": leaf(()),
  }
  if complex_leaf:
    cdtype = np.complex128 if np.dtype(dtype) == np.float64 else np.complex64
    tree["phase"] = (rng.normal(size=(3,)) + 1j * rng.normal(size=(3,))).astype(cdtype)
  return tree


def random_grads(rng: np.random.Generator, tree: Any, steps: int, scale: float = 1.0) -> list[Any]:
  """``steps`` gradient trees shaped like ``tree``, with magnitudes varying over decades."""
  out = []
  for t in range(steps):
    magnitude = scale * 10.0 ** rng.uniform(-2, 1)

    def draw(x: np.ndarray, magnitude: float = magnitude) -> np.ndarray:
      g = rng.normal(size=x.shape) * magnitude
      if np.iscomplexobj(x):
        g = g + 1j * rng.normal(size=x.shape) * magnitude
      return g.astype(x.dtype)

    out.append(jax.tree.map(draw, tree))
    del t
  return out


def run_jax(
  tx: optax.GradientTransformation, params: Any, grads: list[Any], *, jit: bool
) -> tuple[Any, Any]:
  """Params and state after applying ``grads`` one by one with ``tx``."""
  params = jax.tree.map(jnp.asarray, params)
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in grads:
    updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def run_reference(params: Any, grads: list[Any], options: reference.Options) -> reference.Reference:
  return reference.run(jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads], options)


def assert_leaves_close(actual: list[Any], expected: list[Any], rtol: float, what: str) -> None:
  """Elementwise ``|a - e| <= rtol * max(|e|, max|e| of the leaf * rtol-scaled floor)``.

  Relative per element, with an absolute floor of ``rtol * max|expected|`` of the leaf, so that
  entries that pass near zero do not make the relative error meaningless.
  """
  assert len(actual) == len(expected), what
  for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
    a = np.asarray(a).astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    e = np.asarray(e)
    assert a.shape == e.shape, f"{what}[{i}] shape {a.shape} != {e.shape}"
    if e.size == 0:
      continue
    floor = rtol * float(np.max(np.abs(e)))
    np.testing.assert_allclose(a, e, rtol=rtol, atol=floor, err_msg=f"{what}[{i}]")


def assert_matches_reference(
  params: Any, state: Any, ref: reference.Reference, rtol: float
) -> None:
  assert_leaves_close(jax.tree.leaves(params), ref.params, rtol, "params")
  assert_leaves_close(jax.tree.leaves(state.accum_grad), ref.accum_grad, rtol, "accum_grad")
  assert_leaves_close(jax.tree.leaves(state.accum_var), ref.accum_var, rtol, "accum_var")
  assert int(state.count) == ref.count


# --- The options of adadelta() exercised by the trajectory tests ------------------------


def _exp_schedule(count):
  return 0.8 * 0.97**count


def _numpy_exp_schedule(count):
  return 0.8 * 0.97**count


def _mask_fn(params):
  return jax.tree.map(lambda x: jnp.ndim(x) > 1, params)


# (adadelta kwargs, reference overrides). Masks are given to the reference as one bool per leaf.
OPTIONS = {
  "defaults": ({}, {}),
  "lr_rho_eps": (dict(learning_rate=0.5, rho=0.9, epsilon=1e-6), {}),
  "lr_array": (dict(learning_rate=np.float64(0.3)), dict(learning_rate=0.3)),
  "schedule": (dict(learning_rate=_exp_schedule), dict(learning_rate=_numpy_exp_schedule)),
  "decay": (dict(decay=0.05), {}),
  "schedule_and_decay": (
    dict(learning_rate=_exp_schedule, decay=0.02),
    dict(learning_rate=_numpy_exp_schedule),
  ),
  "clipvalue": (dict(clipvalue=0.5), {}),
  "clipnorm": (dict(clipnorm=0.7), {}),
  "global_clipnorm": (dict(global_clipnorm=1.5), {}),
  "clipvalue_clipnorm": (dict(clipvalue=0.4, clipnorm=0.9), {}),
  "clipvalue_global": (dict(clipvalue=0.4, global_clipnorm=1.1), {}),
  "coupled_wd": (dict(weight_decay=0.01), {}),
  "decoupled_wd": (dict(weight_decay=0.02, decoupled_weight_decay=True), {}),
  "maximize": (dict(maximize=True), {}),
  "maximize_coupled_wd": (dict(maximize=True, weight_decay=0.05), {}),
  "maximize_decoupled_wd": (
    dict(maximize=True, weight_decay=0.05, decoupled_weight_decay=True),
    {},
  ),
  "everything": (
    dict(
      learning_rate=_exp_schedule,
      rho=0.9,
      epsilon=1e-5,
      decay=0.01,
      clipvalue=2.0,
      global_clipnorm=3.0,
      weight_decay=0.03,
      decoupled_weight_decay=True,
      maximize=True,
    ),
    dict(learning_rate=_numpy_exp_schedule),
  ),
}


def _options(kwargs, overrides):
  fields = {k: v for k, v in kwargs.items() if k not in ("weight_decay_mask", "state_dtype")}
  fields.update(overrides)
  return reference.Options(**fields)


# --- A small torch.optim.Adadelta state dict (the torch state tests and their property test) ---

TORCH_PARAMS = {"b": np.zeros(2), "w": np.zeros((3, 2))}  # leaves: b, w


def torch_state_dict(step: float = 3.0, **group: Any) -> dict[str, Any]:
  """``state_dict()`` of a torch Adadelta that stepped ``step`` times on TORCH_PARAMS."""
  state = {
    0: {"step": step, "square_avg": np.full(2, 0.1), "acc_delta": np.full(2, 0.2)},
    1: {"step": step, "square_avg": np.full((3, 2), 0.3), "acc_delta": np.full((3, 2), 0.4)},
  }
  groups = [
    dict(
      lr=1.0,
      rho=0.9,
      eps=1e-6,
      weight_decay=0.0,
      foreach=None,
      capturable=False,
      maximize=False,
      differentiable=False,
      params=[0, 1],
      **group,
    )
  ]
  return {"state": state, "param_groups": groups}
