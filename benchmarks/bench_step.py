"""Adadelta step time against the memory-bandwidth floor, optax, torch and Keras 3, side by side.

Every case is timed in the same run, interleaved, as medians of repeated jitted steps with params
and optimizer state donated (updated in place where the implementation allows it):

- floor: a kernel that moves exactly the bytes an Adadelta step must move (read gradient, param
  and both accumulators, write param and both accumulators: 28 B per float32 param) and nothing
  else, with the same calls, threads and donation as the library's kernel (``_floor.py`` next to
  this script compiles it on first use; it needs a C++17 compiler);
- adadelta_optax ``apply_gradients`` (the fused step), and ``update`` + ``optax.apply_updates``;
- ``update`` + ``optax.apply_updates`` on a gradient computed inside the step (as in a Flax train
  step: ``nnx.Optimizer`` and linen's ``TrainState`` call these two), ours and optax's;
- for trees of many leaves, the same two with ``state_layout="flat"`` (the accumulators as one
  buffer per dtype), and the same jitted call with no arithmetic at all (params and state
  donated, gradient passed in, returned unchanged): what the buffers alone cost;
- ``optax.adadelta``; ``torch.optim.Adadelta`` (foreach and for-loop); Keras 3's ``Adadelta`` on
  the JAX backend (``stateless_apply``).

It also reports compile times on the 2,000-leaf tree, bytes moved per param (XLA's cost analysis
plus the kernel's own accounting) and temporaries, the step inside a real Flax training step (an
MLP and a small CNN) with its compiled memory, and writes a table (markdown), the raw numbers
(JSON) and a plot of time against parameter count and leaf count.

Usage::

  pip install -e ".[bench]"
  python benchmarks/bench_step.py                 # full run, a few minutes on 2 cores
  python benchmarks/bench_step.py --quick         # small sizes, to check it works
  python benchmarks/bench_step.py --case "25M leaf" --case ResNet-50-like --no-torch --no-keras \
      --no-flax --no-sweeps                       # some of the cases only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _floor import floor_step  # noqa: E402  (benchmarks/_floor.py, next to this script)
from _progress import progress  # noqa: E402
from _trees import resnet50_shapes  # noqa: E402

import adadelta_optax  # noqa: E402
from adadelta_optax.core import _step

RHO, EPS, LR = 0.95, 1e-7, 1.0


# --- Parameter trees ----------------------------------------------------------------------------


def tree_of(shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
  return {f"p{i:04d}": np.full(shape, 0.5, np.float32) for i, shape in enumerate(shapes)}


# --- Timing ---------------------------------------------------------------------------------------


class Runner:
  """A stateful step: ``step()`` runs once and blocks; ``compile_s`` is its compile time."""

  compile_s: float = float("nan")

  def step(self) -> None:
    raise NotImplementedError


class JaxRunner(Runner):
  def __init__(self, fn: Callable[..., Any], carry: tuple[Any, ...], consts: tuple[Any, ...]):
    jitted = jax.jit(fn, donate_argnums=tuple(range(len(carry))))
    start = time.perf_counter()
    self.compiled = jitted.lower(*carry, *consts).compile()
    self.compile_s = time.perf_counter() - start
    self.carry, self.consts = carry, consts

  def step(self) -> None:
    self.carry = self.compiled(*self.carry, *self.consts)
    jax.block_until_ready(self.carry)


def make_floor(params: dict[str, Any]) -> Runner:
  tx = adadelta_optax.adadelta()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)

  def floor(p, s, g):
    keys = list(p)
    out: dict[str, list[Any]] = {"x": [], "a": [], "d": []}
    for start in range(0, len(keys), _step.MAX_LEAVES_PER_CALL):
      chunk = keys[start : start + _step.MAX_LEAVES_PER_CALL]
      x, a, d = floor_step(
        [g[k] for k in chunk],
        [p[k] for k in chunk],
        [s.accum_grad[k] for k in chunk],
        [s.accum_var[k] for k in chunk],
      )
      out["x"] += x
      out["a"] += a
      out["d"] += d
    rebuild = lambda xs: dict(zip(keys, xs, strict=True))  # noqa: E731
    return rebuild(out["x"]), s._replace(accum_grad=rebuild(out["a"]), accum_var=rebuild(out["d"]))

  return JaxRunner(floor, (params, tx.init(params)), (grads,))


def make_buffers_only(params: Any) -> Runner:
  """The same jitted call as ``update`` + ``apply_updates`` (params and state donated, gradient
  passed in) with no arithmetic: what passing the buffers in and out alone costs."""
  tx = adadelta_optax.adadelta()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  return JaxRunner(lambda p, s, g: (p, s), (params, tx.init(params)), (grads,))


def make_ours_apply(
  params: Any, implementation: str = "auto", state_layout: str = "tree"
) -> Runner:
  tx = adadelta_optax.adadelta(
    LR, RHO, EPS, implementation=implementation, state_layout=state_layout
  )
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  return JaxRunner(lambda p, s, g: tx.apply_gradients(g, s, p), (params, tx.init(params)), (grads,))


def make_train_style(tx: optax.GradientTransformation, params: Any) -> Runner:
  """``update`` + ``apply_updates`` on a gradient made in the step, as in a Flax train step."""

  def step(p, s, scale):
    updates, s = tx.update(jax.tree.map(lambda x: x * scale, p), s, p)
    return optax.apply_updates(p, updates), s

  return JaxRunner(step, (params, tx.init(params)), (jnp.float32(0.2),))


def protocol_step(tx: optax.GradientTransformation) -> Callable[..., Any]:
  """``(params, state, grads) -> (params, state)``: ``tx.update`` then ``optax.apply_updates``,
  what ``nnx.Optimizer`` and linen's ``TrainState`` run, with the gradient passed in."""

  def step(p: Any, s: Any, g: Any) -> Any:
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s

  return step


