"""Adadelta under ``jax.vmap`` (ensembles, per-model optimizers): who should serve the batch?

Under :func:`jax.vmap` the default path's C++ kernel takes the whole batch in one call (one
hyperparameter row per problem; see ``adadelta_optax.core._kernel._batched_kernel_call``). The
alternative is to let fused JAX take over under vmap (``implementation="fused"``). This script
times both side by side in one run, interleaved (as ``bench_step.py``), with ``optax.adadelta``
for scale: jitted steps over B problems, every input batched (state from ``jax.vmap(tx.init)``),
params and state donated.

Usage::

  pip install -e ".[bench]"
  python benchmarks/bench_vmap.py            # about a minute on 2 cores
  python benchmarks/bench_vmap.py --quick    # small sizes, to check it works
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from bench_step import JaxRunner, Runner, median_times  # noqa: E402
from tqdm import tqdm  # noqa: E402

import adadelta_optax  # noqa: E402

LR, RHO, EPS = 1.0, 0.95, 1e-6


def ensemble(batch: int, shapes: list[tuple[int, ...]]) -> dict[str, jax.Array]:
  return {
    f"leaf{i:03d}": jnp.full((batch, *shape), 0.5, jnp.float32) for i, shape in enumerate(shapes)
  }


def apply_runner(params: Any, implementation: str) -> Runner:
  params = jax.tree.map(jnp.copy, params)  # each runner donates its own buffers
  tx = adadelta_optax.adadelta(LR, RHO, EPS, implementation=implementation)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  step = jax.vmap(lambda p, s, g: tx.apply_gradients(g, s, p))
  return JaxRunner(step, (params, jax.vmap(tx.init)(params)), (grads,))


def update_runner(params: Any, tx: optax.GradientTransformation) -> Runner:
  params = jax.tree.map(jnp.copy, params)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)

  def one(p, s, g):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s

  return JaxRunner(jax.vmap(one), (params, jax.vmap(tx.init)(params)), (grads,))


CASES = {
  "8 x 1.05M (4 leaves)": (8, [(1024, 1000), (1000,), (1000, 24), (24,)]),
  "64 x 16K (4 leaves)": (64, [(128, 120), (120,), (120, 8), (8,)]),
  "4 x 4.2M (32 leaves)": (4, [(256, 512)] * 32),
}
QUICK = {"4 x 66K (4 leaves)": (4, [(256, 256), (256,), (256, 4), (4,)])}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
  parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case")
  parser.add_argument("--min-reps", type=int, default=9)
  parser.add_argument("--out", type=Path, default=Path("runs/bench/bench_vmap.md"))
  args = parser.parse_args(argv)
  rows = [
    "| case | implementation | median ms | vs kernel | optax / this |",
    "|---|---|---|---|---|",
  ]
  for name, (batch, shapes) in tqdm((QUICK if args.quick else CASES).items(), desc="cases"):
    params = ensemble(batch, shapes)
    runners = {
      "kernel serves the batch: apply_gradients": apply_runner(params, "auto"),
      "fused JAX takes over: apply_gradients": apply_runner(params, "fused"),
      "kernel serves the batch: update+apply_updates": update_runner(
        params, adadelta_optax.adadelta(LR, RHO, EPS)
      ),
      "fused JAX takes over: update+apply_updates": update_runner(
        params, adadelta_optax.adadelta(LR, RHO, EPS, implementation="fused")
      ),
      "optax.adadelta": update_runner(params, optax.adadelta(LR, RHO, EPS)),
    }
    times = median_times(runners, args.budget, args.min_reps)
    kernel = times["kernel serves the batch: apply_gradients"]
    for i, (label, ms) in enumerate(times.items()):
      rows.append(
        f"| {name if i == 0 else ''} | {label} | {ms:.2f} | {ms / kernel:.2f}x | "
        f"{times['optax.adadelta'] / ms:.1f}x |"
      )
  table = "\n".join(rows)
  print(table)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(table + "\n")


if __name__ == "__main__":
  main()
