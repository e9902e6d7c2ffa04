"""adadelta_optax.schedules: formulas, optax use, configs, serialization and bad input.

Value-by-value equality with Keras 3 and tf.keras is tested in test_interop_keras.py and
test_interop_tf.py; here the formulas are checked against hand-computed float64 values.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adadelta_optax
from adadelta_optax import schedules

from helpers import enable_x64

F64 = dict(dtype="float64")


def _sgdr_fraction(step):
  start, period = 0, 4
  while step >= start + period:
    start, period = start + period, 2 * period
  return (step - start) / period


FORMULAS = [
  (schedules.ExponentialDecay(2.0, 4, 0.5, **F64), lambda s: 2.0 * 0.5 ** (s / 4)),
  (schedules.ExponentialDecay(2.0, 4, 0.5, staircase=True, **F64), lambda s: 2.0 * 0.5 ** (s // 4)),
  (schedules.InverseTimeDecay(2.0, 4, 0.5, **F64), lambda s: 2.0 / (1 + 0.5 * s / 4)),
  (
    schedules.InverseTimeDecay(2.0, 4, 0.5, staircase=True, **F64),
    lambda s: 2.0 / (1 + 0.5 * (s // 4)),
  ),
  (
    schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.25], **F64),
    lambda s: 1.0 if s <= 3 else (0.5 if s <= 6 else 0.25),
  ),
  (
    schedules.PolynomialDecay(1.0, 8, 0.1, power=2.0, **F64),
    lambda s: 0.9 * (1 - min(s, 8) / 8) ** 2 + 0.1,
  ),
  (
    schedules.PolynomialDecay(1.0, 8, 0.1, cycle=True, **F64),
    lambda s: 0.9 * (1 - s / (8 * max(1, math.ceil(s / 8)))) + 0.1,
  ),
  (
    schedules.CosineDecay(1.0, 8, alpha=0.2, **F64),
    lambda s: 0.8 * 0.5 * (1 + math.cos(math.pi * min(s, 8) / 8)) + 0.2,
  ),
  (
    schedules.CosineDecay(0.0, 8, warmup_target=2.0, warmup_steps=4, **F64),
    lambda s: 2.0 * s / 4 if s < 4 else 2.0 * 0.5 * (1 + math.cos(math.pi * min(s - 4, 8) / 8)),
  ),
  (
    schedules.CosineDecayRestarts(1.0, 4, t_mul=1.0, m_mul=0.5, **F64),
    lambda s: 0.5 ** (s // 4) * 0.5 * (1 + math.cos(math.pi * (s % 4) / 4)),
  ),
  (  # periods 4, 8, 16, 32: restarts at steps 4, 12 and 28
    schedules.CosineDecayRestarts(1.0, 4, t_mul=2.0, **F64),
    lambda s: 0.5 * (1 + math.cos(math.pi * _sgdr_fraction(s))),
  ),
]


IDS = [f"{type(schedule).__name__}-{i}" for i, (schedule, _) in enumerate(FORMULAS)]


@pytest.mark.parametrize(("schedule", "formula"), FORMULAS, ids=IDS)
def test_formula(schedule, formula):
  for step in range(30):
    np.testing.assert_allclose(float(schedule(step)), formula(step), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("schedule", "formula"), FORMULAS, ids=IDS)
def test_every_schedule_traces_under_jit_and_vmap(schedule, formula):
  """Each schedule is a traceable optax schedule: jit, vmap and a jitted optimizer step give the
  hand-computed values (CosineDecayRestarts once raised ConcretizationTypeError under jit)."""
  steps = jnp.arange(30)
  expected = [formula(int(s)) for s in steps]
  np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(steps), expected, rtol=1e-13, atol=1e-15)
  np.testing.assert_allclose(
    [float(jax.jit(schedule)(s)) for s in (0, 5, 13, 29)],
    [expected[s] for s in (0, 5, 13, 29)],
    rtol=1e-13,
    atol=1e-15,
  )
  tx = adadelta_optax.adadelta(learning_rate=schedule)
  params = jnp.ones(2)
  state = tx.init(params)
  for _ in range(3):
    _, state = jax.jit(tx.update)(jnp.ones(2), state, params)
  assert int(state.count) == 3


def test_cosine_decay_restarts_with_a_traced_t_mul():
  """t_mul given as a traced value (e.g. through inject_hyperparams-style plumbing) selects the
  equal-period or geometric formula elementwise, with the same values as the Python number."""
  for t_mul in (1.0, 2.0):
    eager = schedules.CosineDecayRestarts(1.0, 4, t_mul=t_mul, m_mul=0.5, **F64)
    traced = jax.jit(
      lambda step, t: schedules.CosineDecayRestarts(1.0, 4, t_mul=t, m_mul=0.5, **F64)(step)
    )
    for step in range(0, 40, 3):
      np.testing.assert_allclose(
        traced(step, jnp.float64(t_mul)), eager(step), rtol=1e-13, atol=1e-15
      )


def test_is_an_optax_schedule_under_jit_and_in_adadelta():
  schedule = schedules.ExponentialDecay(1.0, 2, 0.5, staircase=True)
  values = jax.jit(jax.vmap(schedule))(jnp.arange(6))
  np.testing.assert_array_equal(values, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
  assert values.dtype == jnp.float32
  tx = adadelta_optax.adadelta(learning_rate=schedule)
  chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
  params = jnp.ones(2)
  state = chained.init(params)
  for _ in range(3):
    _, state = jax.jit(chained.update)(jnp.ones(2), state, params)


ALL = [schedule for schedule, _ in FORMULAS]


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_config_round_trip_and_optimizer_config(schedule):
  back = type(schedule).from_config(json.loads(json.dumps(schedule.get_config())))
  assert back == schedule and hash(back) == hash(schedule)
  assert schedules.deserialize(schedules.serialize(schedule), dtype="float64") == schedule
  tx = adadelta_optax.adadelta(learning_rate=schedule)
  config = json.loads(json.dumps(tx.get_config()))
  assert config["learning_rate"]["class_name"] == type(schedule).__name__
  assert adadelta_optax.Adadelta.from_config(config).config.learning_rate == schedule


def test_keras_names_and_defaults():
  assert schedules.CosineDecayRestarts(1.0, 2).get_config()["name"] == "SGDRDecay"
  assert (
    schedules.PiecewiseConstantDecay([1], [1.0, 0.5]).get_config()["name"] == "PiecewiseConstant"
  )
  assert schedules.PolynomialDecay(1.0, 2).end_learning_rate == 0.0001
  legacy = schedules.serialize(schedules.ExponentialDecay(1.0, 2, 0.5), legacy_format=True)
  assert set(legacy) == {"class_name", "config"} and "dtype" not in legacy["config"]


@pytest.mark.parametrize(
  ("build", "error", "match"),
  [
    (lambda: schedules.ExponentialDecay(1.0, 0, 0.5), ValueError, "decay_steps must be"),
    (lambda: schedules.InverseTimeDecay(1.0, -1, 0.5), ValueError, "decay_steps must be"),
    (lambda: schedules.PolynomialDecay(1.0, 0), ValueError, "decay_steps must be"),
    (lambda: schedules.CosineDecay(1.0, 0), ValueError, "decay_steps must be"),
    (lambda: schedules.CosineDecayRestarts(1.0, 0), ValueError, "first_decay_steps must be"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [1.0]), ValueError, "one entry less"),
    (lambda: schedules.ExponentialDecay(1.0, 2, 0.5, dtype="int32"), TypeError, "float32 or"),
    (lambda: schedules.ExponentialDecay.from_config({"x": 1}), TypeError, r"\['x'\]"),
    (lambda: schedules.deserialize({"config": {}}), TypeError, "serialized Keras schedule"),
    (lambda: schedules.deserialize({"class_name": "Foo", "config": {}}), ValueError, "'Foo'"),
    (
      lambda: schedules.deserialize({"class_name": "CosineDecay", "config": {"dtype": "x"}}),
      TypeError,
      "no 'dtype'",
    ),
    (lambda: schedules.serialize(optax.constant_schedule(1.0)), TypeError, "not one of"),
  ],
)
def test_bad_input(build, error, match):
  with pytest.raises(error, match=match):
    build()


def test_float64_schedule_needs_x64():
  schedule = schedules.ExponentialDecay(1.0, 2, 0.5, dtype="float64")
  with enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
    schedule(1)
