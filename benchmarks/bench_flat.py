"""The flat layout (``flatten_params``) in a training step, against the tree, side by side.

Every variant is one jitted training step with params and optimizer state donated: the gradient
of the same loss is taken inside the step, then the optimizer runs. Variants, timed in the same
run with interleaved rounds (``median_times`` of ``bench_step.py``):

- flat: the params are ``flatten_params``'s buffers; ``jax.grad`` of ``loss(unflatten(flat))``,
  then ``tx.apply_gradients`` on the flat gradient, with ``tx = adadelta_optax.adadelta(1.0,
  0.95, 1e-7)``;
- flat (old unflatten): the same with the slice-per-leaf ``unflatten`` of adadelta_optax 0.2.0,
  whose backward pass costs leaves x params (issue 15); skipped where that product would make a
  step take seconds (``--max-old-work``);
- tree: the same loss on the tree, ``jax.grad``, ``tx.apply_gradients``;
- tree update+apply_updates: ``tx.update`` then ``optax.apply_updates``, as ``nnx.Optimizer`` and
  linen's ``TrainState`` call them;
- optax: ``optax.adadelta(1.0, 0.95, 1e-7)``, ``update`` + ``apply_updates``, on the tree.

The loss, the same for all: ``0.5 * sum over leaves of sum(tanh(x) ** 2)``, one transcendental
and a few flops per element forward and backward, on every leaf (a stand-in for a model's forward
pass, without a batch: the point is what each layout adds around the per-element work).

Reported per variant: median ms, the ratio to the tree step (``tree = 1``), the speed-up over
optax (``optax ms / ms``), compile time (lower + compile, s), and from the compiled step XLA's
flops and bytes accessed per param and its temporaries (MB); XLA does not count what the CPU
kernel's custom call does (28 B per float32 param for every adadelta_optax variant). Written to
``--out`` (default ``runs/bench_flat``): ``bench_flat.md``, ``bench_flat.json``,
``bench_flat.png``.

Usage::

  python benchmarks/bench_flat.py                  # all cases, several minutes on 2 cores
  python benchmarks/bench_flat.py --quick          # small trees, to check it works
  python benchmarks/bench_flat.py --case ResNet-50 --case "300 x 1,000"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _trees import resnet50_shapes  # benchmarks/_trees.py, next to this script
from bench_step import JaxRunner, median_times
from tqdm import tqdm

import adadelta_optax

RHO, EPS, LR = 0.95, 1e-7, 1.0


def loss(tree: Any) -> jax.Array:
  return 0.5 * sum(jnp.sum(jnp.tanh(x) ** 2) for x in jax.tree.leaves(tree))


def tree_of(shapes: list[tuple[int, ...]]) -> dict[str, jax.Array]:
  return {f"p{i:04d}": jnp.full(shape, 0.5, jnp.float32) for i, shape in enumerate(shapes)}


def old_flatten_params(tree: Any) -> tuple[dict[str, jax.Array], Callable[[Any], Any]]:
  """adadelta_optax 0.2.0's flat layout (float32 trees only): one ``lax.slice`` per leaf."""
  leaves, treedef = jax.tree.flatten(tree)
  offsets = np.cumsum([0] + [int(np.size(x)) for x in leaves])
  shapes = [np.shape(x) for x in leaves]

  def unflatten(flat: dict[str, jax.Array]) -> Any:
    pieces = [
      jax.lax.slice(flat["float32"], (int(start),), (int(stop),)).reshape(shape)
      for start, stop, shape in zip(offsets[:-1], offsets[1:], shapes, strict=True)
    ]
    return jax.tree.unflatten(treedef, pieces)

  return {"float32": jnp.concatenate([jnp.ravel(x) for x in leaves])}, unflatten


def make_flat(shapes: list[tuple[int, ...]], flatten: Callable[..., Any]) -> JaxRunner:
  tx = adadelta_optax.adadelta(LR, RHO, EPS)
  flat, unflatten = flatten(tree_of(shapes))

  def step(p, s):
    grads = jax.grad(lambda f: loss(unflatten(f)))(p)
    return tx.apply_gradients(grads, s, p)

  return JaxRunner(step, (flat, tx.init(flat)), ())


def make_tree_apply(shapes: list[tuple[int, ...]]) -> JaxRunner:
  tx = adadelta_optax.adadelta(LR, RHO, EPS)
  params = tree_of(shapes)

  def step(p, s):
    return tx.apply_gradients(jax.grad(loss)(p), s, p)

  return JaxRunner(step, (params, tx.init(params)), ())


def make_tree_update(tx: optax.GradientTransformation, shapes: list[tuple[int, ...]]) -> JaxRunner:
  params = tree_of(shapes)

  def step(p, s):
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, updates), s

  return JaxRunner(step, (params, tx.init(params)), ())


def xla_cost(runner: JaxRunner, key: str) -> float:
  """XLA's count for the compiled step (without what the CPU kernel's custom call does)."""
  return max(float(runner.compiled.cost_analysis().get(key, 0.0)), 0.0)


