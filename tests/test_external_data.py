"""Random bad entries in every public entry point that takes external data (hypothesis).

For each entry point (Keras configs, Keras 3 variables, torch state dicts, optax states,
``set_weights``) one entry of a valid input is replaced by a value drawn from types as well as
values: strings, bytes, bools (Python and NumPy), NumPy scalars, huge ints, NaN and infinities,
negative numbers, nested containers, arrays of the wrong shape or dtype. The call must either
raise a ``TypeError`` or ``ValueError`` whose message names the entry, or succeed with exactly
the value a valid entry means; and the input is never changed.
"""

from __future__ import annotations

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adadelta_optax

from helpers import TORCH_PARAMS as PARAMS
from helpers import torch_state_dict as _torch_dict

EXAMPLES = 150  # per entry point and run (docs/howto/behaviour.md: "Reliability")
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
  st.floats(allow_nan=True, allow_infinity=True),
  st.floats(-2.0, 2.0),
  st.integers(-(10**400), 10**400),
  st.integers(-3, 3),
  st.booleans(),
  st.just(np.bool_(True)),
  st.text(max_size=4),
  st.binary(max_size=4),
  st.none(),
  st.sampled_from([np.float32(0.5), np.float16(2.0), np.int8(1), np.uint64(2**63), np.float64(-1)]),
)
bad_values = st.one_of(
  scalars,
  st.lists(scalars, max_size=3),
  st.dictionaries(st.text(max_size=2), scalars, max_size=2),
  st.tuples(scalars, scalars),
  st.sampled_from(
    [
      np.zeros((2, 2)),
      np.ones(3, np.int32),
      np.array(["a", "b"]),
      np.zeros(2, dtype=[("a", np.float32)]),
      np.array(0.5, np.complex64),
      np.array(np.nan),
      np.full(2, -1.0),
    ]
  ),
)


def _equal(a, b):
  """Deep equality of nested dicts/lists/arrays (NaN equal to NaN)."""
  if isinstance(a, dict):
    return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
  if isinstance(a, (list, tuple)):
    return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
  if isinstance(a, (np.ndarray, jax.Array)) or isinstance(b, (np.ndarray, jax.Array)):
    a, b = np.asarray(a), np.asarray(b)
    return (
      a.shape == b.shape
      and a.dtype == b.dtype
      and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    )
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
    return math.isnan(b)
  return type(a) is type(b) and a == b


