"""The squared norms of the global clipping norm: one-device numbers, the opt-in, public JAX only.

The sharded behaviour (all-reduce counts on 8 simulated devices, public path and opt-in) is in
tests/test_sharding.py.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractMesh, NamedSharding
from jax.sharding import PartitionSpec as P

import adadelta_optax
from adadelta_optax.core import _clipping, _global_norm

from helpers import enable_x64

PINNED = pytest.mark.skipif(
  jax.__version__ not in _global_norm.PRIVATE_TESTED_JAX_VERSIONS,
  reason=(
    f"the opt-in global norm reads JAX internals and is tested on jax "
    f"{_global_norm.PRIVATE_TESTED_JAX_VERSIONS} only, not {jax.__version__}"
  ),
)


def _jax_src_imports(path: Path) -> list[str]:
  """Every ``import jax._src...`` / ``from jax._src... import`` / ``from jax import _src`` in it."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [
        a.name for a in node.names if a.name == "jax._src" or a.name.startswith("jax._src.")
      ]
    elif isinstance(node, ast.ImportFrom) and node.module is not None:
      if node.module == "jax._src" or node.module.startswith("jax._src."):
        found.append(node.module)
      elif node.module == "jax" and any(a.name == "_src" for a in node.names):
        found.append("jax._src")
  return [f"{path.name}:{name}" for name in found]


def test_package_imports_nothing_from_jax_src(tmp_path):
  sources = sorted(Path(adadelta_optax.__file__).parent.rglob("*.py"))
  assert len(sources) > 10, sources  # the scan really looked at the package
  found = [hit for path in sources for hit in _jax_src_imports(path)]
  assert found == []
  # The scan itself finds each spelling.
  probe = tmp_path / "probe.py"
  probe.write_text(
    "import jax._src.dispatch\nfrom jax._src.lib import xla_client\nfrom jax import _src\n"
  )
  assert _jax_src_imports(probe) == [
    "probe.py:jax._src.dispatch",
    "probe.py:jax._src.lib",
    "probe.py:jax._src",
  ]


def test_import_builds_nothing_of_the_opt_in():
  # A fresh process: importing the package (and using the public norm) registers no
  # custom_partitioning op with JAX; the opt-in builds it on first use.
  code = (
    "import jax.numpy as jnp, adadelta_optax\n"
    "from adadelta_optax.core import _global_norm as g\n"
    "g.squared_norms([jnp.ones(3)])\n"
    "print(g._private_norms.cache_info().currsize)\n"
  )
  env = {k: v for k, v in os.environ.items() if k != _global_norm.PRIVATE_GLOBAL_NORM_ENV}
  done = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split() == ["0"]


def _old_global_norm_scale(grads, c):
  """global_norm_scale as it was before the squared norms had their own module."""
  leaves = jax.tree.leaves(grads)
  dtype = jnp.result_type(*[jnp.real(jnp.zeros((), leaf.dtype)).dtype for leaf in leaves])
  squared = []
  for leaf in (_clipping._as_real_dtype(leaf, dtype) for leaf in leaves):
    if jnp.iscomplexobj(leaf):
      squared.append(jnp.sum(jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf))))
    else:
      squared.append(jnp.sum(jnp.square(leaf)))
  norm = jnp.sqrt(sum(squared, jnp.zeros((), dtype)))
  c = jnp.asarray(c, dtype)
  return c * jnp.minimum(1.0 / norm, 1.0 / c) + (norm - norm)


def test_one_device_numbers_are_unchanged():
  rng = np.random.default_rng(0)
  for dtype in (jnp.float32, jnp.float64, jnp.bfloat16, jnp.complex64):
    for _ in range(5):
      tree = {}
      for i in range(rng.integers(1, 5)):
        shape = tuple(rng.integers(0, 30, size=rng.integers(0, 3)))
        x = rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3)
        if dtype == jnp.complex64:
          x = x + 1j * rng.normal(size=shape)
        leaf_dtype = dtype if i % 3 else jnp.float32
        tree[f"leaf{i}"] = jnp.asarray(x if leaf_dtype == dtype else np.real(x), leaf_dtype)
      for fn in (lambda f: f, jax.jit):
        new = fn(lambda t: _clipping.global_norm_scale(t, 0.7))(tree)
        old = fn(lambda t: _old_global_norm_scale(t, 0.7))(tree)
        assert np.asarray(new).tobytes() == np.asarray(old).tobytes(), (dtype, tree)


