"""Resuming ``torch.optim.Adadelta`` training from its ``state_dict()``, and back.

The MLP of ``migration.py`` is trained as a real ``torch.nn.Sequential`` (``Linear`` weights are
``(out, in)``) k steps with ``loss.backward()``; its ``state_dict()`` goes to
:func:`from_torch_state_dict` with the params converted to a Flax-style dict (kernels ``(in,
out)``, leaves in sorted-key order, so ``order`` and ``axes`` do real work); then m more steps in
both must give the same params and state (float64: 1e-12, float32: 1e-6 relative).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import adadelta_optax

from migration import assert_parity, data, init_params

K_STEPS, M_STEPS = 7, 8
TORCH_DTYPES = {np.float64: torch.float64, np.float32: torch.float32}
# torch parameter order: 0.weight, 0.bias, 2.weight, 2.bias; the JAX leaves sort by key.
ORDER = ["['l0']['kernel']", "['l0']['bias']", "['l1']['kernel']", "['l1']['bias']"]
AXES = {0: (1, 0), 2: (1, 0)}

CASES = {
  "defaults": dict(),
  "lr_rho_eps": dict(lr=0.5, rho=0.8, eps=1e-5),
  "weight_decay": dict(weight_decay=0.05),
  "maximize": dict(maximize=True),
  "bias_without_decay": "groups",
}


def _torch_model(dtype):
  model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
  model = model.to(TORCH_DTYPES[dtype])
  w1, b1, w2, b2 = init_params(dtype)
  with torch.no_grad():
    for p, value in zip(model.parameters(), (w1.T, b1, w2.T, b2), strict=True):
      p.copy_(torch.from_numpy(np.ascontiguousarray(value)))
  return model


def _torch_optimizer(model, case):
  if CASES[case] == "groups":
    weights = [model[0].weight, model[2].weight]
    biases = [model[0].bias, model[2].bias]
    # Group order 0.weight, 2.weight, 0.bias, 2.bias: numbering differs from parameters().
    return torch.optim.Adadelta(
      [{"params": weights, "weight_decay": 0.05}, {"params": biases, "weight_decay": 0.0}]
    )
  return torch.optim.Adadelta(model.parameters(), **CASES[case])


def _torch_train(model, opt, steps, x, y):
  x, y = torch.from_numpy(x), torch.from_numpy(y)
  sign = -1.0 if opt.param_groups[0]["maximize"] else 1.0
  for _ in range(steps):
    opt.zero_grad()
    (sign * torch.mean((model(x) - y) ** 2)).backward()
    opt.step()


def _as_jax(model):
  w1, b1, w2, b2 = (p.detach().numpy().copy() for p in model.parameters())
  return {"l0": {"kernel": w1.T, "bias": b1}, "l1": {"kernel": w2.T, "bias": b2}}


def _order(case):
  if CASES[case] == "groups":  # torch numbering: 0.weight, 2.weight, 0.bias, 2.bias
    return [ORDER[0], ORDER[2], ORDER[1], ORDER[3]], {0: (1, 0), 1: (1, 0)}
  return ORDER, AXES


def _run_jax(tx, params, state, steps, x, y, maximize):
  import jax
  import optax

  sign = -1.0 if maximize else 1.0

  def loss(p):
    hidden = jax.numpy.tanh(x @ p["l0"]["kernel"] + p["l0"]["bias"])
    return sign * jax.numpy.mean((hidden @ p["l1"]["kernel"] + p["l1"]["bias"] - y) ** 2)

  grad = jax.jit(jax.grad(loss))
  params = jax.tree.map(jax.numpy.asarray, params)
  for _ in range(steps):
    updates, state = tx.update(grad(params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _groups(case):
  return [[0, 1], [2, 3]] if CASES[case] == "groups" else None


def _compare(tx, params, state, model, opt, case, key):
  import jax

  order, axes = _order(case)
  assert_parity(jax.tree.leaves(params), jax.tree.leaves(_as_jax(model)), "params", key)
  ours = adadelta_optax.interop.to_torch_state_dict(
    tx, state, order=order, axes=axes, groups=_groups(case)
  )
  theirs = opt.state_dict()
  assert ours["param_groups"] == theirs["param_groups"]
  for slot in ("square_avg", "acc_delta"):
    assert_parity(
      [ours["state"][i][slot].numpy() for i in sorted(ours["state"])],
      [theirs["state"][i][slot].numpy() for i in sorted(theirs["state"])],
      slot,
      key,
    )
  for i, entry in theirs["state"].items():
    assert float(ours["state"][i]["step"]) == float(entry["step"])


@pytest.mark.parametrize(
  ("case", "dtype"),
  [(case, np.float64) for case in sorted(CASES)] + [("weight_decay", np.float32)],
)
def test_resume_torch(case, dtype):
  x, y = data(dtype)
  model = _torch_model(dtype)
  opt = _torch_optimizer(model, case)
  _torch_train(model, opt, K_STEPS, x, y)

  order, axes = _order(case)
  params = _as_jax(model)
  tx, state = adadelta_optax.interop.from_torch_state_dict(
    opt.state_dict(), params, order=order, axes=axes
  )
  assert int(state.count) == K_STEPS
  maximize = opt.param_groups[0]["maximize"]
  _torch_train(model, opt, M_STEPS, x, y)
  params, state = _run_jax(tx, params, state, M_STEPS, x, y, maximize)
  _compare(tx, params, state, model, opt, case, ("PyTorch", f"{case} {np.dtype(dtype).name}"))


@pytest.mark.parametrize("case", ["weight_decay", "bias_without_decay"])
def test_jax_state_back_into_torch(case):
  """JAX → torch: ``to_torch_state_dict`` into a fresh ``torch.optim.Adadelta``."""
  x, y = data()
  model = _torch_model(np.float64)
  start = _as_jax(model)
  order, axes = _order(case)
  tx, state = adadelta_optax.interop.from_torch_state_dict(
    _torch_optimizer(model, case).state_dict(), start, order=order, axes=axes
  )
  assert int(state.count) == 0
  params, state = _run_jax(tx, start, state, K_STEPS, x, y, False)

  with torch.no_grad():
    for p, value in zip(
      model.parameters(),
      (
        params["l0"]["kernel"].T,
        params["l0"]["bias"],
        params["l1"]["kernel"].T,
        params["l1"]["bias"],
      ),
      strict=True,
    ):
      p.copy_(torch.from_numpy(np.array(value)))
  opt = _torch_optimizer(model, case)
  opt.load_state_dict(
    adadelta_optax.interop.to_torch_state_dict(
      tx, state, order=order, axes=axes, groups=_groups(case)
    )
  )
  _torch_train(model, opt, M_STEPS, x, y)
  params, state = _run_jax(tx, params, state, M_STEPS, x, y, False)
  _compare(tx, params, state, model, opt, case, ("PyTorch", f"{case} (JAX to torch)"))


@pytest.mark.parametrize("case", ["lr_rho_eps", "bias_without_decay"])
def test_resume_from_an_older_torch_state_dict(case):
  """A state dict saved by torch < 1.11 has no ``maximize``, ``foreach``, ``capturable`` or
  ``differentiable`` in its groups. torch's own ``load_state_dict`` fills them with its defaults
  (``maximize=False``); so does :func:`from_torch_state_dict`, and training resumes identically.
  A 2.6+ state dict of named parameters (``param_names``) is accepted as torch accepts it too."""
  x, y = data()
  model = _torch_model(np.float64)
  opt = _torch_optimizer(model, case)
  _torch_train(model, opt, K_STEPS, x, y)
  saved = opt.state_dict()
  for group in saved["param_groups"]:
    for key in ("maximize", "foreach", "capturable", "differentiable"):
      del group[key]
    group["param_names"] = [f"p{i}" for i in group["params"]]

  resumed = _torch_optimizer(model, case)
  resumed.load_state_dict(saved)  # torch accepts it
  assert resumed.param_groups[0]["maximize"] is False
  order, axes = _order(case)
  params = _as_jax(model)
  tx, state = adadelta_optax.interop.from_torch_state_dict(saved, params, order=order, axes=axes)
  assert tx.hyperparams["maximize"] is False and int(state.count) == K_STEPS
  _torch_train(model, resumed, M_STEPS, x, y)
  params, state = _run_jax(tx, params, state, M_STEPS, x, y, False)
  for group in resumed.param_groups:  # what to_torch_state_dict writes: today's full groups
    group.pop("param_names", None)
  _compare(tx, params, state, model, resumed, case, ("PyTorch", f"older state dict {case}"))


def test_torch_tensors_are_accepted_as_weights():
  """A torch tensor that requires grad (a live parameter's) is detached and copied; bfloat16
  tensors keep their exact values."""
  tx = adadelta_optax.adadelta(state_dtype=jax.numpy.bfloat16)
  state = tx.init({"w": jax.numpy.ones(3, jax.numpy.bfloat16)})
  live = torch.tensor([0.1, 0.2, 0.3], dtype=torch.bfloat16, requires_grad=True)
  new = tx.set_weights(state, [np.int64(2), live, live.detach().abs()])
  np.testing.assert_array_equal(
    np.asarray(new.accum_grad["w"], np.float32), live.detach().float().numpy()
  )


def test_bfloat16_state_both_ways():
  """torch training in bfloat16: its state dict loads (accumulators bit-exact), trains on, and
  goes back into a fresh torch optimizer that accepts it, still bit-exact."""
  model = torch.nn.Linear(3, 2).to(torch.bfloat16)
  opt = torch.optim.Adadelta(model.parameters(), lr=0.5)
  x = torch.linspace(-1, 1, 12, dtype=torch.bfloat16).reshape(4, 3)
  for _ in range(3):
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
  params = {
    "kernel": jax.numpy.asarray(model.weight.detach().float().numpy().T, jax.numpy.bfloat16),
    "bias": jax.numpy.asarray(model.bias.detach().float().numpy(), jax.numpy.bfloat16),
  }
  order, axes = ["['kernel']", "['bias']"], {0: (1, 0)}
  tx, state = adadelta_optax.interop.from_torch_state_dict(
    opt.state_dict(), params, order=order, axes=axes
  )
  assert state.accum_grad["kernel"].dtype == jax.numpy.bfloat16 and int(state.count) == 3
  theirs = opt.state_dict()["state"]
  np.testing.assert_array_equal(
    np.asarray(state.accum_grad["kernel"], np.float32), theirs[0]["square_avg"].float().numpy().T
  )
  np.testing.assert_array_equal(
    np.asarray(state.accum_var["bias"], np.float32), theirs[1]["acc_delta"].float().numpy()
  )
  back = adadelta_optax.interop.to_torch_state_dict(tx, state, order=order, axes=axes)
  assert back["state"][0]["square_avg"].dtype == torch.bfloat16
  fresh = torch.optim.Adadelta(model.parameters(), lr=0.5)
  fresh.load_state_dict(back)
  for i in (0, 1):
    for slot in ("square_avg", "acc_delta"):
      assert torch.equal(fresh.state_dict()["state"][i][slot], theirs[i][slot]), (i, slot)