def make_optax_style(tx: optax.GradientTransformation, params: Any) -> Runner:
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  return JaxRunner(protocol_step(tx), (params, tx.init(params)), (grads,))


class TorchRunner(Runner):
  def __init__(self, shapes: list[tuple[int, ...]], foreach: bool):
    import torch  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    self.params = [
      torch.full(shape, 0.5, dtype=torch.float32, requires_grad=True) for shape in shapes
    ]
    for p in self.params:
      p.grad = torch.full_like(p, 0.1)
    self.opt = torch.optim.Adadelta(self.params, lr=LR, rho=RHO, eps=EPS, foreach=foreach)
    start = time.perf_counter()
    self.opt.step()
    self.compile_s = time.perf_counter() - start

  def step(self) -> None:
    self.opt.step()


class KerasRunner(Runner):
  def __init__(self, shapes: list[tuple[int, ...]]):
    import keras  # noqa: PLC0415

    variables = [keras.Variable(np.full(shape, 0.5, np.float32)) for shape in shapes]
    opt = keras.optimizers.Adadelta(learning_rate=LR, rho=RHO, epsilon=EPS)
    opt.build(variables)
    params = [v.value for v in variables]
    opt_vars = [v.value for v in opt.variables]
    grads = [jnp.full(shape, 0.1, jnp.float32) for shape in shapes]

    def step(params, opt_vars, grads):
      return opt.stateless_apply(opt_vars, grads, params)

    self.inner = JaxRunner(lambda p, o, g: step(p, o, g), (params, opt_vars), (grads,))
    self.compile_s = self.inner.compile_s

  def step(self) -> None:
    self.inner.step()


def median_times(
  runners: dict[str, Runner], budget_s: float, min_reps: int, faults: dict[str, float] | None = None
) -> dict[str, float]:
  """Interleaved medians (ms): every round runs each runner once, so drift hits all alike.

  With ``faults`` given, it also records each runner's median minor page faults per step (the
  operating system handing out fresh pages: on CPU, what a buffer allocated anew every step
  costs beyond its bytes).

  The order rotates by one runner per round: whichever runs right after another framework's step
  (its threads still spinning, its buffers in the cache) is a different one every round.
  """
  for runner in runners.values():
    runner.step()  # warm-up
  times: dict[str, list[float]] = {name: [] for name in runners}
  page_faults: dict[str, list[int]] = {name: [] for name in runners}
  start = time.perf_counter()
  rounds = 0
  while rounds < min_reps or (time.perf_counter() - start < budget_s and rounds < 50):
    names = list(runners)
    for name in names[rounds % len(names) :] + names[: rounds % len(names)]:
      runner = runners[name]
      f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      t0 = time.perf_counter()
      runner.step()
      times[name].append(time.perf_counter() - t0)
      page_faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    rounds += 1
  if faults is not None:
    faults.update({name: float(np.median(f)) for name, f in page_faults.items()})
  return {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}


