"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=8: sharded Adadelta, printed as JSON.

Checks (asserting inside, reporting numbers): every state leaf carries its parameter's sharding
(init outside jit, and under jit with state_shardings as out_shardings); the collectives of the
compiled steps; sharded results against the same steps on one device.
"""

import contextlib
import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import adadelta_optax

# The mesh context: jax.set_mesh from jax 0.7 on, jax.sharding.use_mesh before (jax 0.6).
set_mesh = getattr(jax, "set_mesh", None) or jax.sharding.use_mesh
# An AbstractMesh's context: jax.sharding.use_abstract_mesh, from jax 0.7 on.
use_abstract_mesh = getattr(jax.sharding, "use_abstract_mesh", None)

COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all", "reduce-scatter")


def collectives(compiled):
  text = compiled.as_text()
  return {name: len(re.findall(rf"= [^=]*\b{name}(?:-start)?\(", text)) for name in COLLECTIVES}


def compare(got, want):
  """(bitwise equal, max relative difference per dtype) of two pytrees."""
  diffs = {}
  bitwise = True
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    a, b = np.asarray(a), np.asarray(b)
    bitwise &= a.tobytes() == b.tobytes()
    dtype = str(a.dtype)
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    a, b = a.astype(wide), b.astype(wide)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    d = float(np.max(np.abs(a - b))) / scale if b.size else 0.0
    diffs[dtype] = max(diffs.get(dtype, 0.0), d)
  return bool(bitwise), diffs


def main():
  jax.config.update("jax_enable_x64", True)
  assert jax.device_count() == 8, jax.devices()
  mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("fsdp", "tp"))
  specs = {
    "kernel": P("fsdp", "tp"),  # FSDP x tensor parallel
    "bias": P("tp"),
    "embed": P(None, "fsdp"),
    "scale": P(),  # replicated
    "f64": P("fsdp"),
    "bf16": P("tp", None),
  }
  rng = np.random.default_rng(0)
  host = {
    "kernel": rng.normal(size=(16, 8)).astype(np.float32),
    "bias": rng.normal(size=(8,)).astype(np.float32),
    "embed": rng.normal(size=(3, 12)).astype(np.float32),
    "scale": np.float32(0.5),
    "f64": rng.normal(size=(20,)),
    "bf16": rng.normal(size=(6, 5)).astype(jnp.bfloat16),
  }
  shardings = {k: NamedSharding(mesh, specs[k]) for k in host}
  params = {k: jax.device_put(v, shardings[k]) for k, v in host.items()}
  grads = [
    {
      k: (rng.normal(size=np.shape(v)) * 10.0 ** rng.uniform(-2, 1)).astype(v.dtype)
      for k, v in host.items()
    }
    for _ in range(3)
  ]
  report = {}
  one_device = {}  # the one-device steps' results, by key
  configs = {
    "default": dict(learning_rate=0.5, rho=0.9, epsilon=1e-6),
    "global_clipnorm": dict(learning_rate=0.5, global_clipnorm=1.0),
    "everything_local": dict(clipvalue=0.5, weight_decay=0.01, maximize=True, decay=0.01),
    "state_dtype_f32": dict(state_dtype=jnp.float32),
  }
  for name, kwargs in configs.items():
    # "auto" runs the fused JAX step here (several devices); "xla" the chain of small transforms.
    for implementation in ("auto", "xla") if name in ("default", "global_clipnorm") else ("auto",):
      tx = adadelta_optax.adadelta(**kwargs, implementation=implementation)
      key = f"{name}/{implementation}"
      # 1. init outside jit keeps each parameter's sharding.
      state = tx.init(params)
      for leaf_name in host:
        for field in ("accum_grad", "accum_var"):
          got = getattr(state, field)[leaf_name].sharding
          assert got.is_equivalent_to(shardings[leaf_name], np.ndim(host[leaf_name])), (
            key,
            field,
            leaf_name,
            got,
          )
      # 2. under jit, with state_shardings as out_shardings.
      state_sh = adadelta_optax.distributed.state_shardings(tx, params)
      state = jax.jit(tx.init, out_shardings=state_sh)(params)
      for leaf_name in host:
        got = state.accum_var[leaf_name].sharding
        assert got.is_equivalent_to(shardings[leaf_name], np.ndim(host[leaf_name])), (key, got)
      assert state.count.sharding.is_fully_replicated

      grads_sh = [jax.device_put(g, shardings) for g in grads]
      counts, p, state = sharded_steps(tx, grads_sh, state, params, (shardings, state_sh))
      for leaf_name in host:
        assert p[leaf_name].sharding.is_equivalent_to(
          shardings[leaf_name], np.ndim(host[leaf_name])
        )
        assert state.accum_grad[leaf_name].sharding.is_equivalent_to(
          shardings[leaf_name], np.ndim(host[leaf_name])
        )
      # The same steps on one device.
      device = jax.devices()[0]
      p1 = jax.device_put(host, device)
      s1 = jax.jit(tx.init)(p1)
      one = jax.jit(tx.apply_gradients)
      for g in grads:
        p1, s1 = one(jax.device_put(g, device), s1, p1)
      one_device[key] = (p1, s1)
      bitwise, diffs = compare((p, state), (p1, s1))
      report[key] = {"collectives": counts, "bitwise_equal": bitwise, "max_rel_diff": diffs}
  # Pure FSDP (every leaf sharded over the same mesh axis), mixed dtypes: the global norm is one
  # all-reduce. (With leaves sharded over different mesh axes XLA needs one per replica group.)
  fsdp = Mesh(np.array(jax.devices()), ("fsdp",))
  uniform = {k: v for k, v in host.items() if np.ndim(v) and np.shape(v)[0] % 8 == 0}
  uniform["bf16"] = rng.normal(size=(8, 3)).astype(jnp.bfloat16)
  uniform["f64"] = rng.normal(size=(16,))
  uniform_params = jax.device_put(uniform, NamedSharding(fsdp, P("fsdp")))
  tx = adadelta_optax.adadelta(global_clipnorm=1.0)
  state = tx.init(uniform_params)
  report["fsdp_uniform/global_clipnorm"] = {
    "collectives": {
      "update": collectives(
        jax.jit(tx.update).lower(uniform_params, state, uniform_params).compile()
      ),
      "apply_gradients": collectives(
        jax.jit(tx.apply_gradients).lower(uniform_params, state, uniform_params).compile()
      ),
    },
    "dtypes": sorted({str(v.dtype) for v in uniform.values()}),
  }
  report.update(explicit_mesh(host, specs, grads, configs["global_clipnorm"], one_device))
  report.update(norm_layouts(mesh, rng))
  report.update(exports(mesh, host, specs, grads[0], configs["global_clipnorm"]))
  report.update(transforms(mesh, host, specs, grads[0], configs["global_clipnorm"]))
  report.update(flat_state(mesh, host, params, grads))
  json.dump(report, sys.stdout)


def sharded_steps(tx, grads_sh, state, params, out_shardings=None):
  """``(collectives of the compiled update and apply_gradients, params, state)`` after one
  jitted apply_gradients step per gradient of ``grads_sh``."""
  kw = {} if out_shardings is None else {"out_shardings": out_shardings}
  step_update, step_apply = jax.jit(tx.update, **kw), jax.jit(tx.apply_gradients, **kw)
  counts = {
    "update": collectives(step_update.lower(grads_sh[0], state, params).compile()),
    "apply_gradients": collectives(step_apply.lower(grads_sh[0], state, params).compile()),
  }
  for g in grads_sh:
    params, state = step_apply(g, state, params)
  return counts, params, state


def explicit_mesh(host, specs, grads, kwargs, one_device):
  """The mixed layout on a mesh of Explicit axes (jax.set_mesh): shardings in the leaves' types."""
  report = {}
  mesh = jax.make_mesh((4, 2), ("fsdp", "tp"), axis_types=(AxisType.Explicit,) * 2)
  shardings = {k: NamedSharding(mesh, specs[k]) for k in host}
  with set_mesh(mesh):
    for implementation in ("auto", "xla"):
      tx = adadelta_optax.adadelta(**kwargs, implementation=implementation)
      params = jax.device_put(host, shardings)
      state = tx.init(params)
      grads_sh = [jax.device_put(g, shardings) for g in grads]
      counts, p, state = sharded_steps(tx, grads_sh, state, params)
      for k in host:
        assert p[k].sharding.is_equivalent_to(shardings[k], np.ndim(host[k])), (k, p[k].sharding)
      bitwise, diffs = compare((p, state), one_device[f"global_clipnorm/{implementation}"])
      report[f"explicit/{implementation}"] = {
        "collectives": counts,
        "bitwise_equal": bitwise,
        "max_rel_diff": diffs,
      }
  return report


