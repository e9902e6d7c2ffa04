"""Shared pieces of the migration tests: a small MLP, its data, and a parity check.

Every framework trains the same 3-4-2 tanh MLP on the same data (``x @ W1 + b1``, tanh,
``@ W2 + b2``, mean squared error); each computes its gradients itself, from its own params.
Params are the list ``[W1, b1, W2, b2]`` (kernels as ``(in, out)``, Keras' layout).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers import LEAF_MAX, assert_trees_close

RTOL = {np.dtype("float64"): 1e-12, np.dtype("float32"): 1e-6}

#: Keras learning-rate schedules (class name, kwargs) checked against tf.keras and Keras 3.
SCHEDULE_CASES = [
  ("ExponentialDecay", dict(initial_learning_rate=0.7, decay_steps=3, decay_rate=0.83)),
  (
    "ExponentialDecay",
    dict(initial_learning_rate=0.7, decay_steps=3, decay_rate=0.8, staircase=True),
  ),
  ("InverseTimeDecay", dict(initial_learning_rate=0.7, decay_steps=3, decay_rate=0.37)),
  (
    "InverseTimeDecay",
    dict(initial_learning_rate=0.7, decay_steps=3, decay_rate=0.3, staircase=True),
  ),
  ("PiecewiseConstantDecay", dict(boundaries=[3, 7, 20], values=[0.9, 0.5, 0.1, 0.01])),
  (
    "PolynomialDecay",
    dict(initial_learning_rate=0.7, decay_steps=7, end_learning_rate=0.01, power=1.7),
  ),
  ("PolynomialDecay", dict(initial_learning_rate=0.7, decay_steps=7, power=0.5, cycle=True)),
  ("CosineDecay", dict(initial_learning_rate=0.7, decay_steps=9, alpha=0.1)),
  (
    "CosineDecay",
    dict(initial_learning_rate=0.1, decay_steps=9, alpha=0.1, warmup_target=0.9, warmup_steps=4),
  ),
  (
    "CosineDecayRestarts",
    dict(initial_learning_rate=0.7, first_decay_steps=3, m_mul=0.7, alpha=0.05),
  ),
  ("CosineDecayRestarts", dict(initial_learning_rate=0.7, first_decay_steps=3, t_mul=1.0)),
]


def data(dtype: Any = np.float64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return rng.normal(size=(16, 3)).astype(dtype), rng.normal(size=(16, 2)).astype(dtype)


def init_params(dtype: Any = np.float64, seed: int = 1) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  shapes = [(3, 4), (4,), (4, 2), (2,)]
  return [(rng.normal(size=s) * 0.8).astype(dtype) for s in shapes]


def jax_loss(params: list[jax.Array], x: Any, y: Any) -> jax.Array:
  w1, b1, w2, b2 = params
  return jnp.mean((jnp.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)


def run_jax(
  tx: optax.GradientTransformation,
  params: Any,
  state: Any,
  steps: int,
  x: Any,
  y: Any,
  jit: bool = False,
) -> tuple[list[jax.Array], Any]:
  """``steps`` updates of the MLP with ``tx`` from ``(params, state)``."""
  params = [jnp.asarray(p) for p in params]
  grad = jax.jit(jax.grad(jax_loss))
  update = jax.jit(tx.update) if jit else tx.update
  for _ in range(steps):
    updates, state = update(grad(params, x, y), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def assert_parity(
  actual: Any, expected: Any, what: str, key: tuple[str, str] | None = None
) -> float:
  """Two lists of leaves agree to the migration tolerance; returns the largest relative difference.

  :func:`helpers.assert_trees_close` with ``rtol`` from :data:`RTOL` by the expected leaf's dtype
  and the leaf-max floor: elementwise ``|a - e| <= rtol * (|e| + max|e|)``. The returned number,
  ``max |a - e| / max |e|`` over the leaves, is printed under ``key`` (seen with ``pytest -s``).
  """
  worst = assert_trees_close(list(actual), list(expected), rtol=RTOL, floor=LEAF_MAX, what=what)
  if key is not None:
    print(f"PARITY {key[0]} {key[1]} {what} max_rel_diff={worst:.3g}")
  return worst