def _as_real(value):
  """The real number a valid entry means, or None."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
    value, (int, float, np.integer, np.floating)
  ):
    return None
  try:
    number = float(value)
  except OverflowError:
    return None
  return number if math.isfinite(number) else None


def _falsy(value):
  try:
    return not value
  except ValueError:  # an array of several elements
    return False


def _raises_naming(call, *names):
  """Runs ``call``; ``None`` if it succeeded, else asserts a TypeError/ValueError naming one of
  ``names``."""
  try:
    return call(), None
  except (TypeError, ValueError) as error:
    message = str(error)
    assert any(name in message for name in names), (names, message)
    return None, error


# --- Keras configs -------------------------------------------------------------------------------

KERAS_BASE = {
  2: {"name": "Adadelta", "learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-6, "decay": 0.0},
  3: {"name": "adadelta", "learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-6, "use_ema": False},
}
KERAS_KEYS = {
  "learning_rate": "learning_rate",
  "rho": "rho",
  "epsilon": "epsilon",
  "clipnorm": "clipnorm",
  "clipvalue": "clipvalue",
  "global_clipnorm": "global_clipnorm",
}


@pytest.mark.filterwarnings("ignore:Keras config key 'epsilon'")
@SETTINGS
@given(st.sampled_from([2, 3]), st.sampled_from(sorted(KERAS_KEYS)), bad_values)
def test_keras_config_entries(version, key, value):
  config = {**KERAS_BASE[version], key: value}
  before = copy.deepcopy(config)
  tx, error = _raises_naming(lambda: adadelta_optax.interop.from_keras_config(config, version), key)
  assert _equal(config, before)
  if error is None:
    number = _as_real(value)
    assert number is not None or value is None or _falsy(value), (key, value)
    got = tx.hyperparams[KERAS_KEYS[key]]
    if version == 2 and key == "epsilon" and _falsy(value):
      assert got == 1e-7  # tf.keras 2.x: `epsilon or backend.epsilon()`
      return
    if value is None or (key.startswith("clip") or key == "global_clipnorm") and number <= 0:
      return  # Keras: None, or a clip value <= 0 (Keras 3), means no clipping
    # tf.keras 2.x keeps learning_rate and rho in float32; Keras 3 the learning rate in floatx.
    with np.errstate(over="ignore"):
      assert got in (number, float(np.float32(number))), (key, value, got)


# --- torch state dicts ---------------------------------------------------------------------------

TORCH_ENTRIES = [
  ("param_groups", 0, "lr"),
  ("param_groups", 0, "rho"),
  ("param_groups", 0, "eps"),
  ("param_groups", 0, "weight_decay"),
  ("param_groups", 0, "maximize"),
  ("param_groups", 0, "params"),
  ("state", 0, "step"),
  ("state", 1, "square_avg"),
  ("state", 0, "acc_delta"),
]


@SETTINGS
@given(st.sampled_from(TORCH_ENTRIES), bad_values)
def test_torch_state_dict_entries(path, value):
  state_dict = _torch_dict()
  state_dict[path[0]][path[1]][path[2]] = value
  before = copy.deepcopy(state_dict)
  names = (repr(path[2]), f"[{path[1]}]", "epsilon", "rho", "learning_rate", "weight_decay")
  result, error = _raises_naming(
    lambda: adadelta_optax.interop.from_torch_state_dict(state_dict, PARAMS), *names
  )
  assert _equal(state_dict, before)
  if error is None:
    tx, state = result
    key = path[2]
    if key in ("lr", "rho", "eps", "weight_decay", "step"):
      number = _as_real(value)
      assert number is not None, (key, value)
      field = {"lr": "learning_rate", "eps": "epsilon"}.get(key, key)
      got = int(state.count) if key == "step" else tx.hyperparams[field]
      assert got == number, (key, value, got)
    elif key == "maximize":
      assert isinstance(value, (bool, np.bool_)) and tx.hyperparams["maximize"] == bool(value)
    elif key in ("square_avg", "acc_delta"):
      slot = "accum_grad" if key == "square_avg" else "accum_var"
      leaf = getattr(state, slot)["w" if path[1] == 1 else "b"]
      np.testing.assert_array_equal(leaf, np.asarray(value, np.float64))
    else:
      assert list(value) == [0, 1], value


# --- optax states, set_weights, Keras 3 variables -----------------------------------------------


def _stepped():
  tx = adadelta_optax.adadelta(learning_rate=0.5)
  params = {"a": jnp.ones(2), "b": jnp.ones((3,))}
  _, state = tx.update(params, tx.init(params), params)
  return tx, params, state


@SETTINGS
@given(st.integers(0, 4), bad_values)
def test_set_weights_entries(index, value):
  tx, _, state = _stepped()
  weights = tx.get_weights(state)
  before = [np.copy(w) for w in weights]
  weights[index] = value
  new, error = _raises_naming(lambda: tx.set_weights(state, weights), f"weights[{index}]")
  for old, now in zip(before, tx.get_weights(state), strict=True):
    np.testing.assert_array_equal(old, now)  # the input state is unchanged
  if error is None:
    np.testing.assert_array_equal(tx.get_weights(new)[index], np.asarray(value))


@SETTINGS
@given(st.integers(0, 5), bad_values)
def test_keras3_variable_entries(index, value):
  tx = adadelta_optax.presets.keras3(learning_rate=0.5)
  params = {"a": jnp.ones(2), "b": jnp.ones((3,))}
  _, state = tx.update(params, tx.init(params), params)
  values = adadelta_optax.interop.keras3_variables(tx, state)
  values[index] = value
  new, error = _raises_naming(
    lambda: adadelta_optax.interop.set_keras3_variables(tx, state, values), f"variables[{index}]"
  )
  if error is None:
    back = adadelta_optax.interop.keras3_variables(tx, new)
    np.testing.assert_array_equal(back[index], np.asarray(value).astype(back[index].dtype))


@SETTINGS
@given(st.sampled_from(["e_g", "e_x"]), st.sampled_from(["a", "b"]), bad_values)
def test_optax_state_entries(slot, leaf, value):
  tx, params, state = _stepped()
  theirs = optax.adadelta(1.0)
  optax_state = list(theirs.init(params))
  (k,) = [i for i, s in enumerate(optax_state) if isinstance(s, optax.ScaleByAdaDeltaState)]
  entries = dict(getattr(optax_state[k], slot))
  entries[leaf] = value
  optax_state[k] = optax_state[k]._replace(**{slot: entries})
  new, error = _raises_naming(
    lambda: adadelta_optax.interop.load_optax_state(state, tuple(optax_state)),
    slot,
    f"['{leaf}']",
    "weights[",
  )
  np.testing.assert_array_equal(state.accum_grad["a"], tx.get_weights(state)[1])
  if error is None:
    target = new.accum_grad if slot == "e_g" else new.accum_var
    np.testing.assert_array_equal(target[leaf], np.asarray(value, np.float64))


@pytest.mark.filterwarnings("ignore:Keras config key 'epsilon'")
@pytest.mark.parametrize("value", [np.float64(1e300), [1e300, 0.0, 0.0]])
def test_examples_that_once_passed(value):
  """Pinned: a float32 state given 1e300 (it once became inf)."""
  tx = adadelta_optax.adadelta()
  state = tx.init({"a": jnp.ones(3, jnp.float32)})
  with pytest.raises(ValueError, match=r"weights\[1\].*do not fit"):
    tx.set_weights(state, [np.int64(0), np.broadcast_to(np.asarray(value), (3,)), np.zeros(3)])


# --- the flat state ------------------------------------------------------------------------------

FLAT_ENTRIES = [
  ("count",),
  ("accum_grad",),
  ("accum_var",),
  ("spec",),
  ("accum_grad", "float32"),
  ("accum_var", "float64"),
]
# Not under jit: jax.jit converts its arguments before our code runs, and its own errors name the
# path of what it cannot convert (``state.count``); test_flat_state.py checks jit with bad trees.
FLAT_CALLS = ["update", "apply_gradients", "tree_state", "save and restore"]


def _flat_stepped():
  """A flat state after one step, over two accumulator dtypes (float32 and float64)."""
  tx = adadelta_optax.adadelta(learning_rate=0.5, state_layout="flat")
  params = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones((3,), jnp.float64)}
  _, state = tx.update(params, tx.init(params), params)
  return tx, params, state


def _replaced(state, entry, value):
  if len(entry) == 1:
    return state._replace(**{entry[0]: value})
  return state._replace(**{entry[0]: {**getattr(state, entry[0]), entry[1]: value}})


@SETTINGS
@given(st.sampled_from(FLAT_ENTRIES), st.sampled_from(FLAT_CALLS), bad_values)
def test_flat_state_entries(tmp_path_factory, entry, call, value):
  """A flat state with one entry replaced, through every entry point that takes one: refused
  naming the entry, or it means what a valid entry means (only an int32 count or a buffer of
  the right dtype and length can); the state given is never changed."""
  tx, params, state = _flat_stepped()
  bad = _replaced(state, entry, value)
  before = copy.deepcopy(jax.tree.map(np.asarray, bad))
  name = "FlatAdadeltaState." + entry[0] + (f"[{entry[1]!r}]" if len(entry) > 1 else "")

  def run():
    if call == "tree_state":
      return adadelta_optax.tree_state(bad, params)
    if call == "save and restore":
      path = tmp_path_factory.mktemp("ckpt") / "c"
      adadelta_optax.checkpoint.save_checkpoint(path, state)
      return adadelta_optax.checkpoint.restore_checkpoint(path, bad)
    return getattr(tx, call)(params, bad, params)

  try:
    result, error = _raises_naming(run, name, "FlatAdadeltaState.", "checkpoint")
  except adadelta_optax.checkpoint.CheckpointError:
    return  # restore_checkpoint: the given tree is not the checkpoint's (named in its message)
  assert _equal(jax.tree.map(np.asarray, bad), before)
  if error is None:
    if entry == ("count",):
      assert np.result_type(value) == np.int32 and np.shape(value) == ()
    else:
      assert isinstance(value, np.ndarray) and value.dtype == np.dtype(entry[-1]), value


@SETTINGS
@given(st.sampled_from(["count", "accum_grad", "accum_var"]), bad_values)
def test_flat_state_of_a_tree_state_with_a_bad_entry(field, value):
  """flat_state: a tree state with its count or one accumulator leaf replaced."""
  tx = adadelta_optax.adadelta(learning_rate=0.5)
  params = {"a": jnp.ones(2), "b": jnp.ones((3,))}
  _, state = tx.update(params, tx.init(params), params)
  bad = state._replace(
    **{field: value if field == "count" else {**getattr(state, field), "a": value}}
  )
  flat, error = _raises_naming(lambda: adadelta_optax.flat_state(bad), f"state.{field}")
  if error is None:
    back = adadelta_optax.tree_state(flat, bad.accum_grad)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(bad), strict=True):
      np.testing.assert_array_equal(a, b)


# --- checkpoints ----------------------------------------------------------------------------------

MANIFEST_FIELDS = ["format", "treedef", "leaves", "path", "shape", "dtype", "sha256"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(MANIFEST_FIELDS), bad_values)
def test_checkpoint_manifest_entries(tmp_path_factory, field, value):
  """A checkpoint's manifest with one field replaced: a CheckpointError (which names the
  checkpoint and what is wrong), or, where the value means what was there, the same restore."""
  import json

  path = tmp_path_factory.mktemp("ckpt") / "c"
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "s": adadelta_optax.adadelta().init(jnp.ones(2))}
  adadelta_optax.checkpoint.save_checkpoint(path, tree)
  target = path / "manifest" / "metadata"
  manifest = json.loads(target.read_text())
  if field in ("format", "treedef", "leaves"):
    manifest[field] = value
  else:
    manifest["leaves"][0][field] = value
  try:
    target.write_text(json.dumps(manifest))
  except (TypeError, ValueError):
    return  # not JSON (bytes, NumPy values): it cannot be in a manifest file
  try:
    restored = adadelta_optax.checkpoint.restore_checkpoint(path, tree)
  except adadelta_optax.checkpoint.CheckpointError as error:
    assert str(path) in str(error)
    return
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(tree), strict=True):
    np.testing.assert_array_equal(a, b)