def test_squared_norms_against_numpy():
  rng = np.random.default_rng(1)
  host = [
    rng.normal(size=(5, 3)),
    rng.normal(size=(7,)) + 1j * rng.normal(size=(7,)),
    np.zeros((0, 2)),
  ]
  want = [np.sum(np.abs(x) ** 2) for x in host]
  leaves = [jnp.asarray(x) for x in host]
  for fn in (_global_norm.squared_norms, jax.jit(_global_norm.squared_norms)):
    got = fn(leaves)
    assert [g.dtype for g in got] == [jnp.float64] * 3
    np.testing.assert_allclose(np.asarray(got), want, rtol=4 * np.finfo(np.float64).eps, atol=0)


def test_leaves_must_share_one_real_dtype():
  with pytest.raises(ValueError, match="one real dtype"):
    _global_norm.squared_norms([jnp.ones(2, jnp.float32), jnp.ones(2, jnp.float64)])
  assert _global_norm.squared_norms([]) == []


def test_opt_in_arguments_are_checked(monkeypatch):
  with pytest.raises(TypeError, match="private_partitioning must be a bool or None, got int"):
    _global_norm.squared_norms([jnp.ones(2)], private_partitioning=1)
  monkeypatch.setenv(_global_norm.PRIVATE_GLOBAL_NORM_ENV, "yes")
  with pytest.raises(ValueError, match="ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM must be .* got 'yes'"):
    _global_norm.squared_norms([jnp.ones(2)])
  for value, requested in (("", False), ("0", False), ("1", True)):
    monkeypatch.setenv(_global_norm.PRIVATE_GLOBAL_NORM_ENV, value)
    assert _global_norm.private_partitioning_requested() is requested


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_opt_in_on_an_untested_jax_warns_and_takes_the_public_norm(monkeypatch, how):
  monkeypatch.setattr(_global_norm, "PRIVATE_TESTED_JAX_VERSIONS", ("0.0.0",))
  kwargs = {"private_partitioning": True} if how == "argument" else {}
  if how == "environment":
    monkeypatch.setenv(_global_norm.PRIVATE_GLOBAL_NORM_ENV, "1")
  a = jnp.arange(6.0).reshape(2, 3)
  b = jnp.asarray([1 + 2j, 3 - 1j])
  with pytest.warns(
    _global_norm.PrivateGlobalNormUnavailableWarning,
    match=rf"tested on jax 0\.0\.0 only, not on the installed jax {jax.__version__}",
  ):
    got = jax.jit(lambda a, b: jnp.stack(_global_norm.squared_norms([a, b], **kwargs)))(a, b)
  np.testing.assert_array_equal(got, [55.0, 15.0])  # 0+1+4+9+16+25, 1+4+9+1
  # The public norm: plain sums, no custom call.
  text = jax.jit(lambda a: _global_norm.squared_norms([a], private_partitioning=False)[0]).lower(a)
  assert "custom_call" not in text.as_text()


def test_no_warning_without_the_opt_in(monkeypatch, recwarn):
  monkeypatch.setattr(_global_norm, "PRIVATE_TESTED_JAX_VERSIONS", ("0.0.0",))
  monkeypatch.delenv(_global_norm.PRIVATE_GLOBAL_NORM_ENV, raising=False)
  _global_norm.squared_norms([jnp.ones(3)])
  assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@PINNED
