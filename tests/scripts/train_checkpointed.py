"""``python train_checkpointed.py CKPT_DIR STEPS EVERY OUT``: trains, checkpoints, resumes.

Resumes from the newest complete checkpoint in CKPT_DIR (``step_N``); prints ``saved N`` after
each checkpoint; writes the final params and state to OUT (.npz).
"""

import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import adadelta_optax


def main(ckpt_dir, steps, every, out):
  tx = adadelta_optax.adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-6)
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)}
  state = tx.init(params)
  start = 0
  found = sorted(
    (int(m.group(1)) for m in map(re.compile(r"^step_(\d+)$").match, os.listdir(ckpt_dir)) if m),
    reverse=True,
  )
  for step in found:
    try:
      tree = adadelta_optax.checkpoint.restore_checkpoint(
        os.path.join(ckpt_dir, f"step_{step}"), {"params": params, "opt_state": state}
      )
    except adadelta_optax.checkpoint.CheckpointError as error:
      print("skipping", step, error, flush=True)
      continue
    params, state, start = tree["params"], tree["opt_state"], step
    break
  step_fn = jax.jit(tx.apply_gradients)
  for t in range(start, steps):
    grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1)) + 0.1, params)
    params, state = step_fn(grads, state, params)
    if (t + 1) % every == 0:
      path = os.path.join(ckpt_dir, f"step_{t + 1}")
      adadelta_optax.checkpoint.save_checkpoint(path, {"params": params, "opt_state": state})
      print("saved", t + 1, flush=True)
      time.sleep(0.05)
  leaves = jax.tree_util.tree_flatten_with_path((params, state))[0]
  np.savez(out, **{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves})


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
