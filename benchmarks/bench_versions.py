"""Two checkouts of adadelta_optax side by side: the same step cases, timed in one run.

A refactor must not slow anything down. This script starts one worker process per checkout
(``PYTHONPATH`` set to it, so each imports its own ``adadelta_optax`` and compiled kernel) and
times the cases of ``bench_step.py``'s table in both, interleaved round by round (before, after,
after, before, ...), so that the shared machine's drift hits both alike. It prints, per case, the
medians and the median of the per-round ratios ``after / before`` (below 1: faster).

Usage::

  git worktree add /tmp/before <commit> && (cd /tmp/before && python setup.py build_ext --inplace)
  python benchmarks/bench_versions.py --before /tmp/before            # after: this checkout

Only the public API is used (``adadelta``, ``update``, ``apply_gradients``), so any two versions
that have it can be compared.

The two sides may also be one checkout in two environments, e.g. glibc's allocator against
TCMalloc (``apt-get install libtcmalloc-minimal4``)::

  python benchmarks/bench_versions.py \
      --after-env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _trees import resnet50_shapes  # benchmarks/_trees.py, next to this script
from tqdm import tqdm

HERE = Path(__file__).resolve().parent


TREES: dict[str, list[tuple[int, ...]]] = {
  "1M leaf": [(1_000_000,)],
  "25M leaf": [(25_000_000,)],
  "ResNet-50 (161 leaves)": resnet50_shapes(),
  "2,000 x 1,000": [(1_000,)] * 2_000,
}
STYLES = ("apply_gradients", "update+apply_updates", "grads made in the step")
OPTIONS: dict[str, dict[str, Any]] = {
  "defaults": {},
  "clipnorm + weight decay": {"clipnorm": 1.0, "weight_decay": 1e-4},
  # 16-bit params: the fused JAX path (the kernel takes float32 and float64), stepped in float32.
  "bfloat16 params": {"dtype": "bfloat16"},
}


# --- Worker: one checkout ---------------------------------------------------------------------


def worker() -> None:
  """Reads ``{"case": ..., "reps": n}`` lines, answers with the step times in seconds."""
  import jax
  import jax.numpy as jnp
  import optax

  import adadelta_optax

  steps: dict[str, Any] = {}

  def build(tree: str, style: str, options: str) -> Any:
    kwargs = dict(OPTIONS[options])
    dtype = kwargs.pop("dtype", "float32")
    tx = adadelta_optax.adadelta(1.0, 0.95, 1e-7, **kwargs)
    params = {f"p{i:04d}": jnp.full(s, 0.5, dtype) for i, s in enumerate(TREES[tree])}
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
    if style == "apply_gradients":

      def step(p, s, g):
        return tx.apply_gradients(g, s, p)

    elif style == "update+apply_updates":

      def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    else:
      grads = jnp.asarray(0.2, dtype)

      def step(p, s, scale):
        updates, s = tx.update(jax.tree.map(lambda x: x * scale, p), s, p)
        return optax.apply_updates(p, updates), s

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), grads).compile()
    carry = [params, tx.init(params)]

    def run() -> None:
      carry[:] = compiled(*carry, grads)
      jax.block_until_ready(carry)

    run()  # warm-up
    return run

  print(json.dumps({"file": adadelta_optax.__file__}), flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    key = request["case"]
    if key not in steps:
      steps.clear()  # one case's buffers at a time
      steps[key] = build(*key.split("|"))
      print(json.dumps({"ready": key}), flush=True)
      continue
    times = []
    for _ in range(request["reps"]):
      start = time.perf_counter()
      steps[key]()
      times.append(time.perf_counter() - start)
    print(json.dumps({"times": times}), flush=True)


# --- Driver -----------------------------------------------------------------------------------


class Worker:
  def __init__(self, checkout: Path, extra_env: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    env.update(item.split("=", 1) for item in extra_env)
    self.process = subprocess.Popen(
      [sys.executable, __file__, "--worker"],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env=env,
      cwd=checkout,
    )
    self.file = self._read()["file"]

  def _read(self) -> dict[str, Any]:
    assert self.process.stdout is not None
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError("a worker died; run it alone to see why")
    return json.loads(line)

  def ask(self, case: str, reps: int) -> dict[str, Any]:
    assert self.process.stdin is not None
    self.process.stdin.write(json.dumps({"case": case, "reps": reps}) + "\n")
    self.process.stdin.flush()
    return self._read()

  def close(self) -> None:
    if self.process.stdin is not None:
      self.process.stdin.close()
    self.process.wait()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--before", type=Path, help="checkout of the older version")
  parser.add_argument("--after", type=Path, default=HERE.parent, help="default: this checkout")
  for side in ("before", "after"):
    parser.add_argument(
      f"--{side}-env",
      action="append",
      default=[],
      metavar="VAR=VALUE",
      help=f"set in the {side} worker's environment (repeatable)",
    )
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--reps", type=int, default=5, help="steps per round and worker")
  parser.add_argument("--quick", action="store_true", help="the 1M leaf only")
  parser.add_argument("--tree", action="append", choices=list(TREES), help="only these trees")
  parser.add_argument("--option", action="append", choices=list(OPTIONS), help="only these")
  parser.add_argument("--out", type=Path, default=Path("runs/bench_versions.md"))
  args = parser.parse_args()
  if args.worker:
    worker()
    return
  if args.before is None and not (args.before_env or args.after_env):
    parser.error("--before is required unless the sides differ by --before-env/--after-env")
  for item in (*args.before_env, *args.after_env):
    if "=" not in item:
      parser.error(f"--before-env/--after-env take VAR=VALUE, got {item!r}")
  before = Worker((args.before or args.after).resolve(), args.before_env)
  after = Worker(args.after.resolve(), args.after_env)
  print(f"before: {before.file} {args.before_env}\nafter:  {after.file} {args.after_env}")
  trees = ["1M leaf"] if args.quick else (args.tree or list(TREES))
  cases = [f"{t}|{s}|{o}" for t in trees for s in STYLES for o in args.option or list(OPTIONS)]
  rows = [
    "| case | before ms | after ms | after / before (median of rounds) |",
    "|---|---|---|---|",
  ]
  worst = 0.0
  for case in tqdm(cases, desc="cases"):
    for w in (before, after):
      w.ask(case, 0)  # build and warm up
    medians: dict[str, list[float]] = {"before": [], "after": []}
    ratios = []
    for r in range(args.rounds):
      order = [("before", before), ("after", after)]
      if r % 2:
        order.reverse()
      got = {name: float(np.median(w.ask(case, args.reps)["times"])) for name, w in order}
      for name, value in got.items():
        medians[name].append(value)
      ratios.append(got["after"] / got["before"])
    ratio = float(np.median(ratios))
    worst = max(worst, ratio)
    b, a = (1e3 * float(np.median(medians[k])) for k in ("before", "after"))
    rows.append(f"| {case.replace('|', ' / ')} | {b:.2f} | {a:.2f} | {ratio:.3f} |")
  before.close()
  after.close()
  table = "\n".join(rows) + f"\n\nslowest case: after / before = {worst:.3f}\n"
  print(table)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(table)


if __name__ == "__main__":
  main()
