"""The squared norms of the global clipping norm: layouts, one-device numbers, transformations.

The sharded behaviour (one all-reduce on 8 simulated devices) is in tests/test_sharding.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.lib import xla_client

from adadelta_optax import _clipping, _global_norm


def _layout(hlo, shape, n=8):
  return _global_norm._shard_layout(xla_client.HloSharding.from_string(hlo), shape, n)


def test_layout_of_a_fully_tiled_leaf_counts_every_device():
  first, valid = _layout("{devices=[4,2]<=[8]}", (16, 8))
  assert first.all()
  np.testing.assert_array_equal(valid, np.tile([4, 4], (8, 1)))


def test_layout_counts_one_copy_of_each_replicated_shard():
  # P("fsdp") on a (fsdp=4, tp=2) mesh: partitions 2k and 2k+1 hold the same rows.
  first, _ = _layout("{devices=[4,1,2]<=[8] last_tile_dim_replicate}", (8, 3))
  np.testing.assert_array_equal(first, [1, 0, 1, 0, 1, 0, 1, 0])
  # P("tp") (transposed device order): partitions 0 and 1 hold the two halves.
  first, _ = _layout("{devices=[2,4]<=[4,2]T(1,0) last_tile_dim_replicate}", (8,))
  np.testing.assert_array_equal(first, [1, 1, 0, 0, 0, 0, 0, 0])
  first, valid = _layout("{replicated}", (3, 2))
  np.testing.assert_array_equal(first, [1, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(valid, np.tile([3, 2], (8, 1)))


def test_layout_of_uneven_shards_marks_the_padding():
  # 7 rows over 4 shards of 2: the last shard holds 1 row; 7 entries over 8 shards of 1: the
  # last shard is all padding.
  _, valid = _layout("{devices=[4,1,2]<=[8] last_tile_dim_replicate}", (7, 3))
  np.testing.assert_array_equal(valid[:, 0], [2, 2, 2, 2, 2, 2, 1, 1])
  np.testing.assert_array_equal(valid[:, 1], 3)
  first, valid = _layout("{devices=[8]<=[8]}", (7,))
  assert first.all()
  np.testing.assert_array_equal(valid[:, 0], [1, 1, 1, 1, 1, 1, 1, 0])


@pytest.mark.parametrize(
  "hlo", ["{maximal device=3}", "{devices=[2,4]<=[8] last_tile_dims={manual}}"]
)
def test_layout_refuses_maximal_and_manual_shardings(hlo):
  assert _layout(hlo, (8,)) is None


def _old_global_norm_scale(grads, c):
  """global_norm_scale as it was before the squared norms became one primitive."""
  leaves = jax.tree.leaves(grads)
  dtype = jnp.result_type(*[_clipping._real_dtype(leaf) for leaf in leaves])
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


def test_leaves_must_share_one_real_dtype():
  with pytest.raises(ValueError, match="one real dtype"):
    _global_norm.squared_norms([jnp.ones(2, jnp.float32), jnp.ones(2, jnp.float64)])
  assert _global_norm.squared_norms([]) == []


def test_primitive_is_the_plain_computation_on_one_device():
  # The primitive itself (a multi-device process binds it): eager, jit, vmap, jvp and grad.
  bind = _global_norm.squared_norms_p.bind
  plain = _global_norm._plain
  a = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
  b = jnp.asarray([1 + 2j, 3 - 1j], jnp.complex64)
  for fn in (bind, jax.jit(bind)):
    np.testing.assert_array_equal(fn(a, b), plain(a, b))
  assert "custom_call" not in jax.jit(bind).lower(a, b).as_text()
  batched = jax.vmap(bind, in_axes=(0, None))(a, b)
  np.testing.assert_array_equal(batched, jax.vmap(plain, in_axes=(0, None))(a, b))
  tangent = jnp.ones_like(a)
  got = jax.jvp(lambda x: bind(x, b), (a,), (tangent,))
  want = jax.jvp(lambda x: plain(x, b), (a,), (tangent,))
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)
  np.testing.assert_array_equal(
    jax.grad(lambda x: bind(x, b)[0])(a), jax.grad(lambda x: plain(x, b)[0])(a)
  )
