# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Migrating Adadelta training from PyTorch and Keras to JAX, and back
#
# A model half-trained with `torch.optim.Adadelta`, tf.keras 2.x's or Keras 3's `Adadelta` goes
# on training in JAX with the optimizer's **config** and **state** carried over, and gives the
# **same numbers** as if it had stayed where it was. Each section runs the real framework next to
# JAX on the same mini-batches:
#
# 1. **PyTorch**: `optimizer.state_dict()` (param groups with and without weight decay, and a
#    `StepLR` schedule) into `from_torch_state_dict`; both continue; then `to_torch_state_dict`
#    into a fresh torch optimizer, and both continue again;
# 2. **tf.keras 2.x** (`tf_keras.optimizers.legacy.Adadelta`, TensorFlow's C++ kernels):
#    `get_config()` into `from_keras_config`, `get_weights()` into `set_weights`; and back;
# 3. **Keras 3** (JAX backend): `get_config()` into `from_keras_config`, `optimizer.variables`
#    into `set_keras3_variables`; and back with `to_keras_config` and `keras3_variables`;
# 4. a plot of the per-step differences.
#
# Everything runs in float64, so that "the same numbers" can be checked tightly: after every
# hand-over the parameters and the optimizer state of both sides must agree to 1e-12 relative
# (`max |ours - theirs| / max |theirs|` per array), the bound of the package's own parity tests
# (`tests/test_interop_*.py`; in float32 they require 1e-6). Each section `assert`s it.
#
# It runs on a CPU in well under a minute (Colab: *Runtime > Run all*, on a fresh runtime: Keras
# must be imported with the JAX backend). The data is scikit-learn's bundled 8x8 digits.

# %%
# Installs what is missing; a no-op when everything is importable.
# adadelta-optax is not on a package index yet: in a checkout it is installed
# from there (pip install -e ..), elsewhere (Colab) from REPO_URL below.
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_URL = "https://github.com/OWNER/adadelta_optax"  # set OWNER

_needed = {
  "adadelta_optax": "adadelta-optax",
  "torch": "torch",
  "tensorflow": "tensorflow",
  "tf_keras": "tf-keras",
  "keras": "keras",
}
_missing = [pip for module, pip in _needed.items() if importlib.util.find_spec(module) is None]
if "adadelta-optax" in _missing:
  _checkout = Path.cwd().parent  # notebooks/ in a checkout
  _local = "google.colab" not in sys.modules and (_checkout / "adadelta_optax").is_dir()
  _source = f"--editable={_checkout}" if _local else f"adadelta-optax @ git+{REPO_URL}"
  if "OWNER" in _source:
    raise RuntimeError("adadelta-optax is missing: set OWNER in REPO_URL.")
  _missing[_missing.index("adadelta-optax")] = _source
if _missing:
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *_missing])

# %% [markdown]
# Colab has torch, TensorFlow, tf-keras and Keras preinstalled. Elsewhere, install torch's CPU
# build before running the cell above (`pip install torch --index-url
# https://download.pytorch.org/whl/cpu`): the default build brings gigabytes of CUDA libraries
# that this notebook does not use.
#
# Keras 3 reads its backend once, at its first import (TensorFlow may import it too), so
# `KERAS_BACKEND=jax` is set before anything else; `jax_enable_x64` turns on float64 in JAX.
# `TF_CPP_MIN_LOG_LEVEL=3` quiets TensorFlow's C++ log (without a GPU it reports one at error
# level); the few lines it prints at import, before that setting applies, are harmless notes.

# %%
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses
import json
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import keras
import matplotlib.pyplot as plt
import numpy as np
import optax
import tensorflow as tf
import tf_keras
import torch
from sklearn.datasets import load_digits

import adadelta_optax

assert keras.backend.backend() == "jax", "restart the runtime: keras was imported before"
print(
  f"adadelta_optax {adadelta_optax.__version__}, jax {jax.__version__}, "
  f"torch {torch.__version__}, tensorflow {tf.__version__}, tf_keras {tf_keras.__version__}, "
  f"keras {keras.__version__}"
)

