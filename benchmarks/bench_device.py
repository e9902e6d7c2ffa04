"""The step on the default device (GPU when present) against that device's copy bandwidth.

The limit is measured in the same run: the device's copy bandwidth (read + write of a 1 GiB
float32 buffer, ``x + 1`` jitted and donated), so a step's floor is the bytes it must move at
that bandwidth: 28 B per float32 parameter (read gradient, param and both accumulators, write
param and both accumulators), 20 B for a bfloat16 parameter with float32 state. Each case times,
interleaved, jitted with params and state donated and the gradient passed in:

- ours ``apply_gradients``; ours ``update`` + ``optax.apply_updates``; ``optax.adadelta``'s
  ``update`` + ``optax.apply_updates``; for trees, ours with ``state_layout="flat"``;

on one big leaf, ResNet-50's tree, GPT-2 medium's and GPT-2 XL's trees, 2,000 x 1,000, and GPT-2
medium with bfloat16 params and float32 state. It prints median ms, the fraction of copy bandwidth
each reaches (floor time / time), optax's time over ours, and compile times, and writes them as
markdown and JSON. It runs on CPU too (``--quick``), where the library's C++ kernel serves the
default path; on other devices the fused JAX step does.

Usage::

  python benchmarks/bench_device.py                      # every case (a few minutes on a GPU)
  bash benchmarks/device_check.sh                        # every case, each under a time limit
  python benchmarks/bench_device.py --quick              # small sizes, to check it works
  python benchmarks/bench_device.py --case "GPT-2 XL"    # one case (repeatable)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _progress import progress
from _trees import gpt2_shapes, many_leaves_shapes, resnet50_shapes
from bench_step import EPS, LR, RHO, JaxRunner, make_optax_style, median_times

import adadelta_optax


def copy_bandwidth(n_bytes: int, reps: int) -> float:
  """Bytes per second of ``x + 1`` over a float32 buffer of ``n_bytes`` (read + write), donated
  so that it runs in place: the output needs no fresh allocation (on CPU, page faults)."""
  f = jax.jit(lambda x: x + 1, donate_argnums=0)
  x = jax.block_until_ready(f(jnp.zeros((n_bytes // 4,), jnp.float32)))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    x = jax.block_until_ready(f(x))
    times.append(time.perf_counter() - start)
  return 2 * n_bytes / float(np.median(times))


def steps(shapes: list[tuple[int, ...]], dtype: Any) -> dict[str, JaxRunner]:
  """The three steps of a case, each jitted with params and state donated, gradient passed in."""

  def fresh() -> dict[str, jax.Array]:
    return {f"p{i:04d}": jnp.full(s, 0.5, dtype) for i, s in enumerate(shapes)}

  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), fresh())
  state_dtype = jnp.float32 if dtype != jnp.float32 else None
  ours = adadelta_optax.adadelta(LR, RHO, EPS, state_dtype=state_dtype)
  p = fresh()
  runs = {
    "ours: apply_gradients": JaxRunner(
      lambda p, s, g: ours.apply_gradients(g, s, p), (p, ours.init(p)), (grads,)
    ),
    "ours: update+apply_updates": make_optax_style(ours, fresh()),
    "optax: update+apply_updates": make_optax_style(optax.adadelta(LR, RHO, EPS), fresh()),
  }
  if len(shapes) > 1:
    flat = adadelta_optax.adadelta(LR, RHO, EPS, state_dtype=state_dtype, state_layout="flat")
    runs["ours, flat state: update+apply_updates"] = make_optax_style(flat, fresh())
  return runs


def cases(quick: bool) -> dict[str, tuple[list[tuple[int, ...]], Any]]:
  if quick:
    return {"1M leaf": ([(1_000_000,)], jnp.float32), "200 x 1,000": ([(1000,)] * 200, jnp.float32)}
  return {
    "256M leaf": ([(256 * 2**20,)], jnp.float32),
    "ResNet-50": (resnet50_shapes(), jnp.float32),
    "GPT-2 medium": (gpt2_shapes(24, 1024), jnp.float32),
    "GPT-2 XL": (gpt2_shapes(48, 1600), jnp.float32),
    "2,000 x 1,000": (many_leaves_shapes(), jnp.float32),
    "GPT-2 medium, bf16 params": (gpt2_shapes(24, 1024), jnp.bfloat16),
  }


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
  parser.add_argument("--case", action="append", help="only this case (repeatable)")
  parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case")
  parser.add_argument("--min-reps", type=int, default=10)
  parser.add_argument("--out", type=Path, default=Path("runs/bench_device"))
  args = parser.parse_args(argv)
  spec = cases(args.quick)
  if args.case:
    unknown = set(args.case) - set(spec)
    if unknown:
      parser.error(f"--case {sorted(unknown)}: not one of {list(spec)}")
    spec = {name: spec[name] for name in args.case}
  bandwidth = copy_bandwidth(2**24 if args.quick else 2**30, 20)
  rows = []
  for name, (shapes, dtype) in progress(spec.items(), desc="cases"):
    n = sum(int(np.prod(s)) for s in shapes)
    floor_ms = 1e3 * n * (28 if dtype == jnp.float32 else 20) / bandwidth
    runs = steps(shapes, dtype)
    ms = median_times(runs, args.budget, args.min_reps)
    compile_s = {k: r.compile_s for k, r in runs.items()}
    rows.append(
      {
        "case": name,
        "leaves": len(shapes),
        "params": n,
        "floor_ms": floor_ms,
        "ms": ms,
        "compile_s": compile_s,
      }
    )
    del runs
  lines = [
    f"Copy bandwidth {bandwidth / 1e9:.0f} GB/s "
    f"({jax.devices()[0].device_kind}, jax {jax.__version__}).",
    "",
    "| case | step | median ms | floor ms | of copy bandwidth | optax / this | compile s |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    label = f"{row['case']} ({row['leaves']} leaves, {row['params'] / 1e6:.1f}M)"
    theirs = row["ms"]["optax: update+apply_updates"]
    for impl, ms in row["ms"].items():
      lines.append(
        f"| {label} | {impl} | {ms:.2f} | {row['floor_ms']:.2f} "
        f"| {100 * row['floor_ms'] / ms:.0f}% | {theirs / ms:.2f}x | {row['compile_s'][impl]:.1f} |"
      )
      label = ""
  table = "\n".join(lines)
  meta = {
    "jax": jax.__version__,
    "device": jax.devices()[0].device_kind,
    "date": time.strftime("%Y-%m-%d"),
    "copy_GBps": bandwidth / 1e9,
  }
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "bench_device.md").write_text(table + "\n")
  (args.out / "bench_device.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
  print(table)


if __name__ == "__main__":
  main()
