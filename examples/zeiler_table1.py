"""Zeiler 2012's MNIST comparison, reproduced: test error after 6 epochs over the paper's grid.

Section 4.1 of Zeiler, "ADADELTA: An Adaptive Learning Rate Method" (arXiv:1212.5701) trains a
784-500-300-10 tanh MLP on MNIST (mini-batches of 100, 6 epochs) and tabulates the test error for

* ADADELTA (unit learning rate) over ``rho`` in {0.9, 0.95, 0.99} x ``epsilon`` in {1e-2, 1e-4,
  1e-6, 1e-8}, and
* SGD, MOMENTUM and ADAGRAD over learning rates {1, 1e-1, 1e-2, 1e-3, 1e-4},

and plots the test error per epoch. This script runs that grid for several seeds with the network,
data and training loop of ``zeiler_mnist.py`` (same initialisation and shuffles: the ADADELTA
``rho=0.95, epsilon=1e-6`` cell for seed ``s`` is ``zeiler_mnist.py --seed s``) and writes, in
``--out``:

* ``zeiler_table1.md``: the two tables in the paper's layout, each cell the mean test error after
  the last epoch and its spread (min-max) over the seeds;
* ``zeiler_table1.png``: test error per epoch (mean, min-max band) of ADADELTA ``rho=0.95,
  epsilon=1e-6`` and of each baseline at its best learning rate in the grid;
* ``zeiler_table1.json``: every run's per-epoch training loss and test error, and the timings.

Choices the paper leaves open: Glorot-uniform weights and zero biases; MOMENTUM is heavy-ball
``optax.sgd(lr, momentum=0.9)``; ADAGRAD is the paper's ``lr / sqrt(sum g^2) * g`` with a zero
initial accumulator (``optax.adagrad(lr, initial_accumulator_value=0.0)``, whose ``eps=1e-7``
inside the root only guards against zeros). ADADELTA is :func:`adadelta_optax.presets.paper` with
``rho`` and ``epsilon`` overridden. Each epoch is one jitted ``lax.scan`` over its mini-batches.

Usage (from the repository root)::

  python examples/zeiler_table1.py                            # full grid, seeds 0 1 2 (~16 min)
  python examples/zeiler_table1.py --out docs                 # the docs (howto/reproductions)
  python examples/zeiler_table1.py --quick                    # CI: one setting, one epoch, seed 0
  python examples/zeiler_table1.py --seeds 0 1 2 3 4 --data /path/to/mnist.npz
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from tqdm import tqdm

import adadelta_optax
from adadelta_optax import presets

import _mnist_common as common
from _mnist_common import NUM_CLASSES, PAPER_TEST_ERROR

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RHOS = (0.9, 0.95, 0.99)
EPSILONS = (1e-2, 1e-4, 1e-6, 1e-8)
LEARNING_RATES = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)
MOMENTUM = 0.9
PAPER_SETTING = dict(rho=0.95, epsilon=1e-6)
BASELINES: dict[str, Callable[[float], optax.GradientTransformation]] = {
  "SGD": lambda lr: optax.sgd(lr),
  "MOMENTUM": lambda lr: optax.sgd(lr, momentum=MOMENTUM),
  "ADAGRAD": lambda lr: optax.adagrad(lr, initial_accumulator_value=0.0),
}


class Setting(NamedTuple):
  method: str  # "ADADELTA", "SGD", "MOMENTUM" or "ADAGRAD"
  hyperparams: dict[str, float]
  make: Callable[[], optax.GradientTransformation]

  @property
  def label(self) -> str:
    return f"{self.method} " + ", ".join(f"{k}={v:g}" for k, v in self.hyperparams.items())


def grid(quick: bool) -> list[Setting]:
  """The paper's grid; with ``quick`` only ADADELTA ``rho=0.95, epsilon=1e-6``."""
  settings = [
    Setting(
      "ADADELTA", dict(rho=rho, epsilon=eps), lambda r=rho, e=eps: presets.paper(rho=r, epsilon=e)
    )
    for rho in RHOS
    for eps in EPSILONS
  ]
  settings += [
    Setting(name, dict(learning_rate=lr), lambda f=make, lr=lr: f(lr))
    for name, make in BASELINES.items()
    for lr in LEARNING_RATES
  ]
  if quick:
    settings = [s for s in settings if s.method == "ADADELTA" and s.hyperparams == PAPER_SETTING]
  return settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description="Zeiler 2012's MNIST tables: ADADELTA's rho x epsilon grid and SGD, MOMENTUM, "
    "ADAGRAD over learning rates, test error after 6 epochs, over several seeds.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  common.add_data_arguments(parser)
  parser.add_argument(
    "--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 with --quick)"
  )
  parser.add_argument("--epochs", type=int, default=None, help="default: 6 (1 with --quick)")
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument(
    "--quick", action="store_true", help="CI check: ADADELTA rho=0.95 eps=1e-6 only, 1 epoch"
  )
  parser.add_argument("--out", type=Path, default=Path("runs/zeiler_table1"))
  args = parser.parse_args(argv)
  if args.seeds is None:
    args.seeds = [0] if args.quick else [0, 1, 2]
  if args.epochs is None:
    args.epochs = 1 if args.quick else 6
  if args.epochs < 1:
    parser.error(f"--epochs must be >= 1, got {args.epochs}.")
  if args.batch_size < 1:
    parser.error(f"--batch-size must be >= 1, got {args.batch_size}.")
  if len(set(args.seeds)) != len(args.seeds):
    parser.error(f"--seeds must be distinct, got {args.seeds}.")
  common.check_data_arguments(parser, args)
  return args


