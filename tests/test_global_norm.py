"""The squared norms of the global clipping norm: one-device numbers, public JAX only, and the
removed private opt-in.

The sharded behaviour (all-reduce counts on 8 simulated devices) is in tests/test_sharding.py.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adadelta_optax
from adadelta_optax.core import _clipping, _global_norm


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


def _private_attributes(path: Path) -> list[str]:
  """Every ``x._name`` in it where ``x`` is not ``self``, ``cls``, ``sys`` or one of the
  package's own modules (``_kernel._load``), other than NamedTuple's ``_replace`` and kin: a
  private attribute of someone else's object (JAX's)."""
  tree = ast.parse(path.read_text(), str(path))
  own = {"self", "cls", "sys"}  # sys._getframe: Python's documented API
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adadelta_optax"):
      own |= {a.asname or a.name for a in node.names}
  return [
    f"{path.name}:{node.lineno}:{ast.unparse(node)}"
    for node in ast.walk(tree)
    if isinstance(node, ast.Attribute)
    and node.attr.startswith("_")
    and not node.attr.startswith("__")
    and node.attr not in ("_replace", "_fields", "_asdict", "_make")  # NamedTuple's public API
    and not (isinstance(node.value, ast.Name) and node.value.id in own)
  ]


def test_package_reads_no_private_attribute_of_jax_objects(tmp_path):
  sources = sorted(Path(adadelta_optax.__file__).parent.rglob("*.py"))
  assert [hit for path in sources for hit in _private_attributes(path)] == []
  probe = tmp_path / "probe.py"
  probe.write_text(
    "from adadelta_optax.core import _kernel\n_kernel._load()\nself._x\n"
    "sharding._device_assignment\njax.devices()[0]._private\n"
  )
  assert _private_attributes(probe) == [
    "probe.py:4:sharding._device_assignment",
    "probe.py:5:jax.devices()[0]._private",
  ]


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


def test_the_removed_opt_in_warns_once_and_changes_nothing(monkeypatch):
  """ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM (the removed opt-in, which read JAX internals): set, it
  warns once per process and the public norm is computed; unset or "0", no warning."""
  a = jnp.arange(6.0).reshape(2, 3)
  b = jnp.asarray([1 + 2j, 3 - 1j])
  norms = jax.jit(lambda a, b: jnp.stack(_global_norm.squared_norms([a, b])))
  monkeypatch.delenv(_global_norm.REMOVED_PRIVATE_GLOBAL_NORM_ENV, raising=False)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    np.testing.assert_array_equal(norms(a, b), [55.0, 15.0])  # 0+1+4+9+16+25, 1+4+9+1
  _global_norm._warn_removed_opt_in.cache_clear()
  monkeypatch.setenv(_global_norm.REMOVED_PRIVATE_GLOBAL_NORM_ENV, "1")
  with pytest.warns(DeprecationWarning, match="ADADELTA_OPTAX_PRIVATE_GLOBAL_NORM is set.*removed"):
    got = _global_norm.squared_norms([a, b])
  np.testing.assert_array_equal(jnp.stack(got), [55.0, 15.0])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _global_norm.squared_norms([a, b])  # once per process
  text = jax.jit(lambda a: _global_norm.squared_norms([a])[0]).lower(a).as_text()
  assert "custom_call" not in text


def test_the_removed_warning_name_resolves_until_0_3():
  with pytest.warns(DeprecationWarning, match="never issued.*goes in 0.3"):
    category = adadelta_optax.distributed.PrivateGlobalNormUnavailableWarning
  assert issubclass(category, UserWarning)
  assert "PrivateGlobalNormUnavailableWarning" not in adadelta_optax.distributed.__all__
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    adadelta_optax.distributed.nope  # noqa: B018