# %% [markdown]
# ## The problem, the same for every framework
#
# The 1,437 training images of a fixed 80/20 split of the digits, in mini-batches of 64 drawn
# from a seeded shuffle per epoch (22 steps per epoch, the last partial batch dropped), and a
# 64-64-10 ReLU network with a softmax cross-entropy loss. In JAX the model is a plain list of
# arrays `[W1, b1, W2, b2]`, kernels `(in, out)` as in Keras; the same function computes the JAX
# loss in every section, and each framework computes its own loss and gradients.
#
# (ReLU rather than tanh: Keras 3 computes `tanh` of a float64 tensor in float32, which would
# limit this comparison to ~1e-7 for reasons that have nothing to do with the optimizer.)

# %%
digits = load_digits()
rng = np.random.default_rng(0)
split = rng.permutation(len(digits.data))[: int(0.8 * len(digits.data))]
x_train = digits.data[split] / 16.0  # float64
y_train = digits.target[split].astype(np.int32)
BATCH = 64
STEPS_PER_EPOCH = len(x_train) // BATCH
RTOL = 1e-12  # float64 bound of tests/migration.py (float32: 1e-6)
# The epochs of each section's three phases: in the framework alone; in it and in JAX side by
# side; in a fresh framework optimizer (holding the state handed back from JAX) and in JAX.
FIRST, BOTH, BACK = range(0, 2), range(2, 5), range(5, 7)


def epoch_batches(epoch):
  """The mini-batch index arrays of ``epoch``: a seeded shuffle, the last partial batch dropped."""
  order = np.random.default_rng(1000 + epoch).permutation(len(x_train))
  return order[: STEPS_PER_EPOCH * BATCH].reshape(STEPS_PER_EPOCH, BATCH)


def loss_fn(params, x, y):
  w1, b1, w2, b2 = params
  logits = jax.nn.relu(x @ w1 + b1) @ w2 + b2
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_train_step(tx):
  @jax.jit
  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return train_step


def max_rel_diff(ours, theirs):
  """``max |ours - theirs| / max |theirs|`` over the arrays of two equally long lists."""
  ours, theirs = list(ours), list(theirs)
  assert len(ours) == len(theirs), (len(ours), len(theirs))
  worst = 0.0
  for a, b in zip(ours, theirs, strict=True):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b))
    worst = max(worst, float(np.max(np.abs(a - b)) / scale) if scale else float(np.max(a != b)))
  return worst


def check(what, ours, theirs):
  """Prints the difference and asserts it is within RTOL (stricter than the tests' check, which
  also allows ``RTOL * |theirs|`` elementwise)."""
  diff = max_rel_diff(ours, theirs)
  print(f"  {what:42s} max relative difference {diff:.2e}")
  assert diff <= RTOL, f"{what}: {diff:.3g} > {RTOL}"
  return diff


print(f"{len(x_train)} training images, {STEPS_PER_EPOCH} steps of {BATCH} per epoch")
history = {}  # section -> (framework's losses, JAX's losses, per-step differences)

# %% [markdown]
# ## 1. PyTorch
#
# A typical torch setup: weights decayed, biases not (two param groups), `lr=1.0` (Adadelta's
# learning rate multiplies its own adaptive step) and a `StepLR` that multiplies it by 0.7 after
# every epoch. Trained for 2 epochs.

# %%
torch.manual_seed(0)
torch_x, torch_y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()


def torch_model():
  return torch.nn.Sequential(
    torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
  ).double()


def torch_optimizer(model):
  weights = [model[0].weight, model[2].weight]
  biases = [model[0].bias, model[2].bias]
  return torch.optim.Adadelta(
    [{"params": weights, "weight_decay": 1e-3}, {"params": biases, "weight_decay": 0.0}], lr=1.0
  )


def torch_step(model, optimizer, idx):
  optimizer.zero_grad()
  loss = torch.nn.functional.cross_entropy(model(torch_x[idx]), torch_y[idx])
  loss.backward()
  optimizer.step()
  return loss.item()


def torch_params(model):
  """The torch model's weights in the JAX layout ``[W1, b1, W2, b2]``, kernels ``(in, out)``."""
  return [p.detach().numpy().T.copy() for p in model.parameters()]


model = torch_model()
optimizer = torch_optimizer(model)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
torch_losses = []
for epoch in FIRST:
  torch_losses += [torch_step(model, optimizer, idx) for idx in epoch_batches(epoch)]
  scheduler.step()
print(f"torch: {len(FIRST)} epochs, loss {torch_losses[-1]:.4f}, lr now {scheduler.get_last_lr()}")