def run_setting(setting: Setting, data: tuple[np.ndarray, ...], args, bar: tqdm) -> list[dict]:
  """Trains ``setting`` once per seed; returns one record per seed with its per-epoch history."""
  x_train, y_train, x_test, y_test = data
  n_train = len(x_train)
  sizes = (x_train.shape[1], *common.HIDDEN, NUM_CLASSES)
  tx = setting.make()
  train_epoch = common.make_train_epoch(tx)
  evaluate = jax.jit(common.evaluate)
  x_train_d, y_train_d = jnp.asarray(x_train), jnp.asarray(y_train)
  x_test_d, y_test_d = jnp.asarray(x_test), jnp.asarray(y_test)
  records = []
  for seed in args.seeds:
    # As in zeiler_mnist.py: one generator draws the initial weights, then each epoch's order.
    rng = np.random.default_rng(seed)
    params = common.init_mlp(rng, sizes)
    opt_state = tx.init(params)
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
      bar.set_description(f"{setting.label}, seed {seed}, epoch {epoch}")
      batches, masks = common.epoch_batches(rng.permutation(n_train), args.batch_size)
      params, opt_state, train_loss = train_epoch(
        params, opt_state, x_train_d, y_train_d, batches, masks
      )
      test_loss, test_err = (float(v) for v in evaluate(params, x_test_d, y_test_d))
      history.append(
        dict(
          epoch=epoch,
          train_loss=float(train_loss),
          test_loss=test_loss,
          test_error=100.0 * test_err,
        )
      )
      bar.set_postfix(test_error=f"{100.0 * test_err:.2f}%")
      bar.update()
    records.append(
      dict(
        method=setting.method,
        hyperparams=setting.hyperparams,
        seed=seed,
        final_test_error=history[-1]["test_error"],
        diverged=not all(math.isfinite(h["train_loss"]) for h in history),
        time_s=time.perf_counter() - t0,
        history=history,
      )
    )
  return records


def power_of_ten(x: float) -> str:
  return f"1e{round(math.log10(x))}"


def summarize(errors: list[float]) -> dict[str, float]:
  return dict(mean=float(np.mean(errors)), min=float(np.min(errors)), max=float(np.max(errors)))


def cell(records: list[dict]) -> str:
  if not records:
    return "—"
  s = summarize([r["final_test_error"] for r in records])
  text = (
    f"{s['mean']:.2f}" if len(records) == 1 else f"{s['mean']:.2f} ({s['min']:.2f}–{s['max']:.2f})"
  )
  return text + (" †" if any(r["diverged"] for r in records) else "")


def select(records: list[dict], method: str, **hyperparams: float) -> list[dict]:
  return [r for r in records if r["method"] == method and r["hyperparams"] == hyperparams]