def norm_layouts(mesh, rng):
  """The squared norms alone on harder layouts, against NumPy in float64.

  A dimension sharded over both mesh axes (in either order), a complex and an empty leaf, and two
  uneven leaves made inside the step from replicated inputs (a slice each, no collective): 7 rows
  over 4 devices, and 7 entries over 8 devices (one shard all padding).
  """
  from adadelta_optax.core._global_norm import squared_norms

  specs = {
    "both": P(("fsdp", "tp")),
    "both_reversed": P(("tp", "fsdp")),
    "complex": P("tp", "fsdp"),
    "empty": P(None, "tp"),
    "kernel": P("fsdp", "tp"),
    "bias": P("tp"),
    "rows7": P("fsdp", "tp"),
    "seven": P(("tp", "fsdp")),
  }
  host = {
    "both": rng.normal(size=(16, 3)),
    "both_reversed": rng.normal(size=(8,)),
    "complex": rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)),
    "empty": np.zeros((0, 2)),
    "kernel": rng.normal(size=(16, 8)),
    "bias": rng.normal(size=(8,)),
    "rows7": rng.normal(size=(7, 6)),
    "seven": rng.normal(size=(7,)),
  }
  uneven = ("rows7", "seven")
  leaves = {
    k: jax.device_put(v, NamedSharding(mesh, P() if k in uneven else specs[k]))
    for k, v in host.items()
  }

  def norms(leaves):
    leaves = dict(leaves)
    for k in uneven:
      leaves[k] = jax.lax.with_sharding_constraint(leaves[k], NamedSharding(mesh, specs[k]))
    return jnp.stack(squared_norms([leaves[k] for k in host]))

  step = jax.jit(norms)
  got = np.asarray(step(leaves))
  want = np.array([np.sum(np.abs(v) ** 2) for v in host.values()])
  return {
    "layouts/norms": {
      "collectives": collectives(step.lower(leaves).compile()),
      "max_rel_diff": float(np.max(np.abs(got - want) / np.maximum(want, 1e-300))),
      "zero_for_empty": bool(got[list(host).index("empty")] == 0.0),
    }
  }