def traffic(tx: adadelta_optax.Adadelta, params: Any, compiled: Any) -> tuple[float, float]:
  """(bytes moved per param, temporaries as a fraction of param bytes) of a compiled step."""
  n = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))
  xla = max(compiled.cost_analysis().get("bytes accessed", 0.0), 0.0)
  kernel = tx.kernel_bytes(params) if isinstance(tx, adadelta_optax.Adadelta) else 0
  return (xla + kernel) / n, compiled.memory_analysis().temp_size_in_bytes / (4 * n)


# --- Cases ----------------------------------------------------------------------------------------


def run_case(name: str, shapes: list[tuple[int, ...]], args: argparse.Namespace) -> dict[str, Any]:
  tree = tree_of(shapes)
  n = sum(int(np.prod(s)) for s in shapes)
  fresh = lambda: jax.tree.map(jnp.asarray, tree)  # noqa: E731
  runners: dict[str, Runner] = {
    "floor": make_floor(fresh()),
    "ours: apply_gradients": make_ours_apply(fresh()),
    "ours: update+apply_updates": make_optax_style(adadelta_optax.adadelta(LR, RHO, EPS), fresh()),
    "optax.adadelta": make_optax_style(optax.adadelta(LR, RHO, EPS), fresh()),
    "ours: grads made in the step": make_train_style(
      adadelta_optax.adadelta(LR, RHO, EPS), fresh()
    ),
    "optax: grads made in the step": make_train_style(optax.adadelta(LR, RHO, EPS), fresh()),
  }
  if len(shapes) > 1:
    flat_tx = adadelta_optax.adadelta(LR, RHO, EPS, state_layout="flat")
    runners["ours, flat state: apply_gradients"] = make_ours_apply(fresh(), state_layout="flat")
    runners["ours, flat state: update+apply_updates"] = make_optax_style(flat_tx, fresh())
    runners["buffers in and out only"] = make_buffers_only(fresh())
  if not args.no_torch:
    runners["torch foreach"] = TorchRunner(shapes, foreach=True)
    runners["torch for-loop"] = TorchRunner(shapes, foreach=False)
  if not args.no_keras:
    runners["keras 3 (jax)"] = KerasRunner(shapes)
  faults: dict[str, float] = {}
  times = median_times(runners, args.budget, args.min_reps, faults)
  ours_tx = adadelta_optax.adadelta(LR, RHO, EPS)
  bytes_ours, temp_ours = traffic(ours_tx, fresh(), runners["ours: apply_gradients"].compiled)
  bytes_optax, temp_optax = traffic(optax.adadelta(), fresh(), runners["optax.adadelta"].compiled)
  return {
    "case": name,
    "leaves": len(shapes),
    "params": n,
    "ms": times,
    "fault_bytes_per_param": {k: f * resource.getpagesize() / n for k, f in faults.items()},
    "compile_s": {k: r.compile_s for k, r in runners.items()},
    "bytes_per_param": {"ours": bytes_ours, "optax": bytes_optax},
    "temp_fraction": {"ours": temp_ours, "optax": temp_optax},
  }