def tables_markdown(records: list[dict], args, data_description: str, total_s: float) -> str:
  seeds = ", ".join(map(str, args.seeds))
  spread = "mean (min–max) over seeds " if len(args.seeds) > 1 else "seed "
  lines = [
    f"Test error (%) after {args.epochs} epoch{'s' if args.epochs > 1 else ''}, {spread}{seeds}. "
    f"Data: {data_description}. Produced by `examples/zeiler_table1.py` "
    f"(adadelta_optax {adadelta_optax.__version__}, jax {jax.__version__} on "
    f"{jax.default_backend()}) in {total_s / 60:.1f} min. † = the training loss became non-finite "
    "(the error is then that of a constant prediction).",
    "",
    "**ADADELTA** (learning rate 1), rho × epsilon:",
    "",
    "| rho \\ epsilon | " + " | ".join(map(power_of_ten, EPSILONS)) + " |",
    "|---|" + "---|" * len(EPSILONS),
  ]
  for rho in RHOS:
    row = [cell(select(records, "ADADELTA", rho=rho, epsilon=eps)) for eps in EPSILONS]
    lines.append(f"| {rho:g} | " + " | ".join(row) + " |")
  lines += [
    "",
    f"**SGD, MOMENTUM ({MOMENTUM:g}), ADAGRAD**, learning rate:",
    "",
    "| method \\ learning rate | " + " | ".join(map(power_of_ten, LEARNING_RATES)) + " |",
    "|---|" + "---|" * len(LEARNING_RATES),
  ]
  for name in BASELINES:
    row = [cell(select(records, name, learning_rate=lr)) for lr in LEARNING_RATES]
    lines.append(f"| {name} | " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def curves(records: list[dict]) -> dict[str, list[dict]]:
  """ADADELTA at the paper's setting and each baseline at its best learning rate (by mean)."""
  chosen = {}
  paper = select(records, "ADADELTA", **PAPER_SETTING)
  if paper:
    chosen["ADADELTA rho=0.95, eps=1e-6"] = paper
  for name in BASELINES:
    by_lr = {lr: select(records, name, learning_rate=lr) for lr in LEARNING_RATES}
    by_lr = {lr: rs for lr, rs in by_lr.items() if rs}
    if by_lr:
      best = min(by_lr, key=lambda lr: np.mean([r["final_test_error"] for r in by_lr[lr]]))
      chosen[f"{name} lr={best:g} (best)"] = by_lr[best]
  return chosen


def plot(records: list[dict], path: Path, paper_point: bool, title: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
  for label, runs in curves(records).items():
    errors = np.array([[h["test_error"] for h in r["history"]] for r in runs])
    epochs = np.arange(1, errors.shape[1] + 1)
    (line,) = ax.plot(epochs, errors.mean(0), "o-", ms=3, label=label)
    if len(runs) > 1:
      ax.fill_between(epochs, errors.min(0), errors.max(0), color=line.get_color(), alpha=0.2)
  if paper_point:
    ax.plot([6], [PAPER_TEST_ERROR], "k*", ms=10, label="Zeiler 2012: ADADELTA, 6 epochs")
  ax.set_yscale("log")
  ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.set_xlabel("epoch")
  ax.set_ylabel("test error (%)")
  ax.set_title(title, fontsize="medium")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize="small")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  t_start = time.perf_counter()
  data = common.load_dataset(args.data, args.dataset, args.limit_train)
  arrays = (common.flatten(data.x_train), data.y_train, common.flatten(data.x_test), data.y_test)
  settings = grid(args.quick)
  print(f"data: {data.description}")
  print(
    f"      {len(arrays[0])} training / {len(arrays[2])} test examples; "
    f"{len(settings)} settings x {len(args.seeds)} seeds x {args.epochs} epochs, "
    f"batch {args.batch_size}; jax {jax.__version__} on {jax.default_backend()}"
  )

  records = []
  with tqdm(total=len(settings) * len(args.seeds) * args.epochs, unit="epoch") as bar:
    for setting in settings:
      records += run_setting(setting, arrays, args, bar)
  total = time.perf_counter() - t_start
  n_epochs = len(records) * args.epochs
  print(f"{len(records)} runs in {total:.0f} s ({total / n_epochs:.2f} s per epoch, all included)")

  args.out.mkdir(parents=True, exist_ok=True)
  md_path, png_path, json_path = (
    args.out / f"zeiler_table1.{ext}" for ext in ("md", "png", "json")
  )
  markdown = tables_markdown(records, args, data.description, total)
  md_path.write_text(markdown)
  print(markdown)
  subset = "" if args.limit_train is None else f" ({len(arrays[0])} training examples)"
  layers = "-".join(map(str, (arrays[0].shape[1], *common.HIDDEN, NUM_CLASSES)))
  dataset = "MNIST" if data.is_mnist else "digits"
  title = f"{dataset}{subset}, {layers} tanh MLP, batch {args.batch_size}"
  plot(records, png_path, data.is_mnist and args.epochs >= 6, title)
  results = dict(
    data=data.description,
    dataset=data.kind,
    n_train=len(arrays[0]),
    n_test=len(arrays[2]),
    epochs=args.epochs,
    batch_size=args.batch_size,
    seeds=args.seeds,
    momentum=MOMENTUM,
    paper_test_error=PAPER_TEST_ERROR if data.is_mnist else None,
    total_time_s=total,
    time_per_epoch_s=total / n_epochs,
    versions=dict(
      adadelta_optax=adadelta_optax.__version__, jax=jax.__version__, optax=optax.__version__
    ),
    runs=records,
  )
  json_path.write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {md_path}, {png_path} and {json_path}")
  return results


if __name__ == "__main__":
  main()