def exports(mesh, host, specs, grads, kwargs):
  """jax.export of a sharded step with global_clipnorm (implementation="fused", portable).

  Auto axes with concrete shardings: the norm is the plain computation (no custom call) and the
  artifact round-trips. Explicit axes, exported for an AbstractMesh: the artifact itself holds
  the one all-reduce.
  """
  tx = adadelta_optax.adadelta(**kwargs, implementation="fused")
  shardings = {k: NamedSharding(mesh, specs[k]) for k in host}
  params, g = jax.device_put(host, shardings), jax.device_put(grads, shardings)
  state = tx.init(params)
  exported = jax.export.export(jax.jit(tx.apply_gradients), platforms=("cpu", "cuda", "tpu"))(
    g, state, params
  )
  restored = jax.export.deserialize(exported.serialize())
  _, diffs = compare(restored.call(g, state, params), jax.jit(tx.apply_gradients)(g, state, params))
  report = {
    "export/auto": {
      "custom_call": "custom_call" in exported.mlir_module(),
      "max_rel_diff": diffs,
    }
  }
  # A documented limitation: on an AbstractMesh of Auto axes, a multi-device process cannot
  # lower the device-requiring norm primitive (give concrete shardings or use Explicit axes).
  auto_abstract = jax.sharding.AbstractMesh((4, 2), ("fsdp", "tp"))
  typed = {
    k: jax.ShapeDtypeStruct(np.shape(v), v.dtype, sharding=NamedSharding(auto_abstract, specs[k]))
    for k, v in host.items()
  }
  try:
    jax.export.export(jax.jit(tx.apply_gradients), platforms=("cpu",))(
      typed, jax.eval_shape(tx.init, typed), typed
    )
    report["export/auto_abstract_mesh"] = {"error": None}
  except ValueError as error:
    report["export/auto_abstract_mesh"] = {"error": str(error)}
  report["export/explicit_abstract_mesh"] = explicit_abstract_export(tx, host, specs)
  return report


def explicit_abstract_export(tx, host, specs):
  """The step exported for an AbstractMesh of Explicit axes: the collectives of its module.

  Needs jax.sharding.use_abstract_mesh (jax 0.7 and later): jax 0.6's use_mesh takes only a
  concrete Mesh, so there a step cannot be exported for an AbstractMesh (said in the report)."""
  if use_abstract_mesh is None:
    return {"unsupported": f"jax {jax.__version__} has no jax.sharding.use_abstract_mesh"}
  abstract = jax.sharding.AbstractMesh((4, 2), ("fsdp", "tp"), axis_types=(AxisType.Explicit,) * 2)

  def spec_of(k, v):
    return jax.ShapeDtypeStruct(np.shape(v), v.dtype, sharding=NamedSharding(abstract, specs[k]))

  typed = {k: spec_of(k, v) for k, v in host.items()}
  with use_abstract_mesh(abstract):
    state_typed = jax.eval_shape(tx.init, typed)
    exported = jax.export.export(jax.jit(tx.apply_gradients), platforms=("cpu", "cuda", "tpu"))(
      typed, state_typed, typed
    )
  module = exported.mlir_module()
  return {
    "collectives": {
      name: len(re.findall(rf"stablehlo\.{name.replace('-', '_')}\b", module))
      for name in COLLECTIVES
    }
  }


