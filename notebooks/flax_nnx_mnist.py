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
# # Adadelta on MNIST with Flax NNX, next to SGD, momentum, Adagrad and Adam
#
# Zeiler 2012's network (784-500-300-10, tanh, softmax, mini-batches of 100) as a Flax NNX
# module, trained for the paper's 6 epochs by five optimizers from the same initial weights and
# the same sequence of mini-batches: Adadelta with the paper's settings and no tuning; SGD,
# momentum and Adagrad at the learning rates that did best for them in the repository's
# reproduction of the paper's grid (`examples/zeiler_table1.py`, `docs/zeiler_table1.md`); and
# Adam at its usual 1e-3. The curves show the training loss and the test error per epoch.
#
# **Data.** MNIST as an `.npz` in Keras' layout (`x_train, y_train, x_test, y_test`), looked for
# at `$MNIST_NPZ`, `./mnist.npz` (on Colab: upload it to the session) and the repository's
# `../../shared/data/mnist.npz`. Nothing is downloaded: without the file the notebook falls back
# to scikit-learn's bundled 8x8 digits, and says so. On a 2-core CPU the full run takes about
# two minutes. With `ADADELTA_NOTEBOOK_QUICK=1` (what CI sets) it trains on 10,000 images for
# 2 epochs instead.

# %%
# Installs what is missing; a no-op when everything is importable.
# adadelta-optax is not on a package index yet: in a checkout it is installed
# from there (pip install -e ..), elsewhere (Colab) from REPO_URL below.
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_URL = "https://github.com/OWNER/adadelta_optax"  # set OWNER

_needed = {"adadelta_optax": "adadelta-optax", "flax": "flax"}
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

# %%
import os
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from matplotlib.ticker import FormatStrFormatter

import adadelta_optax

QUICK = os.environ.get("ADADELTA_NOTEBOOK_QUICK") == "1"
print(
  f"adadelta_optax {adadelta_optax.__version__}, flax {flax.__version__}, "
  f"jax {jax.__version__} on {jax.default_backend()}" + (" -- QUICK mode" if QUICK else "")
)

# %% [markdown]
# ## Data


# %%
def find_mnist():
  """The first MNIST .npz found, or None."""
  candidates = [os.environ.get("MNIST_NPZ"), "mnist.npz", "../../shared/data/mnist.npz"]
  for candidate in candidates:
    if candidate and Path(candidate).is_file():
      return Path(candidate)
  return None


path = find_mnist()
if path is not None:
  with np.load(path) as f:
    x_train, y_train, x_test, y_test = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
  scale, dataset = 255.0, f"MNIST ({path})"
else:
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  digits = load_digits()
  x_train, x_test, y_train, y_test = train_test_split(
    digits.images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
  )
  scale, dataset = 16.0, "scikit-learn's 8x8 digits (MNIST not found: see the top of the notebook)"

x_train, x_test = ((x.reshape(len(x), -1) / scale).astype(np.float32) for x in (x_train, x_test))
y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
EPOCHS, BATCH = 6, 100
if QUICK:
  x_train, y_train, EPOCHS = x_train[:10_000], y_train[:10_000], 2
print(
  f"{dataset}: {len(x_train)} training and {len(x_test)} test images of {x_train.shape[1]} pixels"
)
print(f"{EPOCHS} epochs of {-(-len(x_train) // BATCH)} mini-batches of {BATCH}")

# %% [markdown]
# ## The model: Zeiler 2012's MLP in Flax NNX
#
# Glorot-uniform weights and zero biases (the paper does not say how it initialised them).


# %%
class MLP(nnx.Module):
  def __init__(self, sizes, rngs):
    init = nnx.initializers.glorot_uniform()
    self.hidden1 = nnx.Linear(sizes[0], sizes[1], kernel_init=init, rngs=rngs)
    self.hidden2 = nnx.Linear(sizes[1], sizes[2], kernel_init=init, rngs=rngs)
    self.output = nnx.Linear(sizes[2], sizes[3], kernel_init=init, rngs=rngs)

  def __call__(self, x):
    x = jnp.tanh(self.hidden1(x))
    x = jnp.tanh(self.hidden2(x))
    return self.output(x)