def flax_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
  """A whole Flax (linen) training step with each optimizer: MLP and a small CNN on MNIST-sized
  batches (random data: the point is time and memory)."""
  import flax.linen as nn  # noqa: PLC0415

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = x.reshape((x.shape[0], -1))
      x = nn.tanh(nn.Dense(500)(x))
      x = nn.tanh(nn.Dense(300)(x))
      return nn.Dense(10)(x)

  class CNN(nn.Module):  # PyTorch examples/mnist
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x))
      x = nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x))
      x = nn.max_pool(x, (2, 2), (2, 2)).reshape((x.shape[0], -1))
      x = nn.relu(nn.Dense(128)(x))
      return nn.Dense(10)(x)

  rows = []
  for name, model, batch in (("MLP 784-500-300-10", MLP(), 100), ("CNN (torch mnist)", CNN(), 64)):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 28, 28, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=(batch,)))
    params = model.init(jax.random.key(0), x)

    def loss_fn(p, model=model, x=x, y=y):
      logits = model.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def make(tx, fused, params=params, loss_fn=loss_fn):
      def step(p, s):
        grads = jax.grad(loss_fn)(p)
        if fused:
          return tx.apply_gradients(grads, s, p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s

      p = jax.tree.map(jnp.copy, params)
      return JaxRunner(step, (p, tx.init(p)), ())

    runners = {
      "ours: apply_gradients": make(adadelta_optax.adadelta(LR, RHO, EPS), True),
      "optax.adadelta": make(optax.adadelta(LR, RHO, EPS), False),
    }
    times = median_times(runners, args.budget, args.min_reps)
    memory = {}
    for key, runner in runners.items():
      m = runner.compiled.memory_analysis()
      memory[key] = {
        "temp_MB": m.temp_size_in_bytes / 1e6,
        "peak_MB": (
          m.argument_size_in_bytes
          + m.output_size_in_bytes
          - m.alias_size_in_bytes
          + m.temp_size_in_bytes
        )
        / 1e6,
      }
    n = sum(int(np.prod(np.shape(v))) for v in jax.tree.leaves(params))
    rows.append({"model": name, "params": n, "ms": times, "memory": memory})
  return rows


def sweeps(args: argparse.Namespace) -> dict[str, Any]:
  """Time against parameter count (one leaf) and against leaf count (2M floats in all)."""
  out: dict[str, Any] = {"by_size": [], "by_leaves": []}
  sizes = [10_000, 100_000, 1_000_000, 4_000_000, 16_000_000]
  leaf_counts = [1, 10, 100, 1000, 2000]
  total = 2_000_000
  if args.quick:
    sizes, leaf_counts, total = [10_000, 100_000], [1, 10, 100], 100_000
  for n in progress(sizes, desc="sweep: size"):
    runners = {
      "floor": make_floor(jax.tree.map(jnp.asarray, tree_of([(n,)]))),
      "ours": make_ours_apply(jax.tree.map(jnp.asarray, tree_of([(n,)]))),
      "optax": make_optax_style(
        optax.adadelta(LR, RHO, EPS), jax.tree.map(jnp.asarray, tree_of([(n,)]))
      ),
    }
    out["by_size"].append({"params": n, "ms": median_times(runners, 2.0, 5)})
  for leaves in progress(leaf_counts, desc="sweep: leaves"):
    shapes = [(total // leaves,)] * leaves
    runners = {
      "floor": make_floor(jax.tree.map(jnp.asarray, tree_of(shapes))),
      "ours": make_ours_apply(jax.tree.map(jnp.asarray, tree_of(shapes))),
      "optax": make_optax_style(
        optax.adadelta(LR, RHO, EPS), jax.tree.map(jnp.asarray, tree_of(shapes))
      ),
    }
    out["by_leaves"].append({"leaves": leaves, "ms": median_times(runners, 2.0, 5)})
  return out


def plot(sweep: dict[str, Any], path: Path) -> None:
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
  for key, style in (("floor", "k--"), ("ours", "o-"), ("optax", "s-")):
    left.loglog(
      [r["params"] for r in sweep["by_size"]],
      [r["ms"][key] for r in sweep["by_size"]],
      style,
      label=key,
    )
    right.loglog(
      [r["leaves"] for r in sweep["by_leaves"]],
      [r["ms"][key] for r in sweep["by_leaves"]],
      style,
      label=key,
    )
  left.set(xlabel="float32 params (one leaf)", ylabel="step time (ms)", title="by size")
  right.set(xlabel="leaves (2M floats in all)", title="by leaf count")
  for ax in (left, right):
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  fig.suptitle("Adadelta step (jitted, donated), 2-core CPU", fontsize=10)
  fig.tight_layout()
  fig.savefig(path)


def markdown(cases: list[dict[str, Any]], flax_rows: list[dict[str, Any]]) -> str:
  lines = [
    "| case | implementation | median ms | vs floor | optax / this | page faults, B/param |",
    "|---|---|---|---|---|---|",
  ]
  for case in cases:
    floor_ms, optax_ms = case["ms"]["floor"], case["ms"]["optax.adadelta"]
    label = f"{case['case']} ({case['leaves']} leaves, {case['params'] / 1e6:.1f}M)"
    for impl, ms in case["ms"].items():
      fault = case["fault_bytes_per_param"][impl]
      lines.append(
        f"| {label} | {impl} | {ms:.2f} | {ms / floor_ms:.2f}x | {optax_ms / ms:.1f}x "
        f"| {fault:.1f} |"
      )
      label = ""
  lines += [
    "",
    "| case | bytes/param ours | bytes/param optax | temps ours | temps optax | "
    "compile ours (s) | compile optax (s) |",
    "|---|---|---|---|---|---|---|",
  ]
  for case in cases:
    lines.append(
      f"| {case['case']} | {case['bytes_per_param']['ours']:.1f} | "
      f"{case['bytes_per_param']['optax']:.1f} | {100 * case['temp_fraction']['ours']:.3f}% | "
      f"{100 * case['temp_fraction']['optax']:.0f}% | "
      f"{case['compile_s']['ours: apply_gradients']:.2f} | "
      f"{case['compile_s']['optax.adadelta']:.2f} |"
    )
  if not flax_rows:
    return "\n".join(lines)
  lines += [
    "",
    "| Flax training step | params | ours ms | optax ms | optax / ours | "
    "ours peak MB (temp) | optax peak MB (temp) |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in flax_rows:
    ours, theirs = row["ms"]["ours: apply_gradients"], row["ms"]["optax.adadelta"]
    mo, mt = row["memory"]["ours: apply_gradients"], row["memory"]["optax.adadelta"]
    lines.append(
      f"| {row['model']} | {row['params'] / 1e6:.2f}M | {ours:.2f} | {theirs:.2f} | "
      f"{theirs / ours:.2f}x | {mo['peak_MB']:.1f} ({mo['temp_MB']:.1f}) | "
      f"{mt['peak_MB']:.1f} ({mt['temp_MB']:.1f}) |"
    )
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
  parser.add_argument("--out", type=Path, default=Path("runs/bench"))
  parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case")
  parser.add_argument("--min-reps", type=int, default=7)
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--no-keras", action="store_true")
  parser.add_argument(
    "--case", action="append", help="run only this case (repeatable; default: all of them)"
  )
  parser.add_argument("--no-flax", action="store_true", help="skip the Flax training steps")
  parser.add_argument("--no-sweeps", action="store_true", help="skip the size and leaf sweeps")
  args = parser.parse_args(argv)
  if not adadelta_optax.kernel_available():
    sys.exit(f"the CPU kernel is not available: {adadelta_optax.kernel_unavailable_reason()}")
  args.out.mkdir(parents=True, exist_ok=True)
  cases_spec = [
    ("1M leaf", [(1_000_000,)]),
    ("25M leaf", [(25_000_000,)]),
    ("ResNet-50-like", resnet50_shapes()),
    ("2,000 x 1,000", [(1000,)] * 2000),
  ]
  if args.quick:
    cases_spec = [("100k leaf", [(100_000,)]), ("200 x 100", [(100,)] * 200)]
  if args.case:
    unknown = set(args.case) - {name for name, _ in cases_spec}
    if unknown:
      parser.error(f"--case {sorted(unknown)}: not one of {[name for name, _ in cases_spec]}")
    cases_spec = [(name, shapes) for name, shapes in cases_spec if name in args.case]
  cases = [run_case(name, shapes, args) for name, shapes in progress(cases_spec, desc="cases")]
  flax_rows = [] if args.no_flax else flax_steps(args)
  sweep = None if args.no_sweeps else sweeps(args)
  table = markdown(cases, flax_rows)
  meta = {
    "jax": jax.__version__,
    "optax": optax.__version__,
    "cpus": os.cpu_count(),
    "devices": str(jax.devices()),
  }
  (args.out / "bench.json").write_text(
    json.dumps({"meta": meta, "cases": cases, "flax": flax_rows, "sweeps": sweep}, indent=2)
  )
  (args.out / "bench.md").write_text(table + "\n")
  written = [args.out / "bench.md", args.out / "bench.json"]
  if sweep is not None:
    plot(sweep, args.out / "bench.png")
    written.append(args.out / "bench.png")
  print(table)
  print(f"\nwrote {', '.join(map(str, written))}")


if __name__ == "__main__":
  main()
