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
# # adadelta_optax: quickstart
#
# Adadelta (Zeiler 2012) as a pure JAX/Optax gradient transformation. This notebook shows:
#
# 1. Adadelta inside an `optax.chain`, with gradient clipping and a learning-rate schedule, and
#    a jitted training step;
# 2. the optimizer state, `AdadeltaState(count, accum_grad, accum_var)`;
# 3. reading and changing hyperparameters between jitted steps with `optax.inject_hyperparams`,
#    without recompiling;
# 4. checkpointing parameters and optimizer state with Orbax, and resuming exactly.
#
# It runs on a CPU in well under a minute (Colab: *Runtime > Run all*). The data is
# scikit-learn's bundled 8x8 digits: nothing is downloaded besides the package itself.

# %%
# Installs what is missing; a no-op when everything is importable.
# adadelta-optax is not on a package index yet: in a checkout it is installed
# from there (pip install -e ..), elsewhere (Colab) from REPO_URL below.
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO_URL = "https://github.com/OWNER/adadelta_optax"  # set OWNER

_needed = {"adadelta_optax": "adadelta-optax", "orbax.checkpoint": "orbax-checkpoint"}
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
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import orbax.checkpoint as ocp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import adadelta_optax

print(
  f"adadelta_optax {adadelta_optax.__version__}, jax {jax.__version__}, optax {optax.__version__}"
)

# %% [markdown]
# ## A small problem: an MLP on the 8x8 digits
#
# 1,797 images of 64 pixels, a fixed 80/20 split, and a 64-128-10 tanh network written as a
# plain pytree of arrays (any Flax, Equinox or Haiku model works the same way: the optimizer
# only sees the parameter pytree).

# %%
digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
  (digits.data / 16.0).astype(np.float32),
  digits.target.astype(np.int32),
  test_size=0.2,
  random_state=0,
  stratify=digits.target,
)
print(f"{len(x_train)} training and {len(x_test)} test images, {x_train.shape[1]} pixels each")


def init_params(key, sizes=(64, 128, 10)):
  params = []
  keys = jax.random.split(key, len(sizes) - 1)
  for layer_key, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
    w = jax.nn.initializers.glorot_uniform()(layer_key, (fan_in, fan_out))
    params.append({"w": w, "b": jnp.zeros(fan_out)})
  return params


def logits_fn(params, x):
  for layer in params[:-1]:
    x = jnp.tanh(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits_fn(params, x), y).mean()


def test_error(params):
  return float(jnp.mean(jnp.argmax(logits_fn(params, x_test), -1) != y_test))


# %% [markdown]
# ## 1. Adadelta in a chain, with clipping and a schedule
#
# `adadelta_optax.adadelta(...)` is an ordinary optax transformation, so it composes with
# everything in optax. Here: clip the global gradient norm to 1, then Adadelta with the paper's
# `rho=0.95, epsilon=1e-6` and a cosine-decayed learning rate (Adadelta's "learning rate" is a
# multiplier on its own adaptive step; 1.0 is the paper's).
#
# The same clipping is also built in: `adadelta(global_clipnorm=1.0)` (tf.keras' option, with
# `clipnorm` and `clipvalue`).

# %%
NUM_STEPS, BATCH = 600, 64
schedule = optax.cosine_decay_schedule(init_value=1.0, decay_steps=NUM_STEPS, alpha=0.1)
tx = optax.chain(
  optax.clip_by_global_norm(1.0),
  adadelta_optax.adadelta(learning_rate=schedule, rho=0.95, epsilon=1e-6),
)


def make_train_step(tx):
  @jax.jit
  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return train_step


def batches(seed, num_steps, batch=BATCH):
  """Mini-batches of the training set, reshuffled every epoch (seeded)."""
  rng = np.random.default_rng(seed)
  order = np.empty(0, dtype=int)
  for _ in range(num_steps):
    if len(order) < batch:
      order = np.concatenate([order, rng.permutation(len(x_train))])
    idx, order = order[:batch], order[batch:]
    yield x_train[idx], y_train[idx]


train_step = make_train_step(tx)
params = init_params(jax.random.key(0))
opt_state = tx.init(params)
losses = []
for x, y in batches(seed=0, num_steps=NUM_STEPS):
  params, opt_state, loss = train_step(params, opt_state, x, y)
  losses.append(float(loss))
print(
  f"after {NUM_STEPS} steps: training loss {losses[-1]:.4f}, test error {test_error(params):.2%}"
)

fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3))
ax_loss.semilogy(losses, lw=0.8)
ax_loss.set(xlabel="step", ylabel="training loss (mini-batch)", title="Adadelta + clipping")
ax_lr.plot([schedule(i) for i in range(NUM_STEPS)])
ax_lr.set(xlabel="step", ylabel="learning rate", title="cosine schedule")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The optimizer state
#
# The chain's state is a tuple with one entry per transformation; Adadelta's is
# `AdadeltaState(count, accum_grad, accum_var)`: the number of updates applied (at which the
# schedule is evaluated), $E[g^2]$ and $E[\Delta x^2]$, one array per parameter.
# `optax.tree_utils.tree_get` finds a field by name anywhere in the state.

