"""Adadelta (Zeiler 2012) as a pure JAX/Optax gradient transformation.

Exact parity with tf.keras 1.x/2.x, Keras 3, ``torch.optim.Adadelta`` and ``optax.adadelta``
(see :mod:`adadelta_optax.presets`), and the Keras optimizer methods in functional form.

The names used every day are here: the optimizer and its configuration, its state, the optax
transforms it is made of, and the Keras training options. The rest lives in the subpackage that
owns it: :mod:`adadelta_optax.interop` (Keras, torch and optax state and configs),
:mod:`adadelta_optax.checkpoint` and :mod:`adadelta_optax.distributed`.
"""

import warnings
from typing import Any

from adadelta_optax import checkpoint, distributed, interop, presets, schedules
from adadelta_optax._version import __version__
from adadelta_optax.core import (
  Adadelta,
  AdadeltaConfig,
  AdadeltaState,
  FlatAdadeltaState,
  KerasTrainingState,
  KernelUnavailableWarning,
  ScaleByAdadeltaState,
  ScaleByDecayedLearningRateState,
  SkipNonfiniteState,
  TrainingOptions,
  TreeSpec,
  adadelta,
  add_decayed_weights,
  clip_gradients,
  flat_state,
  flatten_params,
  from_adadelta_config,
  get_weights,
  info,
  kernel_available,
  kernel_unavailable_reason,
  register_schedule,
  scale_by_adadelta,
  scale_by_decayed_learning_rate,
  set_weights,
  skip_nonfinite,
  tree_state,
  with_keras_training,
)

__all__ = [
  "Adadelta",
  "AdadeltaConfig",
  "AdadeltaState",
  "FlatAdadeltaState",
  "KerasTrainingState",
  "KernelUnavailableWarning",
  "ScaleByAdadeltaState",
  "ScaleByDecayedLearningRateState",
  "SkipNonfiniteState",
  "TrainingOptions",
  "TreeSpec",
  "__version__",
  "adadelta",
  "add_decayed_weights",
  "checkpoint",
  "clip_gradients",
  "distributed",
  "flat_state",
  "flatten_params",
  "from_adadelta_config",
  "get_weights",
  "info",
  "interop",
  "kernel_available",
  "kernel_unavailable_reason",
  "presets",
  "register_schedule",
  "scale_by_adadelta",
  "scale_by_decayed_learning_rate",
  "schedules",
  "set_weights",
  "skip_nonfinite",
  "tree_state",
  "with_keras_training",
]

#: Names that were top-level in 0.1 and moved to a subpackage in 0.2: still found here, with a
#: DeprecationWarning naming the new place, until 0.3.
_MOVED = {
  "from_keras_config": "interop",
  "to_keras_config": "interop",
  "keras3_variables": "interop",
  "set_keras3_variables": "interop",
  "from_torch_state_dict": "interop",
  "to_torch_state_dict": "interop",
  "load_torch_state": "interop",
  "load_optax_state": "interop",
  "save_checkpoint": "checkpoint",
  "restore_checkpoint": "checkpoint",
  "CheckpointError": "checkpoint",
  "state_shardings": "distributed",
}


def __getattr__(name: str) -> Any:
  subpackage = _MOVED.get(name)
  if subpackage is None:
    raise AttributeError(f"module 'adadelta_optax' has no attribute {name!r}")
  warnings.warn(
    f"adadelta_optax.{name} moved to adadelta_optax.{subpackage}.{name} in 0.2; the old name "
    "works until 0.3.",
    DeprecationWarning,
    stacklevel=2,
  )
  return getattr(globals()[subpackage], name)
