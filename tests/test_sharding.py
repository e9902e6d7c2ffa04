"""Sharded Adadelta on 8 simulated CPU devices (in a subprocess: XLA_FLAGS must precede jax)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax

from helpers import JAX_VERSION

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
def test_elementwise_step_has_no_collective_and_equals_the_unsharded_step(report, key):
  """No collective at all (the step is elementwise); the numbers are one device's to a few ulps.

  Each element goes through the same operations sharded or not, but XLA compiles the loop over a
  shard and the loop over the whole leaf separately, and its CPU code may vectorize them
  differently (XLA is free to, e.g., turn a / sqrt(b) into a * rsqrt(b) in one loop and not the
  other): bitwise equal on jax 0.6.2, 0.10.2 and 0.12.1, 3.6 float32 ulps apart (relative to the
  leaf's largest element) on jax 0.8.3. The bound is 8 ulps, and one bfloat16 ulp for
  bfloat16 leaves (computed in float32, then rounded: a few float32 ulps can round either way).
  """
  # The script already asserted that every state leaf carries its parameter's sharding (init
  # outside jit, jitted init with state_shardings, and after 5 jitted steps).
  result = report[key]
  for step in ("update", "apply_gradients"):
    assert sum(result["collectives"][step].values()) == 0, result
  diffs = result["max_rel_diff"]
  assert diffs["float64"] <= 8 * np.finfo(np.float64).eps, diffs
  assert diffs["float32"] <= 8 * np.finfo(np.float32).eps, diffs
  assert diffs["bfloat16"] <= float(jnp.finfo(jnp.bfloat16).eps), diffs
  assert diffs["int32"] == 0.0, diffs  # the step count


def _all_reduces_only(counts, n):
  return counts["all-reduce"] == n and sum(counts.values()) == n


def _only_one_all_reduce(counts):
  return _all_reduces_only(counts, 1)


# On Auto axes the plain norm's all-reduces are XLA's choice: its SPMD partitioner reduces each
# sharded leaf over each mesh axis that shards it (one all-reduce each: the bound below), and its
# all-reduce combiner then merges those of equal replica groups. How much it merges is a property
# of the XLA version, not of this package. Measured for the layouts below (mixed, FSDP-uniform,
# uneven, vmap): jax 0.6.2 merges nothing (6, 4, 10, 4 all-reduces); jax 0.8.3 and later merge
# every equal group (2, 1, 5, 2). The merged counts are asserted where they were measured, the
# bound and "all-reduces only" everywhere.
XLA_MERGES_ALL_REDUCES = JAX_VERSION >= (0, 8)


def _auto_all_reduces(counts, merged, unmerged):
  """Auto axes: exactly ``merged`` where XLA merges equal groups, else at most ``unmerged``."""
  if XLA_MERGES_ALL_REDUCES:
    return _all_reduces_only(counts, merged)
  return counts["all-reduce"] <= unmerged and sum(counts.values()) == counts["all-reduce"]


@pytest.mark.parametrize(
  ("key", "all_reduces"),
  [
    ("global_clipnorm/auto", (2, 6)),
    ("global_clipnorm/xla", (2, 6)),
    ("explicit/auto", (1, 1)),
    ("explicit/xla", (1, 1)),
  ],
)
def test_global_clipnorm_all_reduces_on_a_mixed_layout(report, key, all_reduces):
  """Leaves sharded over (fsdp, tp), tp, (None, fsdp), fsdp, replicated.

  "explicit/*" (a mesh of Explicit axes under jax.set_mesh): the leaves' types carry their
  shardings and the squared norms are one shard_map psum: exactly one all-reduce.
  "global_clipnorm/*" (Auto axes, jit of NamedSharding arguments): the public norm is plain jnp.sum
  per leaf, and XLA reduces each leaf over its own replica groups, merging only equal groups:
  measured 2 all-reduces (all 8 devices; the 4 pairs of tp), no other collective, where XLA
  merges equal replica groups; at most 6 (one per leaf and sharding axis) elsewhere (see
  XLA_MERGES_ALL_REDUCES). On Auto axes that count is XLA's (no public API shows the shardings
  while tracing). "auto" runs the fused JAX step (several devices), "xla" the chain of small
  transforms.
  """
  result = report[key]
  for step in ("update", "apply_gradients"):
    assert _auto_all_reduces(result["collectives"][step], *all_reduces), result["collectives"]
  # The norm's partial sums are added in another order than on one device: float32 and
  # float64 norms may differ in the last bit, nothing more; bf16 params (measured equal) are
  # computed in float32 and rounded, so a last-bit difference may round to one bf16 ulp.
  diffs = result["max_rel_diff"]
  assert diffs["float64"] <= 4 * np.finfo(np.float64).eps, diffs
  assert diffs["float32"] <= 4 * np.finfo(np.float32).eps, diffs
  assert diffs["bfloat16"] <= float(jnp.finfo(jnp.bfloat16).eps), diffs


def test_squared_norms_on_uneven_and_two_axis_layouts(report):
  """A dimension sharded over both mesh axes (either order), complex and empty leaves, 7 rows over
  4 devices and 7 entries over 8 (one shard all padding), on Auto axes: exact norms.

  The public norm reduces leaf by leaf, one all-reduce per distinct replica group: XLA splits a
  dimension sharded over both axes into per-axis reductions, and orders ("fsdp", "tp") and
  ("tp", "fsdp") give the 8 devices in two orders, so the groups are {tp}, {fsdp}, all 8, all 8
  transposed, and a tp group of a second reduction stage (measured: 5 all-reduces, no other
  collective, jax 0.10.2 on CPU; at most 10 where XLA does not merge equal groups).
  """
  result = report["layouts/norms"]
  assert _auto_all_reduces(result["collectives"], 5, 10), result
  assert result["max_rel_diff"] <= 4 * np.finfo(np.float64).eps, result
  assert result["zero_for_empty"], result


def test_sharded_export(report):
  # Auto axes: exported with concrete shardings, the norm is the plain computation (no custom
  # call) and the artifact round-trips to the jitted step's numbers.
  auto = report["export/auto"]
  assert not auto["custom_call"], auto
  assert all(d <= 4 * np.finfo(np.float32).eps for d in auto["max_rel_diff"].values()), auto
  # Explicit axes, exported for an AbstractMesh: the exported module holds the one all-reduce.
  # jax 0.6 cannot export for an AbstractMesh (no jax.sharding.use_abstract_mesh): a JAX feature,
  # reported as unsupported there and nowhere else.
  explicit = report["export/explicit_abstract_mesh"]
  if "unsupported" in explicit:
    assert not hasattr(jax.sharding, "use_abstract_mesh"), explicit
  else:
    assert _only_one_all_reduce(explicit["collectives"]), explicit


@pytest.mark.parametrize("axes", ["auto", "explicit"])
@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_vmap_and_grad_of_a_sharded_update(report, axes, transform):
  result = report[f"transforms/{axes}/{transform}"]
  diffs = result["max_rel_diff"]
  assert diffs["float32"] <= 4 * np.finfo(np.float32).eps, diffs
  if transform == "vmap":
    # shard_map under vmap: still one all-reduce; on Auto axes the plain norm's 2 (measured),
    # at most 4 where XLA does not merge equal groups.
    expected = (1, 1) if axes == "explicit" else (2, 4)
    assert _auto_all_reduces(result["collectives"], *expected), result


def test_auto_abstract_mesh_export_works_in_a_multi_device_process(report):
  # The public norm needs no devices to lower: a step exports for an AbstractMesh of Auto axes.
  assert report["export/auto_abstract_mesh"]["error"] is None, report["export/auto_abstract_mesh"]


def test_global_clipnorm_on_fsdp_is_exactly_one_all_reduce(report):
  # Every leaf sharded over the same mesh axis: one replica group, so one all-reduce publicly.
  # (At most 4, one per leaf, where XLA does not merge equal groups.)
  result = report["fsdp_uniform/global_clipnorm"]
  assert result["dtypes"] == ["bfloat16", "float32", "float64"]
  for step in ("update", "apply_gradients"):
    assert _auto_all_reduces(result["collectives"][step], 1, 4), result["collectives"]


def test_state_shardings_single_device_and_wrappers():
  params = {"w": jnp.ones((4, 2)), "b": jnp.zeros(3, jnp.float32)}
  tx = adadelta_optax.skip_nonfinite(adadelta_optax.adadelta(state_dtype=jnp.float64))
  shardings = adadelta_optax.distributed.state_shardings(tx, params)
  state = jax.jit(tx.init, out_shardings=shardings)(params)
  assert isinstance(state, adadelta_optax.SkipNonfiniteState)
  assert isinstance(state.inner_state, adadelta_optax.AdadeltaState)
  assert state.inner_state.accum_var["w"].sharding == params["w"].sharding
  assert state.inner_state.accum_grad["b"].dtype == jnp.float64


def test_flat_state_on_several_devices(report):
  """The flat layout's buffers cannot follow each param's sharding: state_shardings says so for
  sharded params; on replicated ones the step equals the tree layout's (to the fused path's
  rounding: 2 ulps, see tests/test_flat_state.py)."""
  r = report["flat_state"]
  assert r["sharded_error"] is not None
  assert re.search(r"params\['\w+'\] is sharded.*state_layout='tree'", r["sharded_error"])
  for dtype, diff in r["max_rel_diff"].items():
    bound = 2 * float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.inexact) else 0.0
    assert diff <= bound, (dtype, diff)


def test_state_shardings_refuses_unplaced_params():
  with pytest.raises(TypeError, match=r"params\['w'\] has no sharding"):
    adadelta_optax.distributed.state_shardings(adadelta_optax.adadelta(), {"w": np.ones(3)})
