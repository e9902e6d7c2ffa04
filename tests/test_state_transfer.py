"""Bad optimizer state from torch and Keras 3: each bad entry is an error that names it, and
nothing is partially applied. Also the Keras 3 training wrapper's own rules.

(tf.keras 1.x/2.x weight lists: tests/test_weights.py; real-framework round trips:
tests/test_interop_*.py.)
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax

from helpers import TORCH_PARAMS as PARAMS
from helpers import torch_state_dict as _torch_dict


def test_torch_good_dict():
  tx, state = adadelta_optax.interop.from_torch_state_dict(_torch_dict(), PARAMS)
  assert int(state.count) == 3
  np.testing.assert_array_equal(state.accum_var["w"], 0.4)
  assert tx.config.rho == 0.9 and tx.config.epsilon == 1e-6


def _edit(path, value):
  sd = _torch_dict()
  target = sd
  for key in path[:-1]:
    target = target[key]
  if value is KeyError:
    del target[path[-1]]
  else:
    target[path[-1]] = value
  return sd


TORCH_BAD = [
  (
    _edit(("state", 1, "square_avg"), np.zeros((2, 3))),
    ValueError,
    r"state\[1\]\['square_avg'\].*shape",
  ),
  (
    _edit(("state", 0, "acc_delta"), -np.ones(2)),
    ValueError,
    r"state\[0\]\['acc_delta'\].*negative",
  ),
  (_edit(("state", 0, "acc_delta"), np.array([np.nan, 0])), ValueError, "non-finite"),
  (_edit(("state", 0, "square_avg"), np.ones(2, np.int64)), ValueError, "floating"),
  (_edit(("state", 1, "step"), 4.0), ValueError, r"state\[1\]\['step'\] = 4 differs"),
  (_edit(("state", 0, "step"), 2.5), ValueError, "whole number"),
  (_edit(("state", 1), KeyError), ValueError, r"no entry for parameter\(s\) \[1\]"),
  (_edit(("state", 5), _torch_dict()["state"][0]), ValueError, r"entries \[5\]"),
  (_edit(("state", 0, "exp_avg"), np.ones(2)), ValueError, r"state\[0\] must have keys"),
  (_edit(("param_groups", 0, "betas"), (0.9, 0.99)), TypeError, r"unknown key\(s\) \['betas'\]"),
  (_edit(("param_groups", 0, "lr"), KeyError), TypeError, "misses key 'lr'"),
  (
    _edit(("param_groups", 0, "params"), [0]),
    ValueError,
    r"1 parameters \(in param_groups' 'params'\), params has 2",
  ),
  (_edit(("param_groups", 0, "params"), [0, 2]), ValueError, "number the parameters"),
  (_edit(("param_groups", 0, "eps"), 0.0), ValueError, "epsilon must be"),
  (_edit(("param_groups",), []), TypeError, "non-empty list"),
  (
    _edit(("param_groups", 0, "maximize"), "False"),
    TypeError,
    r"param_groups\[0\]\['maximize'\] must be a bool, got 'False'",
  ),
  (_edit(("param_groups", 0, "param_names"), ["w"]), TypeError, "one per entry of 'params'"),
  (_edit(("param_groups", 0, "lr"), True), TypeError, r"\['lr'\] must be a real number, got True"),
  (_edit(("param_groups", 0, "lr"), 10**400), TypeError, r"\['lr'\] must be a real number"),
  (_edit(("param_groups", 0, "lr"), "0.5"), TypeError, r"\['lr'\] must be a real number"),
  (_edit(("param_groups", 0, "params"), [0.0, 1]), TypeError, r"\['params'\]\[0\] must be an int"),
  (_edit(("param_groups", 0, "params"), ["0", 1]), TypeError, r"\['params'\]\[0\] must be an int"),
  (_edit(("state", 0.7), {}), TypeError, r"key 0.7"),
  (_edit(("state", "0"), _torch_dict()["state"][0]), TypeError, r"key '0'"),
  (_edit(("state", 0, "step"), float("inf")), ValueError, r"state\[0\]\['step'\] must be finite"),
  (_edit(("state", 0, "step"), float("nan")), ValueError, r"state\[0\]\['step'\] must be finite"),
  ({"state": {}}, TypeError, "exactly the keys"),
]


@pytest.mark.parametrize(("state_dict", "error", "match"), TORCH_BAD)
def test_torch_bad_entry(state_dict, error, match):
  with pytest.raises(error, match=match):
    adadelta_optax.interop.from_torch_state_dict(state_dict, PARAMS)


def test_torch_groups():
  sd = _torch_dict()
  sd["param_groups"] = [
    {**sd["param_groups"][0], "params": [0], "weight_decay": 0.0},
    {**sd["param_groups"][0], "params": [1], "weight_decay": 0.01},
  ]
  tx, _ = adadelta_optax.interop.from_torch_state_dict(sd, PARAMS)
  assert tx.config.weight_decay_mask == {"b": False, "w": True}
  sd["param_groups"][0]["weight_decay"] = 0.02
  with pytest.raises(ValueError, match=r"weight_decay values \[0.01, 0.02\]"):
    adadelta_optax.interop.from_torch_state_dict(sd, PARAMS)
  sd["param_groups"][0]["weight_decay"] = 0.0
  sd["param_groups"][1]["rho"] = 0.5
  with pytest.raises(ValueError, match=r"param_groups\[1\]\['rho'\] = 0.5 differs"):
    adadelta_optax.interop.from_torch_state_dict(sd, PARAMS)


def test_torch_scheduler_key_warns_and_empty_state_is_fresh():
  sd = _torch_dict(initial_lr=1.0)
  sd["state"] = {}
  with pytest.warns(UserWarning, match="initial_lr"):
    _, state = adadelta_optax.interop.from_torch_state_dict(sd, PARAMS)
  assert int(state.count) == 0


def test_empty_torch_state_into_a_stepped_state_is_fresh():
  """torch after loading an empty state: no count *and* no accumulators (zeros), whatever the
  state held before (it once kept the old accumulators with count 0)."""
  tx, stepped = adadelta_optax.interop.from_torch_state_dict(_torch_dict(), PARAMS)
  fresh = adadelta_optax.interop.load_torch_state(stepped, {})
  assert int(fresh.count) == 0
  for leaf in jax.tree.leaves((fresh.accum_grad, fresh.accum_var)):
    np.testing.assert_array_equal(leaf, 0)
  np.testing.assert_array_equal(stepped.accum_var["w"], 0.4)  # the input is unchanged


def test_torch_order_and_axes_errors():
  sd = _torch_dict()
  for order, match in (
    ([0], "order has 1"),
    ([0, 0], "exactly once"),
    (["['x']", 0], "not a leaf"),
  ):
    with pytest.raises(ValueError, match=match):
      adadelta_optax.interop.from_torch_state_dict(sd, PARAMS, order=order)
  with pytest.raises(ValueError, match=r"axes\[1\]"):
    adadelta_optax.interop.from_torch_state_dict(sd, PARAMS, axes={1: (0, 0)})


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    (dict(clipnorm=1.0), "clipnorm"),
    (dict(decay=0.1), "decay"),
    (dict(weight_decay=0.1, decoupled_weight_decay=True), "decoupled"),
    (dict(learning_rate=optax.constant_schedule(1.0)), "learning_rate must be a number"),
    (dict(state_dtype="float32"), "state_dtype"),
  ],
)
def test_to_torch_refuses(kwargs, match):
  tx = adadelta_optax.adadelta(**kwargs)
  with pytest.raises(ValueError, match=match):
    adadelta_optax.interop.to_torch_state_dict(tx, tx.init(PARAMS))


def test_state_is_not_partially_applied():
  """A bad last entry leaves the original state object untouched (no in-place writes)."""
  tx = adadelta_optax.presets.keras3(learning_rate=0.5)
  state = tx.init(PARAMS)
  before = copy.deepcopy(jax.tree.map(np.asarray, state))
  good = adadelta_optax.interop.keras3_variables(tx, state)
  good[-1] = -np.ones((3, 2))
  with pytest.raises(ValueError, match=r"variables\[5\] \(accumulated_delta_var of leaf \['w'\]\)"):
    adadelta_optax.interop.set_keras3_variables(tx, state, good)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state), before)


def _keras_names(tx, values, prefix="adadelta/"):
  names = ["iteration", "learning_rate"]
  for leaf in ("b", "w"):
    names += [f"dense_{leaf}_accumulated_grad", f"dense_{leaf}_accumulated_delta_var"]
  return [(prefix + n, v) for n, v in zip(names, values, strict=True)]


def test_keras3_variables_layout_and_names():
  tx = adadelta_optax.presets.keras3(learning_rate=0.5)
  params = jax.tree.map(jnp.asarray, PARAMS)
  updates, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  values = adadelta_optax.interop.keras3_variables(tx, state)
  assert [v.shape for v in values] == [(), (), (2,), (2,), (3, 2), (3, 2)]
  assert values[0].dtype == np.int32 and int(values[0]) == 1 and float(values[1]) == 0.5
  restored = adadelta_optax.interop.set_keras3_variables(
    tx, tx.init(params), _keras_names(tx, values)
  )
  jax.tree.map(np.testing.assert_array_equal, restored, state)

  named = _keras_names(tx, values)
  named[2], named[3] = named[3], named[2]  # accumulated_grad and delta_var swapped
  with pytest.raises(ValueError, match=r"variables\[2\].*ending in '_accumulated_grad'"):
    adadelta_optax.interop.set_keras3_variables(tx, state, named)
  with pytest.raises(ValueError, match=r"variables has 5 entries; .* 6 Keras 3 variables"):
    adadelta_optax.interop.set_keras3_variables(tx, state, values[:-1])
  values[1] = np.float32(0.25)
  with pytest.raises(ValueError, match=r"variables\[1\] \(learning_rate\).*0.5"):
    adadelta_optax.interop.set_keras3_variables(tx, state, values)


@pytest.mark.parametrize("floatx", ["float32", "float64"])
@pytest.mark.parametrize("learning_rate", [0.1, 0.3, 1 / 3, 0.001, 0.5])
def test_keras3_variables_round_trip_our_own_export(learning_rate, floatx):
  """keras3_variables then set_keras3_variables always succeeds: the exported learning rate is
  rounded to floatx (0.1 once failed as float32(0.1) != 0.1), and compared in that dtype."""
  tx = adadelta_optax.presets.keras3(learning_rate=learning_rate)
  params = jax.tree.map(jnp.asarray, PARAMS)
  _, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  values = adadelta_optax.interop.keras3_variables(tx, state, floatx=floatx)
  assert values[1].dtype == np.dtype(floatx)
  restored = adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), values)
  jax.tree.map(np.testing.assert_array_equal, restored, state)


@pytest.mark.parametrize(
  ("bad", "error"), [(np.array("0.5"), TypeError), (np.array(True), ValueError), ("0.5", TypeError)]
)
def test_keras3_learning_rate_variable_must_be_a_float(bad, error):
  """A learning-rate variable holding the string '0.5' (or a bool) is refused, naming it."""
  tx = adadelta_optax.presets.keras3(learning_rate=0.5)
  params = jax.tree.map(jnp.asarray, PARAMS)
  values = adadelta_optax.interop.keras3_variables(tx, tx.init(params))
  values[1] = bad
  with pytest.raises(error, match=r"variables\[1\] \(learning_rate\)"):
    adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), values)


def test_keras3_training_state_layout():
  tx = adadelta_optax.with_keras_training(
    adadelta_optax.presets.keras3(learning_rate=0.5), gradient_accumulation_steps=2, use_ema=True
  )
  params = jax.tree.map(jnp.asarray, PARAMS)
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  values = adadelta_optax.interop.keras3_variables(tx, state)
  # iteration, learning_rate, 2 averages, 2 gradient accumulators, 2 x 2 accumulators
  assert len(values) == 10 and int(values[0]) == 3
  np.testing.assert_array_equal(values[4], 1.0)  # the third gradient, waiting
  restored = adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), values)
  assert int(restored.inner.count) == 1 and int(restored.iteration) == 3
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  with pytest.raises(ValueError, match="state_dtype"):
    adadelta_optax.interop.keras3_variables(adadelta_optax.adadelta(state_dtype="float32"), state)


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    (dict(gradient_accumulation_steps=1), ValueError, "integer >= 2"),
    (dict(gradient_accumulation_steps=2.0), ValueError, "integer >= 2"),
    (dict(ema_overwrite_frequency=2), ValueError, "needs use_ema=True"),
    (dict(use_ema=1), TypeError, "use_ema must be a bool"),
    (dict(use_ema=True, ema_momentum=-0.1), ValueError, "ema_momentum"),
    (dict(loss_scale_factor=0.0), ValueError, "loss_scale_factor"),
  ],
)
def test_keras_training_bad_options(kwargs, error, match):
  with pytest.raises(error, match=match):
    adadelta_optax.with_keras_training(adadelta_optax.adadelta(), **kwargs)


def test_keras_training_rules():
  base = adadelta_optax.adadelta()
  assert adadelta_optax.with_keras_training(base) is base
  tx = adadelta_optax.with_keras_training(base, use_ema=True)
  with pytest.raises(TypeError, match="already has Keras training options"):
    adadelta_optax.with_keras_training(tx, loss_scale_factor=2.0)
  with pytest.raises(ValueError, match="use_ema needs the params"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
  with pytest.raises(TypeError, match="KerasTrainingState"):
    tx.update(jnp.ones(2), base.init(jnp.ones(2)), jnp.ones(2))
  # Loss scaling divides the gradient first: with a scale of 4 the step equals that of g / 4.
  scaled = adadelta_optax.with_keras_training(base, loss_scale_factor=4.0)
  a, _ = scaled.update(jnp.full(2, 2.0), scaled.init(jnp.ones(2)))
  b, _ = base.update(jnp.full(2, 0.5), base.init(jnp.ones(2)))
  np.testing.assert_array_equal(a, b)
