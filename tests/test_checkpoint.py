"""orbax checkpoints of params and Adadelta state: types, values, kill and resume, bad input."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax

from helpers import assert_bitwise

SCRIPT = Path(__file__).parent / "scripts" / "train_checkpointed.py"


def _trained():
  tx = adadelta_optax.skip_nonfinite(adadelta_optax.adadelta(state_dtype=jnp.float64))
  params = {"w": jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3), "b": [jnp.ones(2, jnp.float32)]}
  state = tx.init(params)
  for t in range(3):
    updates, state = tx.update(jax.tree.map(lambda p, t=t: p * 0.1 + t, params), state, params)
    params = jax.tree.map(jnp.add, params, updates)
  return {"params": params, "opt_state": state}


def test_round_trip_keeps_types_and_values(tmp_path):
  tree = _trained()
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
  like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  restored = adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", like)
  assert type(restored["opt_state"]) is adadelta_optax.SkipNonfiniteState
  assert type(restored["opt_state"].inner_state) is adadelta_optax.AdadeltaState
  assert_bitwise(restored, tree)
  assert int(restored["opt_state"].inner_state.count) == 3


@pytest.mark.parametrize(
  "change, match",
  [
    (lambda t: {**t, "params": {**t["params"], "w": jnp.zeros((3, 2), jnp.float32)}}, "shape"),
    (
      lambda t: {**t, "params": {**t["params"], "w": t["params"]["w"].astype(jnp.float64)}},
      "dtype",
    ),
    (lambda t: {**t, "params": {"w": t["params"]["w"]}}, "saved leaves|structure"),
    (lambda t: {**t, "opt_state": t["opt_state"].inner_state}, "structure|saved leaves"),
  ],
)
def test_mismatched_checkpoint_is_refused(tmp_path, change, match):
  tree = _trained()
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
  like = change(tree)
  before = [np.asarray(x).copy() for x in jax.tree.leaves(like)]
  with pytest.raises(adadelta_optax.checkpoint.CheckpointError, match=match):
    adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", like)
  for x, y in zip(jax.tree.leaves(like), before, strict=True):
    assert np.asarray(x).tobytes() == y.tobytes()


def _data_files(path):
  return [
    Path(root) / f
    for root, _, files in os.walk(path / "state")
    for f in files
    if Path(root).name == "d"
  ]


@pytest.mark.parametrize("how", ["garble", "truncate", "manifest"])
def test_corrupted_checkpoint_is_refused(tmp_path, how):
  tree = _trained()
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
  if how == "manifest":
    targets = [tmp_path / "c" / "manifest" / "metadata"]
  else:
    targets = _data_files(tmp_path / "c")
  assert targets
  for target in targets:
    data = bytearray(target.read_bytes())
    if how == "truncate":
      data = data[: len(data) // 2]
    else:
      for i in range(len(data) // 3, len(data), 7):
        data[i] ^= 0x5A
    target.write_bytes(bytes(data))
  with pytest.raises(adadelta_optax.checkpoint.CheckpointError, match="corrupted"):
    adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", tree)


def test_missing_checkpoint_is_refused(tmp_path):
  with pytest.raises(adadelta_optax.checkpoint.CheckpointError, match="no checkpoint"):
    adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "nothing", _trained())


def _run(ckpt, out, steps=60, every=5):
  return [sys.executable, str(SCRIPT), str(ckpt), str(steps), str(every), str(out)]


def test_killed_and_resumed_run_is_bitwise_uninterrupted(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  straight = subprocess.run(
    _run(tmp_path / "a", tmp_path / "a.npz"), env=env, capture_output=True, text=True, timeout=240
  )
  assert straight.returncode == 0, straight.stderr[-3000:]
  proc = subprocess.Popen(
    _run(tmp_path / "b", tmp_path / "b.npz"), env=env, stdout=subprocess.PIPE, text=True
  )
  try:
    for line in proc.stdout:
      if line.startswith("saved 20"):
        break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not (tmp_path / "b.npz").exists()
  resumed = subprocess.run(
    _run(tmp_path / "b", tmp_path / "b.npz"), env=env, capture_output=True, text=True, timeout=240
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  first_saved = int(resumed.stdout.split("saved ")[1].split()[0])
  assert 25 <= first_saved < 60  # it resumed after step 20, it did not start over
  a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
  assert sorted(a.files) == sorted(b.files)
  for name in a.files:
    assert a[name].tobytes() == b[name].tobytes(), name
  assert int(b["[1].count"]) == 60


@pytest.mark.parametrize("call", ["save", "restore"])
def test_without_orbax_names_the_extra(tmp_path, monkeypatch, call):
  """orbax is optional: without it (None in sys.modules is how Python marks a missing module)
  both functions raise an ImportError that names the `checkpoint` extra."""
  monkeypatch.setitem(sys.modules, "orbax", None)
  monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
  tree = {"w": jnp.ones(2)}
  with pytest.raises(ImportError, match=r'pip install "adadelta-optax\[checkpoint\]"') as raised:
    if call == "save":
      adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
    else:
      adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", tree)
  assert not (tmp_path / "c").exists()
  assert isinstance(raised.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
  "tree",
  [
    {"a.b": jnp.ones(2), "a": {"b": jnp.zeros(3)}},  # keys that collide once joined
    {"a/b": jnp.ones(2), "a": {"b": jnp.zeros(3)}},
    {1: jnp.arange(3.0), 2: {"x.y": jnp.ones(1)}},  # int keys
    {"params": {"w": jnp.ones(0)}, "opt_state": adadelta_optax.adadelta().init({"w": jnp.ones(0)})},
    {"w": jnp.ones((2, 0, 3)), "b": jnp.arange(4.0)},  # an empty leaf beside a full one
    {},
  ],
  ids=["dot-collision", "slash-collision", "int-keys", "all-empty", "one-empty", "no-leaves"],
)
def test_every_tree_that_saves_restores(tmp_path, tree):
  """Colliding keys once saved and then failed to restore; zero-size leaves did not save at all
  (orbax refuses them). Both round-trip bit-exactly now."""
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
  restored = adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", tree)
  assert_bitwise(restored, tree)


def test_format_1_checkpoints_still_restore(tmp_path):
  """A checkpoint as the previous release wrote it (orbax tree under its own keys, manifest
  format 1) restores into the same tree, bit-exactly."""
  import orbax.checkpoint as ocp

  from adadelta_optax.checkpoint import _checkpoint

  tree = _trained()
  manifest = {**_checkpoint._describe(tree, hashes=True, what="tree"), "format": 1}
  ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
    str(tmp_path / "old"),
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(tree), manifest=ocp.args.JsonSave(manifest)
    ),
  )
  assert_bitwise(adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "old", tree), tree)


@pytest.mark.parametrize(
  "edit",
  [
    lambda m: [],
    lambda m: {**m, "format": 99},
    lambda m: {**m, "treedef": 3},
    lambda m: {**m, "leaves": {"0": 1}},
    lambda m: {**m, "leaves": [{"path": "w"}] * len(m["leaves"])},
    lambda m: {**m, "leaves": [{**r, "shape": "2x3"} for r in m["leaves"]]},
    lambda m: {**m, "leaves": [{**r, "shape": [-1]} for r in m["leaves"]]},
    lambda m: {**m, "leaves": [{**r, "sha256": 5} for r in m["leaves"]]},
    lambda m: {k: v for k, v in m.items() if k != "leaves"},
  ],
)
def test_a_manifest_of_the_wrong_schema_is_a_checkpoint_error(tmp_path, edit):
  """A well-formed JSON manifest with the wrong schema once raised KeyError/TypeError."""
  import json

  tree = _trained()
  adadelta_optax.checkpoint.save_checkpoint(tmp_path / "c", tree)
  target = tmp_path / "c" / "manifest" / "metadata"
  target.write_text(json.dumps(edit(json.loads(target.read_text()))))
  with pytest.raises(adadelta_optax.checkpoint.CheckpointError, match="manifest"):
    adadelta_optax.checkpoint.restore_checkpoint(tmp_path / "c", tree)