# %%
adadelta_state = opt_state[1]
print(type(adadelta_state).__name__, "count =", int(adadelta_state.count))
for name in ("accum_grad", "accum_var"):
  tree = optax.tree_utils.tree_get(opt_state, name)
  print(name, [(layer["w"].shape, f"mean {float(layer['w'].mean()):.2e}") for layer in tree])

# %% [markdown]
# ## 3. Reading and changing hyperparameters: `optax.inject_hyperparams`
#
# Wrapped in `optax.inject_hyperparams`, every numeric argument of `adadelta` becomes part of the
# state (`state.hyperparams`), so a jitted step reads it as data: changing it does not
# recompile, as long as the new value has the old one's type: a float32 scalar array, not a
# Python float nor a *weakly typed* `jnp.asarray(0.5)`, which jit would see as a new input type
# and compile for again. `set_hyperparams` below takes care of that.

# %%
tx = optax.inject_hyperparams(adadelta_optax.adadelta)(learning_rate=1.0, rho=0.95, epsilon=1e-6)
train_step = make_train_step(tx)
params = init_params(jax.random.key(0))
opt_state = tx.init(params)
print("hyperparameters:", {k: round(float(v), 6) for k, v in opt_state.hyperparams.items()})


def set_hyperparams(opt_state, **values):
  """A copy of ``opt_state`` with new hyperparameter values, each of the old value's dtype."""
  old = opt_state.hyperparams
  new = {name: jnp.asarray(value, dtype=old[name].dtype) for name, value in values.items()}
  return optax.tree_utils.tree_set(opt_state, **new)


for x, y in batches(seed=0, num_steps=200):
  params, opt_state, loss = train_step(params, opt_state, x, y)
print(f"200 steps at learning rate 1.0: test error {test_error(params):.2%}")

# Freeze the parameters (learning rate 0): Adadelta's accumulators still move.
opt_state = set_hyperparams(opt_state, learning_rate=0.0)
frozen = params
for x, y in batches(seed=1, num_steps=50):
  params, opt_state, loss = train_step(params, opt_state, x, y)
unchanged = all(jax.tree.leaves(jax.tree.map(jnp.array_equal, params, frozen)))
print(f"learning rate 0 for 50 steps: parameters unchanged: {unchanged}")

opt_state = set_hyperparams(opt_state, learning_rate=0.5, rho=0.9)
for x, y in batches(seed=2, num_steps=200):
  params, opt_state, loss = train_step(params, opt_state, x, y)
print(f"200 more steps at lr 0.5, rho 0.9: test error {test_error(params):.2%}")
print("hyperparameters now:", {k: round(float(v), 6) for k, v in opt_state.hyperparams.items()})
print("compilations of the training step:", train_step._cache_size())

# %% [markdown]
# ## 4. Checkpointing with Orbax
#
# Parameters and optimizer state are pytrees of arrays, so Orbax saves them as they are. To
# restore, give Orbax the *structure* to fill (shapes and dtypes of a freshly initialised state):
# the result has the original types (`InjectHyperparamsState`, `AdadeltaState`, ...) and
# training resumes exactly where it stopped.

# %%
ckpt_dir = Path(tempfile.mkdtemp()) / "checkpoints"
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(ckpt_dir / "step_450", {"params": params, "opt_state": opt_state})
checkpointer.wait_until_finished()
print("saved:", sorted(p.name for p in ckpt_dir.iterdir()))

# A new process would rebuild the optimizer and an initial state to describe the structure.
template = {"params": init_params(jax.random.key(1)), "opt_state": tx.init(params)}
abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
restored = checkpointer.restore(ckpt_dir / "step_450", abstract)
print("restored state type:", type(restored["opt_state"]).__name__)
print(
  "restored hyperparameters:",
  {k: round(float(v), 6) for k, v in restored["opt_state"].hyperparams.items()},
)

# Resuming from the checkpoint gives bit-for-bit the same training as never stopping.
resumed_params, resumed_state = restored["params"], restored["opt_state"]
for x, y in batches(seed=3, num_steps=100):
  params, opt_state, _ = train_step(params, opt_state, x, y)
  resumed_params, resumed_state, _ = train_step(resumed_params, resumed_state, x, y)
same = jax.tree.leaves(
  jax.tree.map(jnp.array_equal, (params, opt_state), (resumed_params, resumed_state))
)
print(f"100 steps after resuming: identical parameters and state: {all(same)}")
print(f"final test error {test_error(params):.2%}")

# %% [markdown]
# ## Next
#
# * `adadelta_optax.presets.paper()`, `.keras_v1()`, `.keras_v2()`, `.keras3()`, `.torch()`,
#   `.optax()`: each framework's exact defaults and conventions.
# * `flax_nnx_mnist.ipynb`: a Flax NNX model on MNIST, Adadelta next to SGD, momentum, Adagrad
#   and Adam.
# * The repository's `examples/`: Zeiler 2012's MNIST tables reproduced, and the PyTorch and Keras
#   Adadelta CNN recipes.