# %% [markdown]
# ### Config and state in: `from_torch_state_dict`
#
# The state dict numbers torch's parameters group by group (decayed `W1, W2`, then `b1, b2`);
# `order` says which JAX leaf each one is, and `axes` how to transpose it (a `Linear` weight is
# `(out, in)`). The param groups become the optimizer: `presets.torch` with their `lr`, `rho`,
# `eps`, and `weight_decay` as a mask. The scheduler is not part of the optimizer's state: torch
# only leaves the current `lr` in the groups (and an `initial_lr`, which the package warns about),
# so the `StepLR` becomes the equivalent optax schedule, a staircase on the update count.
# (`optax.exponential_decay(1.0, 22, 0.7, staircase=True)` is that staircase too, good for
# training, but it computes in float32, and a power rather than torch's repeated product: for a
# comparison to 1e-12 the schedule below repeats torch's float64 arithmetic.)

# %%
ORDER = [0, 2, 1, 3]  # torch parameter i (W1, W2, b1, b2) -> JAX leaf (W1, b1, W2, b2)
AXES = {0: (1, 0), 1: (1, 0)}  # torch's W1 and W2 are transposed
GROUPS = [[0, 1], [2, 3]]  # torch parameter indices of each param group
params = torch_params(model)
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  tx, opt_state = adadelta_optax.interop.from_torch_state_dict(
    optimizer.state_dict(), params, order=ORDER, axes=AXES
  )
for warning in caught:
  print("warning:", warning.message)
config = tx.config  # the typed, frozen AdadeltaConfig torch's state dict described
names = ("learning_rate", "rho", "epsilon", "weight_decay", "weight_decay_mask")
print({k: getattr(config, k) for k in names})
print(f"state: count {int(opt_state.count)} (torch's step)")


