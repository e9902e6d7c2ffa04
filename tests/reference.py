"""An independent float64 NumPy reference of Adadelta with every option of ``adadelta()``.

Written from the formulas (Zeiler 2012 Algorithm 1 with a learning rate; tf.keras' clipping and
``decay``; torch's coupled and Keras 3's decoupled weight decay), sharing no code with the
package. It works on flat lists of NumPy leaves; complex leaves are two real leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Options:
  learning_rate: float | Callable[[int], float] = 1.0
  rho: float = 0.95
  epsilon: float = 1e-7
  decay: float = 0.0
  clipnorm: float | None = None
  clipvalue: float | None = None
  global_clipnorm: float | None = None
  clip_order: str = "value_then_norm"  # or "norm_then_value" (tf.keras 1.x)
  weight_decay: float = 0.0
  decoupled_weight_decay: bool = False
  mask: Sequence[bool] | None = None  # one bool per leaf
  maximize: bool = False
  extra: dict[str, Any] = field(default_factory=dict)


def _parts(x: np.ndarray) -> list[np.ndarray]:
  return [x.real.copy(), x.imag.copy()] if np.iscomplexobj(x) else [x]


def _join(parts: list[np.ndarray], like: np.ndarray) -> np.ndarray:
  return parts[0] + 1j * parts[1] if np.iscomplexobj(like) else parts[0]


def _sq_norm(x: np.ndarray) -> float:
  return float(sum(np.sum(p * p) for p in _parts(x)))


class Reference:
  """Runs the algorithm step by step on float64 (complex128) copies of the leaves."""

  def __init__(self, params: Sequence[np.ndarray], options: Options) -> None:
    self.o = options
    self.params = [
      np.array(p, dtype=np.complex128 if np.iscomplexobj(p) else np.float64) for p in params
    ]
    self.accum_grad = [np.zeros_like(p) for p in self.params]
    self.accum_var = [np.zeros_like(p) for p in self.params]
    self.count = 0

  def learning_rate(self) -> float:
    lr = self.o.learning_rate
    base = float(lr(self.count)) if callable(lr) else float(lr)
    return base / (1.0 + self.o.decay * self.count)

  def step(self, grads: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Applies one update; returns the update added to each param."""
    o = self.o
    g = [np.array(x, dtype=p.dtype) for x, p in zip(grads, self.params, strict=True)]
    if o.maximize:
      g = [-x for x in g]

    def by_value(g: list[np.ndarray]) -> list[np.ndarray]:
      if o.clipvalue is None:
        return g
      return [_join([np.clip(q, -o.clipvalue, o.clipvalue) for q in _parts(x)], x) for x in g]

    def by_norm(g: list[np.ndarray]) -> list[np.ndarray]:
      if o.clipnorm is None:
        return g
      return [x * o.clipnorm / np.maximum(np.sqrt(_sq_norm(x)), o.clipnorm) for x in g]

    g = by_norm(by_value(g)) if o.clip_order == "value_then_norm" else by_value(by_norm(g))
    if o.global_clipnorm is not None:
      norm = np.sqrt(sum(_sq_norm(x) for x in g))
      with np.errstate(divide="ignore", invalid="ignore"):
        # tf.clip_by_global_norm: a non-finite norm makes every entry NaN (inf - inf = NaN).
        scale = o.global_clipnorm * min(1.0 / norm, 1.0 / o.global_clipnorm) + (norm - norm)
      g = [x * scale for x in g]
    mask = o.mask if o.mask is not None else [True] * len(g)
    if o.weight_decay and not o.decoupled_weight_decay:
      g = [x + o.weight_decay * p if m else x for x, p, m in zip(g, self.params, mask, strict=True)]
    lr = self.learning_rate()
    updates = []
    for i, x in enumerate(g):
      a_parts, d_parts, u_parts = _parts(self.accum_grad[i]), _parts(self.accum_var[i]), []
      for j, gp in enumerate(_parts(x)):
        a_parts[j] = o.rho * a_parts[j] + (1 - o.rho) * gp * gp
        u = np.sqrt(d_parts[j] + o.epsilon) / np.sqrt(a_parts[j] + o.epsilon) * gp
        d_parts[j] = o.rho * d_parts[j] + (1 - o.rho) * u * u
        u_parts.append(u)
      self.accum_grad[i] = _join(a_parts, x)
      self.accum_var[i] = _join(d_parts, x)
      u = _join(u_parts, x)
      if o.weight_decay and o.decoupled_weight_decay and mask[i]:
        u = u + o.weight_decay * self.params[i]
      delta = -lr * u
      self.params[i] = self.params[i] + delta
      updates.append(delta)
    self.count += 1
    return updates


def run(
  params: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray]], options: Options
) -> Reference:
  """The reference after applying every gradient list in ``grads``."""
  ref = Reference(params, options)
  for g in grads:
    ref.step(g)
  return ref
