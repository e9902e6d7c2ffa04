"""jax.export of a training step for cpu, cuda and tpu; serialized round trip runs on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax


def _setup(implementation, wrap=False, layout="tree"):
  tx = adadelta_optax.adadelta(
    learning_rate=0.5, global_clipnorm=1.0, implementation=implementation, state_layout=layout
  )
  if wrap:
    tx = adadelta_optax.skip_nonfinite(tx)
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
  x = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)

  def loss(params, x):
    return jnp.mean((x @ params["w"] + params["b"]) ** 2)

  def train_step(params, state, x):
    grads = jax.grad(loss)(params, x)
    if wrap:
      updates, state = tx.update(grads, state, params)
      return jax.tree.map(jnp.add, params, updates), state
    return tx.apply_gradients(grads, state, params)

  return train_step, params, tx.init(params), x


def _run(fn, params, state, x, steps=3):
  for _ in range(steps):
    params, state = fn(params, state, x)
  return params, state


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("layout", ["tree", "flat"])
def test_fused_export_is_portable_and_round_trips(wrap, layout):
  """The flat state's TreeSpec (static) is serialized with the exported function's trees."""
  train_step, params, state, x = _setup("fused", wrap, layout)
  exported = jax.export.export(jax.jit(train_step), platforms=("cpu", "cuda", "tpu"))(
    params, state, x
  )
  assert exported.platforms == ("cpu", "cuda", "tpu")
  assert "custom_call" not in exported.mlir_module()  # no custom call: runs anywhere
  restored = jax.export.deserialize(exported.serialize())
  got = _run(restored.call, params, state, x)
  want = _run(jax.jit(train_step), params, state, x)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.skipif(not adadelta_optax.kernel_available(), reason="CPU kernel not built")
@pytest.mark.parametrize(
  ("layout", "state_type"),
  [("tree", adadelta_optax.AdadeltaState), ("flat", adadelta_optax.FlatAdadeltaState)],
)
def test_kernel_export_needs_the_disabled_check_and_round_trips(layout, state_type):
  train_step, params, state, x = _setup("auto", layout=layout)
  target = f"adadelta_optax_{layout}_f32"  # the targets docs/howto/scaling.md lists
  with pytest.raises(ValueError, match=target):
    jax.export.export(jax.jit(train_step), platforms=("cpu", "cuda", "tpu"))(params, state, x)
  exported = jax.export.export(
    jax.jit(train_step),
    platforms=("cpu", "cuda", "tpu"),
    disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(target)],
  )(params, state, x)
  restored = jax.export.deserialize(exported.serialize())
  got = _run(restored.call, params, state, x)
  want = _run(jax.jit(train_step), params, state, x)
  assert isinstance(got[1], state_type)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
