"""Resuming ``optax.adadelta`` training with :func:`load_optax_state`."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import adadelta_optax

from migration import assert_parity, data, init_params, run_jax

K_STEPS, M_STEPS = 7, 8


@pytest.mark.parametrize("schedule", [False, True])
def test_resume_optax(schedule):
  x, y = data()
  lr = optax.exponential_decay(1.0, 3, 0.7) if schedule else 0.5
  theirs = optax.adadelta(lr, rho=0.8, eps=1e-5, weight_decay=0.01)
  params, optax_state = run_jax(theirs, init_params(), theirs.init(init_params()), K_STEPS, x, y)

  tx = adadelta_optax.presets.optax(learning_rate=lr, rho=0.8, epsilon=1e-5, weight_decay=0.01)
  state = adadelta_optax.interop.load_optax_state(tx.init(params), optax_state, count=K_STEPS)
  assert int(state.count) == K_STEPS
  expected, optax_state = run_jax(theirs, params, optax_state, M_STEPS, x, y)
  params, state = run_jax(tx, params, state, M_STEPS, x, y)
  key = ("optax", "schedule" if schedule else "lr 0.5")
  assert_parity(params, expected, "params", key)
  (inner,) = [s for s in optax_state if isinstance(s, optax.ScaleByAdaDeltaState)]
  assert_parity(state.accum_grad + state.accum_var, inner.e_g + inner.e_x, "accumulators", key)


def test_bad_optax_state():
  tx = adadelta_optax.presets.optax()
  state = tx.init(init_params())
  with pytest.raises(ValueError, match="one ScaleByAdaDeltaState, found 0"):
    adadelta_optax.interop.load_optax_state(state, optax.sgd(1.0).init(init_params()))
  theirs = optax.adadelta(optax.constant_schedule(1.0))
  with pytest.raises(ValueError, match="count=3 differs"):
    adadelta_optax.interop.load_optax_state(state, theirs.init(init_params()), count=3)
  wrong = optax.adadelta(1.0).init([np.zeros(2)])
  with pytest.raises(ValueError, match="optax_state's e_g tree structure differs"):
    adadelta_optax.interop.load_optax_state(state, wrong)


@pytest.mark.parametrize(
  "theirs_params",
  [
    {"x": np.zeros(2), "y": np.zeros(3)},  # other keys, same leaf count and shapes
    [np.zeros(2), np.zeros(3)],  # another container
    {"a": np.zeros(2), "b": np.zeros((3, 1))},  # another shape
  ],
  ids=["keys", "container", "shape"],
)
def test_optax_state_of_another_tree_is_refused(theirs_params):
  """A state for {x, y} does not load into {a, b} (it once did, leaf by leaf), nor a list into
  a dict; the error names the tree, and the input state is unchanged."""
  tx = adadelta_optax.presets.optax()
  state = tx.init({"a": np.zeros(2), "b": np.zeros(3)})
  theirs = optax.adadelta(1.0).init(jax.tree.map(np.asarray, theirs_params))
  with pytest.raises(ValueError, match="optax_state's e_g .*differs|optax_state's e_g leaf"):
    adadelta_optax.interop.load_optax_state(state, theirs)
  assert int(state.count) == 0 and float(np.sum(state.accum_grad["a"])) == 0.0
