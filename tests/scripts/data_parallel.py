"""Data-parallel Adadelta: ``python data_parallel.py OUT RANK NPROC PORT`` (NPROC=0: one process).

Each of NPROC processes holds 1/NPROC of every batch; the gradient is the sum of per-shard
gradient sums (one all-reduce across processes) over the batch size. With NPROC=0 one process
computes the same sums shard by shard itself. Writes params and optimizer state to OUT (.npz).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

SHARDS, BATCH, STEPS = 2, 32, 24


def data(step):
  rng = np.random.default_rng(step)
  x = rng.normal(size=(BATCH, 6)).astype(np.float32)
  y = (x @ np.linspace(-1, 1, 6 * 3).reshape(6, 3) + 0.1).astype(np.float32)
  return x, y


def loss_sum(params, x, y):
  hidden = jnp.tanh(x @ params["w1"] + params["b1"])
  return jnp.sum((hidden @ params["w2"] - y) ** 2)


def main(out, rank, nproc, port):
  if nproc:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", nproc, rank, initialization_timeout=60)
    assert jax.process_count() == nproc and jax.device_count() == nproc
  import adadelta_optax  # after initialize: the package must not touch the backend before

  rng = np.random.default_rng(0)
  params = {
    "w1": rng.normal(size=(6, 16)).astype(np.float32) * 0.3,
    "b1": np.zeros(16, np.float32),
    "w2": rng.normal(size=(16, 3)).astype(np.float32) * 0.3,
  }
  # "fused" everywhere: the single process would otherwise take the CPU kernel, which may round
  # differently in the last bit from the fused JAX step that a multi-device process runs.
  tx = adadelta_optax.adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-6, implementation="fused")
  shard = BATCH // SHARDS
  if nproc:
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((nproc,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(params, replicated)
    state = jax.jit(tx.init, out_shardings=adadelta_optax.distributed.state_shardings(tx, params))(
      params
    )

    # Each process: its shard's gradient sum (the same compiled program as the one-process run),
    # then one cross-process sum (an all-reduce) and the optimizer step on replicated arrays.
    shard_grad = jax.jit(jax.grad(loss_sum))
    stacked = NamedSharding(mesh, P("data"))
    mean = jax.jit(
      lambda parts: jax.tree.map(lambda g: jnp.sum(g, axis=0) / BATCH, parts),
      out_shardings=replicated,
    )
    apply = jax.jit(tx.apply_gradients)
    local_params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)
    for t in range(STEPS):
      x, y = data(t)
      local = slice(rank * shard, (rank + 1) * shard)
      part = shard_grad(local_params, x[local], y[local])
      parts = jax.tree.map(
        lambda g: jax.make_array_from_process_local_data(stacked, np.asarray(g)[None]), part
      )
      params, state = apply(mean(parts), state, params)
      local_params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)
  else:
    state = tx.init(params)

    # Each shard's gradient sum by its own compiled program, as each process computes it.
    shard_grad = jax.jit(jax.grad(loss_sum))
    mean = jax.jit(lambda parts: jax.tree.map(lambda *g: sum(g[1:], g[0]) / BATCH, *parts))
    apply = jax.jit(tx.apply_gradients)
    for t in range(STEPS):
      x, y = data(t)
      parts = [
        shard_grad(params, x[i * shard : (i + 1) * shard], y[i * shard : (i + 1) * shard])
        for i in range(SHARDS)
      ]
      params, state = apply(mean(parts), state, params)
  leaves = jax.tree_util.tree_flatten_with_path((params, state))[0]
  arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
  np.savez(out, **arrays)
  if nproc:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
