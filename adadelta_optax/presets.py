"""Adadelta with the exact defaults and conventions of each framework.

Every preset is :func:`adadelta_optax.adadelta` with the framework's defaults: it takes the same
arguments (positionally or by name; its signature shows the preset's defaults) and returns an
:class:`adadelta_optax.Adadelta`. Presets wrap like ``adadelta`` itself, e.g. in
:func:`optax.inject_hyperparams`.

===========  ======  =====  =======  ====================================================
preset       lr      rho    epsilon  conventions
===========  ======  =====  =======  ====================================================
paper        1.0     0.95   1e-6     Zeiler 2012, MNIST setting (Section 4.1)
keras_v1     1.0     0.95   1e-7     tf.keras 1.x ``Adadelta(lr=1.0, epsilon=None)``; ``decay``
keras_v2     0.001   0.95   1e-7     tf.keras 2.x OptimizerV2 (the "not learning" default)
keras3       0.001   0.95   1e-7     Keras 3: decoupled, lr-scaled ``weight_decay``
torch        1.0     0.9    1e-6     ``torch.optim.Adadelta``: coupled ``weight_decay``,
                                     ``maximize``, complex as two real parts
optax        1.0     0.9    1e-6     ``optax.adadelta``: coupled ``weight_decay``
===========  ======  =====  =======  ====================================================

``optax.adadelta``'s own default ``learning_rate=None`` applies no learning rate *and no sign
flip* (its updates ascend the loss); that is not reproduced: the optax preset uses 1.0. For complex
parameters optax squares the complex gradient; this package always uses torch's convention.

Example:
  >>> from adadelta_optax import presets
  >>> presets.torch(weight_decay=1e-2).config.rho
  0.9
  >>> import optax
  >>> tx = optax.inject_hyperparams(presets.torch)(learning_rate=0.1)
  >>> float(tx.init({"w": 1.0}).hyperparams["rho"])
  0.9
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from adadelta_optax.core._optimizer import Adadelta, adadelta


def _preset(**defaults: Any) -> Callable[[Callable[..., Adadelta]], Callable[..., Adadelta]]:
  """Makes a preset: :func:`adadelta` with other defaults, and :func:`adadelta`'s signature.

  The signature is a real one (``inspect.signature`` shows every argument with the preset's
  default), so that the preset can be wrapped like :func:`adadelta` itself: by
  :func:`optax.inject_hyperparams`, which binds arguments by name, positionally, or with
  ``static_args``.
  """
  base = inspect.signature(adadelta)
  unknown = set(defaults) - set(base.parameters)
  assert not unknown, unknown
  signature = base.replace(
    parameters=[
      p.replace(default=defaults.get(name, p.default)) for name, p in base.parameters.items()
    ]
  )

  def decorate(documented: Callable[..., Adadelta]) -> Callable[..., Adadelta]:
    # `documented` receives every argument of adadelta(), bound with the preset's defaults.
    @functools.wraps(documented)
    def preset(*args: Any, **kwargs: Any) -> Adadelta:
      bound = signature.bind(*args, **kwargs)  # a TypeError naming an unknown argument
      bound.apply_defaults()
      return documented(**bound.arguments)

    preset.__signature__ = signature  # type: ignore[attr-defined]
    return preset

  return decorate


@_preset(learning_rate=1.0, rho=0.95, epsilon=1e-6)
def paper(**arguments: Any) -> Adadelta:
  """Zeiler 2012's MNIST setting: ``rho=0.95``, ``epsilon=1e-6``, unit learning rate.

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.paper().config
    >>> config.learning_rate, config.rho, config.epsilon
    (1.0, 0.95, 1e-06)
  """
  return adadelta(**arguments)


@_preset(learning_rate=1.0, rho=0.95, epsilon=1e-7, decay=0.0)
def keras_v1(**arguments: Any) -> Adadelta:
  """tf.keras 1.x ``keras.optimizers.Adadelta``: ``lr=1.0, rho=0.95, epsilon=K.epsilon()=1e-7``.

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.keras_v1().config
    >>> config.learning_rate, config.rho, config.epsilon
    (1.0, 0.95, 1e-07)
  """
  return adadelta(**arguments)


@_preset(learning_rate=0.001, rho=0.95, epsilon=1e-7, decay=0.0)
def keras_v2(**arguments: Any) -> Adadelta:
  """tf.keras 2.x ``tf.keras.optimizers.Adadelta``: ``learning_rate=0.001, rho=0.95, 1e-7``.

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.keras_v2().config
    >>> config.learning_rate, config.rho, config.epsilon
    (0.001, 0.95, 1e-07)
  """
  return adadelta(**arguments)


@_preset(learning_rate=0.001, rho=0.95, epsilon=1e-7, decoupled_weight_decay=True)
def keras3(**arguments: Any) -> Adadelta:
  """Keras 3 ``keras.optimizers.Adadelta``: ``0.001, 0.95, 1e-7``, decoupled weight decay.

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.keras3().config
    >>> config.learning_rate, config.rho, config.epsilon
    (0.001, 0.95, 1e-07)
  """
  return adadelta(**arguments)


@_preset(learning_rate=1.0, rho=0.9, epsilon=1e-6, decoupled_weight_decay=False)
def torch(**arguments: Any) -> Adadelta:
  """``torch.optim.Adadelta``: ``lr=1.0, rho=0.9, eps=1e-6``, coupled weight decay.

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.torch().config
    >>> config.learning_rate, config.rho, config.epsilon
    (1.0, 0.9, 1e-06)
  """
  return adadelta(**arguments)


@_preset(learning_rate=1.0, rho=0.9, epsilon=1e-6, decoupled_weight_decay=False)
def optax(**arguments: Any) -> Adadelta:
  """``optax.adadelta``: ``rho=0.9, eps=1e-6``, coupled weight decay (learning rate 1.0).

  Takes every argument of :func:`~adadelta_optax.adadelta`, with these defaults.

  Example:
    >>> import adadelta_optax
    >>> config = adadelta_optax.presets.optax().config
    >>> config.learning_rate, config.rho, config.epsilon
    (1.0, 0.9, 1e-06)
  """
  return adadelta(**arguments)


__all__ = ["keras3", "keras_v1", "keras_v2", "optax", "paper", "torch"]