def step_lr(initial_lr, gamma, steps_per_epoch):
  """torch's ``StepLR(step_size=1, gamma)``, stepped once per epoch, as an optax schedule."""

  def schedule(count):
    # As torch does: the float64 lr multiplied by gamma once per epoch done.
    multiply = lambda _, lr: lr * gamma  # noqa: E731
    return jax.lax.fori_loop(0, count // steps_per_epoch, multiply, jnp.float64(initial_lr))

  return schedule


schedule = step_lr(1.0, 0.7, STEPS_PER_EPOCH)
tx = adadelta_optax.from_adadelta_config(dataclasses.replace(config, learning_rate=schedule))
assert float(schedule(opt_state.count)) == scheduler.get_last_lr()[0]

# %% [markdown]
# ### Same numbers out: both continue for 3 epochs
#
# After every step, the largest difference between the two sets of parameters; at the end, the
# parameters and the state (`square_avg` = `accum_grad`, `acc_delta` = `accum_var`, `step` =
# `count`).


# %%
def compare_torch(tx, params, opt_state, model, optimizer):
  check("params", params, torch_params(model))
  ours = adadelta_optax.interop.to_torch_state_dict(
    tx, opt_state, order=ORDER, axes=AXES, groups=GROUPS
  )
  ours = ours["state"]
  theirs = optimizer.state_dict()["state"]
  for key in ("square_avg", "acc_delta"):
    check(f"state {key!r}", [ours[i][key] for i in range(4)], [theirs[i][key] for i in range(4)])
  assert all(float(ours[i]["step"]) == float(theirs[i]["step"]) for i in range(4))


def continue_torch_and_jax(tx, params, opt_state, model, optimizer, scheduler, epochs):
  train_step = make_train_step(tx)
  losses, jax_losses, diffs = [], [], []
  for epoch in epochs:
    for idx in epoch_batches(epoch):
      losses.append(torch_step(model, optimizer, idx))
      params, opt_state, loss = train_step(params, opt_state, x_train[idx], y_train[idx])
      jax_losses.append(float(loss))
      diffs.append(max_rel_diff(params, torch_params(model)))
    scheduler.step()
  return params, opt_state, losses, jax_losses, diffs


def at_current_lr(tx, opt_state):
  """``tx`` with its schedule replaced by the number it has now (what torch's groups hold)."""
  lr = float(tx.hyperparams["learning_rate"](opt_state.count))
  return adadelta_optax.adadelta(**{**tx.hyperparams, "learning_rate": lr})


params, opt_state, losses, jax_losses, diffs = continue_torch_and_jax(
  tx, params, opt_state, model, optimizer, scheduler, BOTH
)
print(f"after {len(FIRST)} + {len(BOTH)} epochs (count {int(opt_state.count)}):")
compare_torch(at_current_lr(tx, opt_state), params, opt_state, model, optimizer)

# %% [markdown]
# ### And back: `to_torch_state_dict` into a fresh torch optimizer
#
# A new model holding the JAX parameters, a new optimizer with the same groups, the JAX state
# through `load_state_dict`, and a new `StepLR` (the hand-over is at an epoch boundary, so
# starting it from the current `lr` continues the same staircase). Both train 2 more epochs.

# %%
model_back = torch_model()
with torch.no_grad():
  for p, value in zip(model_back.parameters(), params, strict=True):
    p.copy_(torch.from_numpy(np.asarray(value).T.copy()))
optimizer_back = torch_optimizer(model_back)
optimizer_back.load_state_dict(
  adadelta_optax.interop.to_torch_state_dict(
    at_current_lr(tx, opt_state), opt_state, order=ORDER, axes=AXES, groups=GROUPS
  )
)
scheduler_back = torch.optim.lr_scheduler.StepLR(optimizer_back, step_size=1, gamma=0.7)
print("torch lr after loading:", scheduler_back.get_last_lr())

params, opt_state, losses_back, jax_losses_back, diffs_back = continue_torch_and_jax(
  tx, params, opt_state, model_back, optimizer_back, scheduler_back, BACK
)
print(f"after {len(BACK)} more epochs in the fresh torch optimizer and in JAX:")
compare_torch(at_current_lr(tx, opt_state), params, opt_state, model_back, optimizer_back)
history["PyTorch"] = (
  torch_losses + losses + losses_back,
  jax_losses + jax_losses_back,
  diffs + diffs_back,
)

# %% [markdown]
# ## 2. tf.keras 2.x
#
# The OptimizerV2 `Adadelta` (today `tf_keras.optimizers.legacy.Adadelta`), trained with
# `model.train_on_batch`, TensorFlow's own float64 forward and backward pass and its C++
# `ResourceApplyAdadelta` kernel. Its config uses the legacy inverse-time `decay` and per-variable
# `clipnorm`; `from_keras_config` reads it with tf.keras 2.x's semantics (e.g. `decay` reaches the
# step as float32, as in TensorFlow).
# `get_weights()` is `[iterations, accum_grad of each variable..., accum_var of each variable...]`:
# `set_weights` puts it into the state (tf.keras 1.x's list, without `iterations`, works too).

# %%
tf_keras.utils.set_random_seed(0)


def tf_keras_model():
  model = tf_keras.Sequential(
    [
      tf_keras.Input((64,), dtype="float64"),
      tf_keras.layers.Dense(64, activation="relu", dtype="float64"),
      tf_keras.layers.Dense(10, dtype="float64"),
    ]
  )
  return model


def compile_tf_keras(model, optimizer):
  loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(optimizer=optimizer, loss=loss)


def keras_step(model, idx):
  return float(model.train_on_batch(x_train[idx], y_train[idx]))


model = tf_keras_model()
optimizer = tf_keras.optimizers.legacy.Adadelta(
  learning_rate=1.0, rho=0.95, epsilon=1e-6, decay=0.01, clipnorm=1.0
)
compile_tf_keras(model, optimizer)
keras_losses = [keras_step(model, idx) for e in FIRST for idx in epoch_batches(e)]
config = json.loads(json.dumps(optimizer.get_config(), default=float))  # as saved to a file
print(f"tf.keras 2.x: {len(FIRST)} epochs, loss {keras_losses[-1]:.4f}")
print("config:", config)

tx = adadelta_optax.interop.from_keras_config(config)
params = [v.numpy() for v in model.trainable_variables]  # the order of jax.tree.leaves(params)
opt_state = adadelta_optax.set_weights(tx.init(params), optimizer.get_weights())
print(f"state: count {int(opt_state.count)}")


# %%
def continue_keras_and_jax(tx, params, opt_state, model, epochs):
  train_step = make_train_step(tx)
  losses, jax_losses, diffs = [], [], []
  for epoch in epochs:
    for idx in epoch_batches(epoch):
      losses.append(keras_step(model, idx))
      params, opt_state, loss = train_step(params, opt_state, x_train[idx], y_train[idx])
      jax_losses.append(float(loss))
      diffs.append(max_rel_diff(params, [v.numpy() for v in model.trainable_variables]))
  return params, opt_state, losses, jax_losses, diffs


def compare_tf_keras(params, opt_state, model, optimizer):
  check("params", params, [v.numpy() for v in model.trainable_variables])
  ours, theirs = adadelta_optax.get_weights(opt_state), optimizer.get_weights()
  assert int(ours[0]) == int(theirs[0]), "iterations"
  check("optimizer weights (accum_grad, accum_var)", ours[1:], theirs[1:])


params, opt_state, losses, jax_losses, diffs = continue_keras_and_jax(
  tx, params, opt_state, model, BOTH
)
print(f"after {len(FIRST)} + {len(BOTH)} epochs (iterations {int(opt_state.count)}):")
compare_tf_keras(params, opt_state, model, optimizer)

# %% [markdown]
# ### And back: `to_keras_config` and `get_weights`
#
# `to_keras_config(tx, version=2)` is the config tf.keras wrote (numbers as float32, the way
# TensorFlow holds them). A fresh optimizer from it creates its slots on its first
# `apply_gradients` (here one with zero gradients, which changes no parameter), then takes the
# JAX state with `set_weights`.

# %%
back = adadelta_optax.interop.to_keras_config(tx, version=2)
print("to_keras_config:", back)
assert back.keys() == config.keys()
assert all(np.float32(back[k]) == np.float32(config[k]) for k in back if k != "name")

model_back = tf_keras_model()
model_back.set_weights([np.asarray(p) for p in params])
optimizer_back = tf_keras.optimizers.legacy.Adadelta.from_config(back)
optimizer_back.apply_gradients([(tf.zeros_like(v), v) for v in model_back.trainable_variables])
optimizer_back.set_weights(adadelta_optax.get_weights(opt_state))
compile_tf_keras(model_back, optimizer_back)

params, opt_state, losses_back, jax_losses_back, diffs_back = continue_keras_and_jax(
  tx, params, opt_state, model_back, BACK
)
print(f"after {len(BACK)} more epochs in the fresh tf.keras optimizer and in JAX:")
compare_tf_keras(params, opt_state, model_back, optimizer_back)
history["tf.keras 2.x"] = (
  keras_losses + losses + losses_back,
  jax_losses + jax_losses_back,
  diffs + diffs_back,
)

# %% [markdown]
# ## 3. Keras 3 (JAX backend)
#
# `keras.optimizers.Adadelta` with its decoupled, learning-rate-scaled `weight_decay` and a
# `global_clipnorm`, trained with `model.train_on_batch` (Keras' jitted JAX trainer, Keras' own
# forward and backward pass). The model is float64; the loss is told so too (a Keras 3 loss
# computes in `floatx`, float32, unless given a dtype). `optimizer.variables` are
# `[iteration, learning_rate, then accumulated_grad and accumulated_delta_var of each model
# variable]`: `set_keras3_variables` checks each one's name, shape and value and puts it into the
# state.

# %%
keras.utils.set_random_seed(0)


def keras3_model():
  return keras.Sequential(
    [
      keras.Input((64,), dtype="float64"),
      keras.layers.Dense(64, activation="relu", dtype="float64"),
      keras.layers.Dense(10, dtype="float64"),
    ]
  )


def compile_keras3(model, optimizer):
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
  model.compile(optimizer=optimizer, loss=loss)


model = keras3_model()
optimizer = keras.optimizers.Adadelta(learning_rate=1.0, weight_decay=1e-3, global_clipnorm=1.0)
compile_keras3(model, optimizer)
keras_losses = [keras_step(model, idx) for e in FIRST for idx in epoch_batches(e)]
config = json.loads(json.dumps(optimizer.get_config()))
print(f"Keras 3: {len(FIRST)} epochs, loss {keras_losses[-1]:.4f}")
print("config:", config)

tx = adadelta_optax.interop.from_keras_config(config)
params = [v.numpy() for v in model.trainable_variables]
opt_state = adadelta_optax.interop.set_keras3_variables(tx, tx.init(params), optimizer.variables)
print(f"state: count {int(opt_state.count)}")


# %%
def compare_keras3(tx, params, opt_state, model, optimizer):
  check("params", params, [v.numpy() for v in model.trainable_variables])
  ours = adadelta_optax.interop.keras3_variables(tx, opt_state)
  theirs = [v.numpy() for v in optimizer.variables]
  assert int(ours[0]) == int(theirs[0]) and float(ours[1]) == float(theirs[1])
  check("optimizer variables (accumulators)", ours[2:], theirs[2:])


params, opt_state, losses, jax_losses, diffs = continue_keras_and_jax(
  tx, params, opt_state, model, BOTH
)
print(f"after {len(FIRST)} + {len(BOTH)} epochs (iteration {int(opt_state.count)}):")
compare_keras3(tx, params, opt_state, model, optimizer)

# %% [markdown]
# ### And back: `to_keras_config` and `keras3_variables`
#
# The config round-trips exactly; a fresh optimizer from it is built for the model's variables
# and takes the JAX state with `assign`.

# %%
back = adadelta_optax.interop.to_keras_config(tx, version=3)
unnamed = lambda config: {k: v for k, v in config.items() if k != "name"}  # noqa: E731
print("to_keras_config:", back)
assert unnamed(back) == unnamed(config)

model_back = keras3_model()
model_back.set_weights([np.asarray(p) for p in params])
optimizer_back = keras.optimizers.Adadelta.from_config(back)
optimizer_back.build(model_back.trainable_variables)
for variable, value in zip(
  optimizer_back.variables, adadelta_optax.interop.keras3_variables(tx, opt_state), strict=True
):
  variable.assign(value)
compile_keras3(model_back, optimizer_back)

params, opt_state, losses_back, jax_losses_back, diffs_back = continue_keras_and_jax(
  tx, params, opt_state, model_back, BACK
)
print(f"after {len(BACK)} more epochs in the fresh Keras 3 optimizer and in JAX:")
compare_keras3(tx, params, opt_state, model_back, optimizer_back)
history["Keras 3"] = (
  keras_losses + losses + losses_back,
  jax_losses + jax_losses_back,
  diffs + diffs_back,
)

# %% [markdown]
# ## 4. The differences, step by step
#
# Left: each framework's training loss (solid; Keras reports it in float32) and JAX's from the
# hand-over on (dashed, on top of it). Right: after every step, the largest relative difference
# between the framework's parameters and JAX's. The dotted lines mark the hand-over to JAX and
# the hand-back to a fresh framework optimizer, which starts from JAX's parameters, so the
# difference starts again from zero. It stays at a few float64 rounding errors (float64's eps is
# 2.2e-16), growing slowly as they accumulate, orders of magnitude below the 1e-12 bound.

# %%
handover = len(FIRST) * STEPS_PER_EPOCH
handback = handover + len(BOTH) * STEPS_PER_EPOCH
fig, (ax_loss, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
for i, (name, (losses, jax_losses, diffs)) in enumerate(history.items()):
  color = f"C{i}"
  steps = np.arange(1, len(losses) + 1)
  ax_loss.plot(steps, losses, color=color, lw=1, label=name)
  ax_loss.plot(steps[handover:], jax_losses, "--", color="k", lw=0.8)
  ax_diff.semilogy(steps[handover:], diffs, color=color, lw=1, label=name)
ax_loss.plot([], [], "--", color="k", lw=0.8, label="JAX (adadelta_optax)")
ax_loss.set(yscale="log", xlabel="step", ylabel="training loss (mini-batch)")
ax_diff.axhline(RTOL, color="r", lw=0.8, label="bound (1e-12)")
ax_diff.axhline(np.finfo(np.float64).eps, color="gray", lw=0.8, ls="--", label="float64 eps")
ax_diff.set(xlabel="step", ylabel="max |params - JAX's| / max |params|", ylim=(1e-17, 1e-11))
for ax in (ax_loss, ax_diff):
  ax.axvline(handover, color="k", ls=":", lw=0.8)
  ax.axvline(handback, color="k", ls=":", lw=0.8)
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
fig.tight_layout()
plt.show()

# %%
print(f"{'framework':14s} {'steps compared':>14s} {'largest difference':>19s}")
for name, (_, _, diffs) in history.items():
  print(f"{name:14s} {len(diffs):14d} {max(diffs):19.2e}")

# %% [markdown]
# ## Next
#
# * The README's *Migrating from Keras and PyTorch*: what carries over from each framework
#   (tf.keras 1.x too, schedules, Keras 3's `gradient_accumulation_steps` and `use_ema`), the
#   differences measured by the tests, and the errors for what cannot be carried over.
# * `quickstart.ipynb`: Adadelta in an optax chain, its state, hyperparameters and checkpoints.