SIZES = (x_train.shape[1], 500, 300, 10)
n_params = sum(p.size for p in jax.tree.leaves(nnx.state(MLP(SIZES, nnx.Rngs(0)), nnx.Param)))
print(f"MLP {'-'.join(map(str, SIZES))}: {n_params:,} parameters")

# %% [markdown]
# ## Training
#
# `nnx.Optimizer(model, tx, wrt=nnx.Param)` takes any optax transformation, so Adadelta is a
# drop-in: `adadelta_optax.presets.paper()` is `adadelta(learning_rate=1.0, rho=0.95,
# epsilon=1e-6)`. One jitted step serves every optimizer.


# %%
@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def test_error(model, x, y):
  return jnp.mean(jnp.argmax(model(x), -1) != y)


def train(tx, seed=0):
  """Trains a fresh MLP; the same seed gives the same initial weights and mini-batches."""
  model = MLP(SIZES, nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  losses, errors = [], []
  start = time.perf_counter()
  for _ in range(EPOCHS):
    order = rng.permutation(len(x_train))
    for i in range(0, len(order), BATCH):
      idx = order[i : i + BATCH]
      losses.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
    errors.append(100 * float(test_error(model, x_test, y_test)))
  return np.asarray(jax.device_get(losses)), np.asarray(errors), time.perf_counter() - start


optimizers = {
  "Adadelta: lr 1, rho 0.95, eps 1e-6 (paper)": adadelta_optax.presets.paper(),
  "SGD: lr 0.1": optax.sgd(0.1),
  "Momentum: lr 0.1, 0.9": optax.sgd(0.1, momentum=0.9),
  # The paper's Adagrad sums squared gradients from zero (optax's default starts at 0.1).
  "Adagrad: lr 0.01": optax.adagrad(0.01, initial_accumulator_value=0.0),
  "Adam: lr 1e-3": optax.adam(1e-3),
}
results = {}
for name, tx in optimizers.items():
  results[name] = train(tx)
  losses, errors, seconds = results[name]
  print(
    f"{name:45s} test error per epoch (%): {', '.join(f'{e:.2f}' for e in errors)}"
    f"   ({seconds:.1f} s)"
  )

# %% [markdown]
# ## Curves

# %%
steps_per_epoch = -(-len(x_train) // BATCH)
window = max(1, steps_per_epoch // 10)
fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
for name, (losses, errors, _) in results.items():
  smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
  ax_loss.plot((np.arange(len(smooth)) + window) / steps_per_epoch, smooth, lw=1, label=name)
  ax_err.plot(np.arange(1, EPOCHS + 1), errors, "o-", ms=4, label=name)
if path is not None and not QUICK:
  ax_err.plot([6], [2.0], "k*", ms=10, label="Zeiler 2012, Adadelta after 6 epochs")
ax_loss.set(yscale="log", xlabel="epoch", ylabel=f"training loss (mean of {window} steps)")
ax_err.set(yscale="log", xlabel="epoch", ylabel="test error (%)", xticks=range(1, EPOCHS + 1))
for ax in (ax_loss, ax_err):
  ax.grid(alpha=0.3, which="both")
ax_err.yaxis.set_major_formatter(FormatStrFormatter("%g"))
ax_err.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
ax_err.legend(fontsize="small")
fig.suptitle(f"{dataset.split(' (')[0]}, {'-'.join(map(str, SIZES))} tanh MLP, batch {BATCH}")
fig.tight_layout()
plt.show()

# %%
print(f"{'optimizer':45s} {'final test error':>16s} {'best':>6s} {'time':>7s}")
for name, (_, errors, seconds) in sorted(results.items(), key=lambda item: item[1][1][-1]):
  print(f"{name:45s} {errors[-1]:15.2f}% {errors.min():5.2f}% {seconds:6.1f}s")

# %% [markdown]
# Adadelta reaches this with the paper's defaults; each of the other optimizers needs its
# learning rate chosen (the repository's `examples/zeiler_table1.py` sweeps them over five
# orders of magnitude, as the paper does: most settings are much worse). The price is memory:
# Adadelta's state, `AdadeltaState(count, accum_grad, accum_var)`, holds two arrays per
# parameter, as Adam's does.
