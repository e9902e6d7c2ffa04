"""Compile time of the jitted, donated optimizer step, side by side with a plain-add step and optax.

For each parameter tree (ResNet-50's 161 tensors, GPT-2 medium's 292 and GPT-2 XL's 580, and
2,000 leaves of 1,000 floats), on the default device, it times trace + lower + compile
(``jax.jit(step, donate_argnums=...).trace(...).lower().compile()``) of:

- plain adds: ``p + g`` over the tree, params donated: the least any optimizer step compiles;
- ours: ``update`` + ``optax.apply_updates`` (what ``nnx.Optimizer`` and linen's ``TrainState``
  run), params and state donated, the gradient passed in;
- ours: ``apply_gradients`` (the fused step);
- ours with ``state_layout="flat"``: ``update`` + ``optax.apply_updates``;
- optax: ``optax.adadelta``'s ``update`` + ``optax.apply_updates``.

The trees are abstract (:class:`jax.ShapeDtypeStruct`), so GPT-2 XL needs no memory. Every
measurement starts from empty caches (:func:`jax.clear_caches`), rounds interleave the variants,
and the table gives the median per variant and its ratio to plain adds (and optax to ours).

With ``--before DIR`` (a checkout of another version, its kernel built) it compares the two
versions instead: each round runs this script once per version, in a fresh process whose
``PYTHONPATH`` is that checkout, alternating which goes first, and prints each step's median
compile time after over before.

Usage::

  python benchmarks/bench_compile.py            # all trees, 3 rounds (a few minutes on 2 cores)
  python benchmarks/bench_compile.py --quick    # ResNet-50 only, 1 round
  git worktree add /tmp/before COMMIT       # then build its kernel there, or copy the .so:
  cp adadelta_optax/_adadelta_cpu.so /tmp/before/adadelta_optax/
  python benchmarks/bench_compile.py --before /tmp/before --tree ResNet-50 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _progress import progress
from _trees import gpt2_shapes, many_leaves_shapes, resnet50_shapes
from bench_step import protocol_step

import adadelta_optax

TREES = {
  "ResNet-50": resnet50_shapes,
  "GPT-2 medium": lambda: gpt2_shapes(24, 1024),
  "GPT-2 XL": lambda: gpt2_shapes(48, 1600),
  "2,000 x 1,000": many_leaves_shapes,
}


def _abstract(shapes: list[tuple[int, ...]]) -> dict[str, jax.ShapeDtypeStruct]:
  return {f"p{i:04d}": jax.ShapeDtypeStruct(s, jnp.float32) for i, s in enumerate(shapes)}


def variants() -> dict[str, Callable[[Any], float]]:
  """name -> function of the abstract params giving one compile time in seconds."""

  def timed(step: Callable[..., Any], args: tuple[Any, ...], donate: tuple[int, ...]) -> float:
    jax.clear_caches()
    start = time.perf_counter()
    jax.jit(step, donate_argnums=donate).trace(*args).lower().compile()
    return time.perf_counter() - start

  ours = adadelta_optax.adadelta(1.0, 0.95, 1e-7)
  theirs = optax.adadelta(1.0, 0.95, 1e-7)

  def plain(p: Any) -> float:
    return timed(lambda p, g: jax.tree.map(jnp.add, p, g), (p, p), (0,))

  def ours_protocol(p: Any) -> float:
    return timed(protocol_step(ours), (p, jax.eval_shape(ours.init, p), p), (0, 1))

  def ours_apply(p: Any) -> float:
    step = lambda p, s, g: ours.apply_gradients(g, s, p)  # noqa: E731
    return timed(step, (p, jax.eval_shape(ours.init, p), p), (0, 1))

  def optax_protocol(p: Any) -> float:
    return timed(protocol_step(theirs), (p, jax.eval_shape(theirs.init, p), p), (0, 1))

  def ours_flat(p: Any) -> float:
    return timed(protocol_step(flat), (p, jax.eval_shape(flat.init, p), p), (0, 1))

  flat = adadelta_optax.adadelta(1.0, 0.95, 1e-7, state_layout="flat")
  return {
    "plain adds": plain,
    "ours: update+apply_updates": ours_protocol,
    "ours: apply_gradients": ours_apply,
    "ours, flat state: update+apply_updates": ours_flat,
    "optax: update+apply_updates": optax_protocol,
  }


def markdown(rows: list[dict[str, Any]]) -> str:
  lines = [
    "| tree | leaves | step | compile s | vs plain adds | optax / this |",
    "|---|---|---|---|---|---|",
  ]
  for row in rows:
    label = f"{row['tree']} | {row['leaves']}"
    plain, theirs = row["s"]["plain adds"], row["s"]["optax: update+apply_updates"]
    for name, s in row["s"].items():
      lines.append(f"| {label} | {name} | {s:.2f} | {s / plain:.2f}x | {theirs / s:.2f}x |")
      label = " | "
  return "\n".join(lines)


def compare(before: Path, names: list[str], rounds: int) -> None:
  """Median compile times of each step, this checkout over ``before``, alternating processes."""
  roots = {"before": before.resolve(), "after": Path(__file__).resolve().parents[1]}
  runs: dict[str, list[dict[str, dict[str, float]]]] = {"before": [], "after": []}
  for r in progress(range(rounds), desc="rounds"):
    for version in ("before", "after") if r % 2 == 0 else ("after", "before"):
      with tempfile.TemporaryDirectory() as out:
        tree_args = [arg for name in names for arg in ("--tree", name)]
        command = [sys.executable, __file__, "--rounds", "1", "--out", out, *tree_args]
        env = {**os.environ, "PYTHONPATH": str(roots[version])}
        subprocess.run(command, env=env, check=True, capture_output=True, cwd=tempfile.gettempdir())
        rows = json.loads((Path(out) / "bench_compile.json").read_text())["rows"]
        runs[version].append({row["tree"]: row["s"] for row in rows})
  lines = ["| tree | step | before s | after s | after / before |", "|---|---|---|---|---|"]
  for name in names:
    for step in runs["after"][0][name]:
      if step not in runs["before"][0][name]:
        continue  # a step the older version does not have
      b, a = (float(np.median([run[name][step] for run in runs[v]])) for v in ("before", "after"))
      lines.append(f"| {name} | {step} | {b:.2f} | {a:.2f} | {a / b:.2f}x |")
  print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="ResNet-50 only, one round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--tree", action="append", choices=list(TREES), help="repeatable")
  parser.add_argument("--out", type=Path, default=Path("runs/bench_compile"))
  parser.add_argument("--before", type=Path, help="a checkout of another version: compare them")
  args = parser.parse_args(argv)
  names = args.tree or (["ResNet-50"] if args.quick else list(TREES))
  rounds = 1 if args.quick else args.rounds
  if args.before is not None:
    compare(args.before, names, rounds)
    return
  fns = variants()
  rows = []
  for name in progress(names, desc="trees"):
    params = _abstract(TREES[name]())
    times: dict[str, list[float]] = {v: [] for v in fns}
    for r in range(rounds):
      order = list(fns)[r % len(fns) :] + list(fns)[: r % len(fns)]
      for variant in order:
        times[variant].append(fns[variant](params))
    rows.append(
      {
        "tree": name,
        "leaves": len(params),
        "s": {v: float(np.median(ts)) for v, ts in times.items()},
        "all_s": times,
      }
    )
  table = markdown(rows)
  meta = {
    "jax": jax.__version__,
    "optax": optax.__version__,
    "adadelta_optax": adadelta_optax.__version__,
    "device": str(jax.devices()[0].device_kind),
    "cpus": os.cpu_count(),
    "date": time.strftime("%Y-%m-%d"),
  }
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "bench_compile.md").write_text(table + "\n")
  (args.out / "bench_compile.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
  print(table)
  print(f"\n{meta}\nwrote {args.out}/bench_compile.md and .json")


if __name__ == "__main__":
  main()
