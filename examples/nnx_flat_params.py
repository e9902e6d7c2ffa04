"""A Flax NNX model whose parameters live in one flat buffer, trained with ``nnx.Optimizer``.

:func:`adadelta_optax.flatten_params` keeps a tree's leaves as one 1-D buffer per dtype and gives
back ``unflatten``, which rebuilds the tree inside the forward pass. Here an MLP holds a single
``nnx.Param``, the float32 buffer, and rebuilds its weights from it on every call. Gradients,
the optimizer state and the update are then one buffer each: the jitted step takes and returns a
handful of arrays instead of one per layer. Differentiating through ``unflatten`` costs one
concatenate (O(params)), so nothing else changes: the script trains the same MLP, from the same
initial weights on the same data, once flat and once as an ordinary tree of ``nnx.Param``, and
prints both losses side by side (they agree to float32 rounding).

When it pays: the flat layout removes a per-buffer cost of the jitted step, which matters for
trees of hundreds or thousands of small leaves (a deep narrow network, many biases and norms). For
a few large leaves, like this MLP, it changes nothing, and it compiles more slowly (XLA compiles
one slice of the buffer per leaf). ``benchmarks/bench_flat.py`` measures both sides.

Usage (from the repository root)::

  python examples/nnx_flat_params.py              # 8 hidden layers of 32, 40 steps
  python examples/nnx_flat_params.py --depth 30 --steps 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import adadelta_optax


def init_params(sizes: list[int], seed: int) -> dict[str, jax.Array]:
  """Glorot-uniform weights and zero biases, ``w00, b00, w01, b01, ...`` (sorted = layer order)."""
  rng = np.random.default_rng(seed)
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    params[f"w{i:02d}"] = jnp.asarray(rng.uniform(-limit, limit, (fan_in, fan_out)), jnp.float32)
    params[f"b{i:02d}"] = jnp.zeros((fan_out,), jnp.float32)
  return params


def forward(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  """The MLP on a tree of weights: tanh hidden layers, linear output (the logits)."""
  layers = len(params) // 2
  for i in range(layers):
    x = x @ params[f"w{i:02d}"] + params[f"b{i:02d}"]
    if i < layers - 1:
      x = jnp.tanh(x)
  return x


class FlatMLP(nnx.Module):
  """The MLP with one ``nnx.Param``: the float32 buffer of all its weights."""

  def __init__(self, params: dict[str, jax.Array]) -> None:
    buffers, self.unflatten = adadelta_optax.flatten_params(params)
    self.flat = nnx.Param(buffers["float32"])

  def weights(self) -> dict[str, jax.Array]:
    return self.unflatten({"float32": self.flat[...]})

  def __call__(self, x: jax.Array) -> jax.Array:
    return forward(self.weights(), x)


class TreeMLP(nnx.Module):
  """The same MLP with one ``nnx.Param`` per weight matrix and bias (the usual layout)."""

  def __init__(self, params: dict[str, jax.Array]) -> None:
    self.params = nnx.Dict({name: nnx.Param(value) for name, value in params.items()})

  def weights(self) -> dict[str, jax.Array]:
    return {name: param[...] for name, param in self.params.items()}

  def __call__(self, x: jax.Array) -> jax.Array:
    return forward(self.weights(), x)


def synthetic_data(inputs: int, classes: int, batch: int, seed: int) -> tuple[jax.Array, ...]:
  """Gaussian inputs labelled by a random linear teacher (learnable, not trivially)."""
  rng = np.random.default_rng(seed + 1)
  x = rng.normal(size=(batch, inputs)).astype(np.float32)
  teacher = rng.normal(size=(inputs, classes)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(np.argmax(x @ teacher, axis=1).astype(np.int32))


def loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> Any:
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)
  return loss


def train(
  make_model: Callable[[], nnx.Module], data: tuple[jax.Array, ...], steps: int, args: Any
) -> tuple[list[float], dict[str, np.ndarray]]:
  model = make_model()
  tx = adadelta_optax.adadelta(args.learning_rate, args.rho, args.epsilon)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  losses = [float(train_step(model, optimizer, *data)) for _ in range(steps)]
  return losses, {name: np.asarray(value) for name, value in model.weights().items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--depth", type=int, default=8, help="hidden layers")
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--learning-rate", type=float, default=1.0)
  parser.add_argument("--rho", type=float, default=0.95)
  parser.add_argument("--epsilon", type=float, default=1e-6)
  parser.add_argument("--quiet", action="store_true", help="print the summary only")
  args = parser.parse_args(argv)
  inputs, classes = 16, 4
  sizes = [inputs] + [args.width] * args.depth + [classes]
  init = init_params(sizes, args.seed)
  data = synthetic_data(inputs, classes, args.batch, args.seed)

  start = time.perf_counter()
  flat_losses, flat_final = train(lambda: FlatMLP(init), data, args.steps, args)
  tree_losses, tree_final = train(lambda: TreeMLP(init), data, args.steps, args)
  elapsed = time.perf_counter() - start

  leaves = len(init)
  n = sum(int(np.size(v)) for v in init.values())
  print(f"MLP {'-'.join(map(str, sizes))}: {leaves} leaves, {n:,} params in one float32 buffer")
  if not args.quiet:
    print(" step | loss (flat params) | loss (tree of params)")
    for t in sorted({0, *range(9, args.steps, 10), args.steps - 1}):
      print(f" {t + 1:4d} | {flat_losses[t]:18.6f} | {tree_losses[t]:21.6f}")
  gap = max(abs(a - b) / abs(b) for a, b in zip(flat_losses, tree_losses, strict=True))
  print(
    f"loss {flat_losses[0]:.4f} -> {flat_losses[-1]:.4f} in {args.steps} steps; flat and tree "
    f"differ by at most {gap:.1e} (relative); both trained in {elapsed:.1f} s"
  )
  return {
    "flat": flat_losses,
    "tree": tree_losses,
    "final_params": (flat_final, tree_final),
    "leaves": leaves,
    "params": n,
  }


if __name__ == "__main__":
  main()