def run_case(name: str, shapes: list[tuple[int, ...]], args: argparse.Namespace) -> dict[str, Any]:
  leaves, params = len(shapes), sum(int(np.prod(s)) for s in shapes)
  builders: dict[str, Callable[[], JaxRunner]] = {
    "flat": lambda: make_flat(shapes, adadelta_optax.flatten_params),
    "flat (old unflatten)": lambda: make_flat(shapes, old_flatten_params),
    "tree": lambda: make_tree_apply(shapes),
    "tree update+apply_updates": lambda: make_tree_update(
      adadelta_optax.adadelta(LR, RHO, EPS), shapes
    ),
    "optax": lambda: make_tree_update(optax.adadelta(LR, RHO, EPS), shapes),
  }
  skipped = {}
  if leaves * params > args.max_old_work:
    del builders["flat (old unflatten)"]
    skipped["flat (old unflatten)"] = (
      f"leaves x params = {leaves * params:.1e} > --max-old-work {args.max_old_work:.0e}"
    )
  runners = {}
  for key, build in tqdm(builders.items(), desc=f"{name}: compile", leave=False):
    runners[key] = build()
  times = median_times(runners, args.budget, args.min_reps)
  return {
    "case": name,
    "leaves": leaves,
    "params": params,
    "ms": times,
    "compile_s": {k: r.compile_s for k, r in runners.items()},
    "flops_per_param": {k: xla_cost(r, "flops") / params for k, r in runners.items()},
    "bytes_per_param": {k: xla_cost(r, "bytes accessed") / params for k, r in runners.items()},
    "temp_MB": {
      k: r.compiled.memory_analysis().temp_size_in_bytes / 1e6 for k, r in runners.items()
    },
    "skipped": skipped,
  }


def markdown(cases: list[dict[str, Any]], meta: dict[str, Any]) -> str:
  lines = [
    f"{meta['date']}, jax {meta['jax']}, optax {meta['optax']}, {meta['cpus']} CPUs, "
    f"load average {meta['load_average']}",
    "",
    "| tree | variant | median ms | vs tree | optax / this | compile s | XLA flops/param "
    "| XLA bytes/param | temp MB |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for case in cases:
    tree_ms, optax_ms = case["ms"]["tree"], case["ms"]["optax"]
    label = f"{case['case']} ({case['leaves']} leaves, {case['params'] / 1e6:.2f}M)"
    for key, ms in case["ms"].items():
      lines.append(
        f"| {label} | {key} | {ms:.2f} | {ms / tree_ms:.2f}x | {optax_ms / ms:.2f}x | "
        f"{case['compile_s'][key]:.1f} | {case['flops_per_param'][key]:.1f} | "
        f"{case['bytes_per_param'][key]:.1f} | {case['temp_MB'][key]:.1f} |"
      )
      label = ""
    for key, why in case["skipped"].items():
      lines.append(f"| {label} | {key} | skipped: {why} | | | | | | |")
      label = ""
  return "\n".join(lines)


def plot(cases: list[dict[str, Any]], path: Path) -> None:
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  keys = list(dict.fromkeys(k for case in cases for k in case["ms"]))
  fig, ax = plt.subplots(figsize=(max(6.0, 2.6 * len(cases)), 3.8), dpi=100)
  width = 0.8 / len(keys)
  for i, key in enumerate(keys):
    xs = [c for c, case in enumerate(cases) if key in case["ms"]]
    ys = [cases[c]["ms"][key] for c in xs]
    ax.bar([x + (i - (len(keys) - 1) / 2) * width for x in xs], ys, width, label=key)
  ax.set_xticks(range(len(cases)))
  ax.set_xticklabels([f"{c['case']}\n({c['leaves']} leaves)" for c in cases])
  ax.set_yscale("log")
  ax.set_ylabel("training step, median ms")
  ax.grid(True, axis="y", which="both", alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title("grad + Adadelta step (jitted, donated), flat layout vs tree", fontsize=10)
  fig.tight_layout()
  fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small trees, to check the script")
  parser.add_argument("--out", type=Path, default=Path("runs/bench_flat"))
  parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case")
  parser.add_argument("--min-reps", type=int, default=7)
  parser.add_argument(
    "--max-old-work",
    type=float,
    default=1e9,
    help="skip the old unflatten where leaves x params exceeds this (its backward pass costs "
    "about that many element operations)",
  )
  parser.add_argument(
    "--case", action="append", help="run only this case (repeatable; default: all of them)"
  )
  args = parser.parse_args(argv)
  cases_spec = [
    ("300 x 1,000", [(1000,)] * 300),
    ("2,000 x 1,000", [(1000,)] * 2000),
    ("ResNet-50", resnet50_shapes()),
  ]
  if args.quick:
    cases_spec = [("50 x 100", [(100,)] * 50), ("200 x 100", [(100,)] * 200)]
  if args.case:
    unknown = set(args.case) - {name for name, _ in cases_spec}
    if unknown:
      parser.error(f"--case {sorted(unknown)}: not one of {[name for name, _ in cases_spec]}")
    cases_spec = [(name, shapes) for name, shapes in cases_spec if name in args.case]
  args.out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  cases = [run_case(name, shapes, args) for name, shapes in tqdm(cases_spec, desc="cases")]
  meta = {
    "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
    "jax": jax.__version__,
    "optax": optax.__version__,
    "adadelta_optax": adadelta_optax.__version__,
    "implementation": adadelta_optax.adadelta().implementation,
    "cpus": os.cpu_count(),
    "devices": str(jax.devices()),
    "load_average": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    "wall_s": time.perf_counter() - start,
  }
  table = markdown(cases, meta)
  (args.out / "bench_flat.json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=2))
  (args.out / "bench_flat.md").write_text(table + "\n")
  plot(cases, args.out / "bench_flat.png")
  print(table)
  print(f"\nwrote {args.out / 'bench_flat.md'}, {args.out / 'bench_flat.json'}, ", end="")
  print(args.out / "bench_flat.png")


if __name__ == "__main__":
  main()
