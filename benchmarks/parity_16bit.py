"""16-bit params: how far each Adadelta lands from the exact rule (a float64 run).

The same float32 gradients, rounded to the params' dtype, go to every optimizer for ``--steps``
steps from the same params: ours (the step computed in float32, rounded once), ``optax.adadelta``,
``torch.optim.Adadelta``, Keras 3 (JAX backend) and tf.keras 2.x (``legacy.Adadelta``, TF's C++
kernel), each on float16 and on bfloat16 params (where the framework takes them), and the float64
run of the formula from the same starting params and gradients. Printed per framework and dtype:
``max |p - p64| / max |p64 - p0|`` (the error in the params as a fraction of how far they moved)
and the same for ``E[g^2]``. A framework that refuses a dtype prints its error.

Usage::

  python benchmarks/parity_16bit.py [--steps 100] [--out docs/parity_16bit.md]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

LR, RHO, EPSILON = 1.0, 0.95, 1e-6
N = 256  # params


def problem(steps: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  return rng.uniform(-1, 1, N), rng.normal(0, 0.1, (steps, N))


def exact(p0: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  p, a, d = p0.copy(), np.zeros(N), np.zeros(N)
  for g in grads:
    a = RHO * a + (1 - RHO) * g * g
    u = np.sqrt(d + EPSILON) / np.sqrt(a + EPSILON) * g
    d = RHO * d + (1 - RHO) * u * u
    p = p - LR * u
  return p, a


def ours(p0, grads, dtype):
  import jax
  import jax.numpy as jnp

  import adadelta_optax

  tx = adadelta_optax.adadelta(learning_rate=LR, rho=RHO, epsilon=EPSILON)
  p = jnp.asarray(p0, dtype)
  state = tx.init(p)
  step = jax.jit(tx.apply_gradients)
  for g in grads:
    p, state = step(jnp.asarray(g, dtype), state, p)
  return np.asarray(p, np.float64), np.asarray(state.accum_grad, np.float64)


def optax_(p0, grads, dtype):
  import jax
  import jax.numpy as jnp
  import optax

  tx = optax.adadelta(LR, RHO, EPSILON)
  p = jnp.asarray(p0, dtype)
  state = tx.init(p)

  @jax.jit
  def step(g, state, p):
    u, state = tx.update(g, state, p)
    return optax.apply_updates(p, u), state

  for g in grads:
    p, state = step(jnp.asarray(g, dtype), state, p)
  (inner,) = [s for s in state if isinstance(s, optax.ScaleByAdaDeltaState)]
  return np.asarray(p, np.float64), np.asarray(inner.e_g, np.float64)


def torch_(p0, grads, dtype):
  import torch

  tdtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
  p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32).to(tdtype))
  opt = torch.optim.Adadelta([p], lr=LR, rho=RHO, eps=EPSILON)
  for g in grads:
    p.grad = torch.tensor(g, dtype=torch.float32).to(tdtype)
    opt.step()
  accum = opt.state[p]["square_avg"].float().numpy().astype(np.float64)
  return p.detach().float().numpy().astype(np.float64), accum


def keras3(p0, grads, dtype):
  import keras

  v = keras.Variable(np.asarray(p0, np.float32), dtype=dtype)
  opt = keras.optimizers.Adadelta(learning_rate=LR, rho=RHO, epsilon=EPSILON)
  opt.build([v])
  for g in grads:
    opt.apply_gradients([(keras.ops.cast(np.asarray(g, np.float32), dtype), v)])
  accum = next(w for w in opt.variables if "accumulated_grad" in w.path)
  return np.asarray(v.value, np.float64), np.asarray(accum.value, np.float64)


def tf_keras_(p0, grads, dtype):
  import tensorflow as tf
  import tf_keras

  v = tf.Variable(tf.cast(np.asarray(p0, np.float32), dtype))
  opt = tf_keras.optimizers.legacy.Adadelta(learning_rate=LR, rho=RHO, epsilon=EPSILON)
  for g in grads:
    opt.apply_gradients([(tf.cast(np.asarray(g, np.float32), dtype), v)])
  accum = opt.get_slot(v, "accum_grad")
  return tf.cast(v, tf.float64).numpy(), tf.cast(accum, tf.float64).numpy()


FRAMEWORKS = {
  "adadelta_optax": ours,
  "optax.adadelta": optax_,
  "torch.optim.Adadelta": torch_,
  "Keras 3 (JAX)": keras3,
  "tf.keras 2.x legacy": tf_keras_,
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--out", default=None, help="also write the table (Markdown) here")
  args = parser.parse_args()
  p0, grads = problem(args.steps)
  rows = [
    f"{args.steps} steps, {N} params from U(-1, 1), gradients N(0, 0.1^2) rounded to the params'"
    f" dtype; lr={LR}, rho={RHO}, epsilon={EPSILON}. Error: max |x - x64| / max |x64 - x0| for"
    " the params, max |A - A64| / max |A64| for E[g^2].",
    "",
    "| optimizer | float16 params | float16 E[g^2] | bfloat16 params | bfloat16 E[g^2] |",
    "|---|---|---|---|---|",
  ]
  for name, run in FRAMEWORKS.items():
    cells = []
    for dtype in ("float16", "bfloat16"):
      g = np.asarray(grads, np.float32)
      import ml_dtypes  # noqa: F401 - registers bfloat16 with NumPy

      rounded = g.astype(dtype).astype(np.float64)
      start = p0.astype(np.float32).astype(dtype).astype(np.float64)
      p64, a64 = exact(start, rounded)
      try:
        p, a = run(start, rounded, dtype)
      except Exception as error:  # noqa: BLE001 - reported in the table
        cells += [f"refused: {type(error).__name__}", ""]
        continue
      moved = np.max(np.abs(p64 - start))
      cells += [
        f"{np.max(np.abs(p - p64)) / moved:.2e}",
        f"{np.max(np.abs(a - a64)) / np.max(np.abs(a64)):.2e}",
      ]
    rows.append(f"| {name} | " + " | ".join(cells) + " |")
  table = "\n".join(rows)
  print(table)
  if args.out:
    with open(args.out, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
