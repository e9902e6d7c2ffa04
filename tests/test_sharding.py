"""Sharded Adadelta on 8 simulated CPU devices (in a subprocess: XLA_FLAGS must precede jax)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax

SCRIPT = Path(__file__).parent / "scripts" / "sharded_run.py"


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  done = subprocess.run(
    [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-4000:]
  return json.loads(done.stdout)


@pytest.mark.parametrize(
  "key", ["default/auto", "default/xla", "everything_local/auto", "state_dtype_f32/auto"]
)
def test_elementwise_step_has_no_collective_and_is_bitwise_unsharded(report, key):
  # The script already asserted that every state leaf carries its parameter's sharding (init
  # outside jit, jitted init with state_shardings, and after 5 jitted steps).
  result = report[key]
  for step in ("update", "apply_gradients"):
    assert sum(result["collectives"][step].values()) == 0, result
  assert result["bitwise_equal"], result


def _only_one_all_reduce(counts):
  return counts["all-reduce"] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize(
  "key", ["global_clipnorm/auto", "global_clipnorm/xla", "explicit/auto", "explicit/xla"]
)
def test_global_clipnorm_is_exactly_one_all_reduce_on_a_mixed_layout(report, key):
  # Leaves sharded over (fsdp, tp), tp, (None, fsdp), fsdp, replicated: plain JAX costs one
  # all-reduce per replica group (2); the squared norms are one psum over all devices. "global_
  # clipnorm/*" on Auto mesh axes (jit with NamedSharding arguments), "explicit/*" on a mesh of
  # Explicit axes under jax.set_mesh; "auto" runs the fused JAX step (several devices), "xla" the
  # chain of small transforms.
  result = report[key]
  for step in ("update", "apply_gradients"):
    assert _only_one_all_reduce(result["collectives"][step]), result["collectives"]
  # The norm's partial sums are added in another order than on one device: float32 and
  # float64 norms may differ in the last bit, nothing more (bf16 params come out equal).
  diffs = result["max_rel_diff"]
  assert diffs["float64"] <= 4 * np.finfo(np.float64).eps, diffs
  assert diffs["float32"] <= 4 * np.finfo(np.float32).eps, diffs
  assert diffs["bfloat16"] == 0.0, diffs


def test_squared_norms_on_uneven_and_two_axis_layouts(report):
  # A dimension sharded over both mesh axes (either order), complex and empty leaves, 7 rows over
  # 4 devices and 7 entries over 8 (one shard all padding): still one all-reduce, exact norms.
  result = report["layouts/norms"]
  assert _only_one_all_reduce(result["collectives"]), result
  assert result["max_rel_diff"] <= 4 * np.finfo(np.float64).eps, result
  assert result["zero_for_empty"], result


def test_sharded_export(report):
  # Auto axes: exported with concrete shardings, the norm is the plain computation (no custom
  # call) and the artifact round-trips to the jitted step's numbers.
  auto = report["export/auto"]
  assert not auto["custom_call"], auto
  assert all(d <= 4 * np.finfo(np.float32).eps for d in auto["max_rel_diff"].values()), auto
  # Explicit axes, exported for an AbstractMesh: the exported module holds the one all-reduce.
  explicit = report["export/explicit_abstract_mesh"]
  assert _only_one_all_reduce(explicit["collectives"]), explicit


@pytest.mark.parametrize("axes", ["auto", "explicit"])
@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_vmap_and_grad_of_a_sharded_update(report, axes, transform):
  result = report[f"transforms/{axes}/{transform}"]
  diffs = result["max_rel_diff"]
  assert diffs["float32"] <= 4 * np.finfo(np.float32).eps, diffs
  if transform == "vmap" and axes == "explicit":
    # shard_map under vmap: still one all-reduce (on Auto axes vmap takes the plain norm).
    assert _only_one_all_reduce(result["collectives"]), result


def test_auto_abstract_mesh_export_is_refused_in_a_multi_device_process(report):
  # The documented limitation: the norm primitive needs devices to lower, as custom_partitioning.
  error = report["export/auto_abstract_mesh"]["error"]
  assert error is not None and "AbstractMesh cannot be used" in error, error


def test_global_clipnorm_on_fsdp_is_exactly_one_all_reduce(report):
  result = report["fsdp_uniform/global_clipnorm"]
  assert result["dtypes"] == ["bfloat16", "float32", "float64"]
  for step in ("update", "apply_gradients"):
    counts = result["collectives"][step]
    assert counts["all-reduce"] == 1 and sum(counts.values()) == 1, counts


def test_state_shardings_single_device_and_wrappers():
  params = {"w": jnp.ones((4, 2)), "b": jnp.zeros(3, jnp.float32)}
  tx = adadelta_optax.skip_nonfinite(adadelta_optax.adadelta(state_dtype=jnp.float64))
  shardings = adadelta_optax.state_shardings(tx, params)
  state = jax.jit(tx.init, out_shardings=shardings)(params)
  assert isinstance(state, adadelta_optax.SkipNonfiniteState)
  assert isinstance(state.inner_state, adadelta_optax.AdadeltaState)
  assert state.inner_state.accum_var["w"].sharding == params["w"].sharding
  assert state.inner_state.accum_grad["b"].dtype == jnp.float64


def test_state_shardings_refuses_unplaced_params():
  with pytest.raises(TypeError, match=r"params\['w'\] has no sharding"):
    adadelta_optax.state_shardings(adadelta_optax.adadelta(), {"w": np.ones(3)})