def test_opt_in_is_the_plain_computation_on_one_device():
  # One device: custom_partitioning lowers to the plain sums. Eager, jit, vmap, jvp and grad.
  norms = _global_norm._private_norms()
  plain = _global_norm._plain
  a = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
  b = jnp.asarray([1 + 2j, 3 - 1j], jnp.complex64)
  np.testing.assert_array_equal(norms(a, b), [55.0, 15.0])
  for fn in (norms, jax.jit(norms)):
    np.testing.assert_array_equal(fn(a, b), plain(a, b))
  with enable_x64(False):  # the custom call only exists on several devices
    assert "custom_call" not in jax.jit(norms).lower(a, b).compile().as_text()
  batched = jax.vmap(norms, in_axes=(0, None))(a, b)
  np.testing.assert_array_equal(batched, [[5.0, 15.0], [50.0, 15.0]])
  tangent = jnp.ones_like(a)
  got = jax.jvp(lambda x: norms(x, b), (a,), (tangent,))
  want = jax.jvp(lambda x: plain(x, b), (a,), (tangent,))
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)
  np.testing.assert_array_equal(jax.grad(lambda x: norms(x, b)[0])(a), 2 * a)
  assert _global_norm.squared_norms([a], private_partitioning=True)[0] == 55.0


def _hlo(spec, ndim):
  mesh = AbstractMesh((4, 2), ("fsdp", "tp"))
  return _global_norm._hlo_sharding(NamedSharding(mesh, spec), ndim)


def _layout(hlo, shape, n=8):
  if isinstance(hlo, str):
    hlo = type(_hlo(P(), 0)).from_string(hlo)
  return _global_norm._shard_layout(hlo, shape, n)


@PINNED
def test_layout_of_a_fully_tiled_leaf_counts_every_device():
  first, valid = _layout(_hlo(P("fsdp", "tp"), 2), (16, 8))
  assert first.all()
  np.testing.assert_array_equal(valid, np.tile([4, 4], (8, 1)))


@PINNED
def test_layout_counts_one_copy_of_each_replicated_shard():
  # P("fsdp") on a (fsdp=4, tp=2) mesh: partitions 2k and 2k+1 hold the same rows.
  hlo = _hlo(P("fsdp"), 2)
  assert str(hlo) == "{devices=[4,1,2]<=[8] last_tile_dim_replicate}"
  first, _ = _layout(hlo, (8, 3))
  np.testing.assert_array_equal(first, [1, 0, 1, 0, 1, 0, 1, 0])
  # P("tp") (transposed device order): partitions 0 and 1 hold the two halves.
  hlo = _hlo(P("tp"), 1)
  assert str(hlo) == "{devices=[2,4]<=[4,2]T(1,0) last_tile_dim_replicate}"
  first, _ = _layout(hlo, (8,))
  np.testing.assert_array_equal(first, [1, 1, 0, 0, 0, 0, 0, 0])
  first, valid = _layout(_hlo(P(), 2), (3, 2))
  np.testing.assert_array_equal(first, [1, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(valid, np.tile([3, 2], (8, 1)))


@PINNED
def test_layout_of_uneven_shards_marks_the_padding():
  # 7 rows over 4 shards of 2: the last shard holds 1 row; 7 entries over 8 shards of 1: the
  # last shard is all padding.
  _, valid = _layout(_hlo(P("fsdp"), 2), (7, 3))
  np.testing.assert_array_equal(valid[:, 0], [2, 2, 2, 2, 2, 2, 1, 1])
  np.testing.assert_array_equal(valid[:, 1], 3)
  first, valid = _layout(_hlo(P(("fsdp", "tp")), 1), (7,))
  assert first.all()
  np.testing.assert_array_equal(valid[:, 0], [1, 1, 1, 1, 1, 1, 1, 0])


@PINNED
@pytest.mark.parametrize(
  "hlo", ["{maximal device=3}", "{devices=[2,4]<=[8] last_tile_dims={manual}}"]
)
def test_layout_refuses_maximal_and_manual_shardings(hlo):
  assert _layout(hlo, (8,)) is None