def transforms(mesh, host, specs, grads, kwargs):
  """vmap and grad of the sharded update against one device, on Auto and on Explicit axes.

  Auto axes: the plain norm (correct; XLA reduces once per replica group). Explicit axes: the
  shard_map norm, which vmap keeps as one all-reduce.
  """
  report = {}
  tx = adadelta_optax.adadelta(**kwargs, implementation="xla")
  floats = [k for k in host if host[k].dtype == np.float32]
  members = [{k: host[k] * scale for k in floats} for scale in (1.0, 3.0)]
  member_grads = [{k: grads[k] * scale for k in floats} for scale in (1.0, 0.1)]
  stack = {k: np.stack([m[k] for m in members]) for k in floats}
  stack_grads = {k: np.stack([m[k] for m in member_grads]) for k in floats}
  device = jax.devices()[0]
  want_vmap = [
    jax.jit(tx.update)(*jax.device_put((mg, tx.init(m), m), device))[0]
    for m, mg in zip(members, member_grads, strict=True)
  ]
  want_vmap = jax.tree.map(lambda *x: np.stack(x), *want_vmap)

  def total_update(g, params):
    updates, _ = tx.update(g, tx.init(params), params)
    return sum(jnp.sum(u) for u in jax.tree.leaves(updates))

  grad_fn = jax.jit(jax.grad(total_update))
  want_grad = grad_fn(*jax.device_put((member_grads[0], members[0]), device))
  explicit = jax.make_mesh((4, 2), ("fsdp", "tp"), axis_types=(AxisType.Explicit,) * 2)
  for axes, on, context in (
    ("auto", mesh, contextlib.nullcontext),
    ("explicit", explicit, lambda: set_mesh(explicit)),  # set_mesh acts when called
  ):
    with context():
      batched = {k: NamedSharding(on, P(None, *specs[k])) for k in floats}
      params, g = jax.device_put(stack, batched), jax.device_put(stack_grads, batched)
      state = jax.vmap(tx.init)(params)
      vmapped = jax.jit(jax.vmap(tx.update))
      _, vmap_diffs = compare(vmapped(g, state, params)[0], want_vmap)
      sharded = {k: NamedSharding(on, specs[k]) for k in floats}
      got = grad_fn(*jax.device_put((member_grads[0], members[0]), (sharded, sharded)))
      _, grad_diffs = compare(got, want_grad)
      report[f"transforms/{axes}/vmap"] = {
        "collectives": collectives(vmapped.lower(g, state, params).compile()),
        "max_rel_diff": vmap_diffs,
      }
      report[f"transforms/{axes}/grad"] = {"max_rel_diff": grad_diffs}
  return report


def flat_state(mesh, host, params, grads):
  """state_layout="flat" on several devices: state_shardings refuses sharded params; with
  replicated params the (fused) step runs and gives the tree layout's numbers."""
  tx = adadelta_optax.adadelta(learning_rate=0.5, clipnorm=1.0, state_layout="flat")
  try:
    adadelta_optax.distributed.state_shardings(tx, params)
    error = None
  except ValueError as e:
    error = str(e)
  replicated = {k: jax.device_put(v, NamedSharding(mesh, P())) for k, v in host.items()}
  state = jax.jit(
    tx.init, out_shardings=adadelta_optax.distributed.state_shardings(tx, replicated)
  )(replicated)
  assert all(b.sharding.is_fully_replicated for b in jax.tree.leaves(state))
  tree_tx = adadelta_optax.adadelta(learning_rate=0.5, clipnorm=1.0)
  tree_state = tree_tx.init(replicated)
  p_flat = p_tree = replicated
  for g in grads:
    p_flat, state = jax.jit(tx.apply_gradients)(g, state, p_flat)
    p_tree, tree_state = jax.jit(tree_tx.apply_gradients)(g, tree_state, p_tree)
  bitwise, diffs = compare((p_flat, state), (p_tree, adadelta_optax.flat_state(tree_state)))
  return {"flat_state": {"sharded_error": error, "bitwise_equal": bitwise, "max_rel_diff": diffs}}


if __name__ == "__main__":
  main()
