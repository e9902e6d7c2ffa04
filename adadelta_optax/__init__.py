"""Adadelta (Zeiler 2012) as a pure JAX/Optax gradient transformation.

Exact parity with tf.keras 1.x/2.x, Keras 3, ``torch.optim.Adadelta`` and ``optax.adadelta``
(see :mod:`adadelta_optax.presets`), and the Keras optimizer methods in functional form.
"""

from adadelta_optax import presets, schedules
from adadelta_optax._alias import Adadelta, adadelta, from_adadelta_config, with_keras_training
from adadelta_optax._checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
from adadelta_optax._clipping import clip_gradients
from adadelta_optax._config import AdadeltaConfig, TrainingOptions, register_schedule
from adadelta_optax._core import ScaleByAdadeltaState, scale_by_adadelta
from adadelta_optax._fast import (
  KernelUnavailableWarning,
  kernel_available,
  kernel_unavailable_reason,
)
from adadelta_optax._flat import flatten_params
from adadelta_optax._info import info
from adadelta_optax._keras_config import from_keras_config, to_keras_config
from adadelta_optax._keras_state import keras3_variables, set_keras3_variables
from adadelta_optax._keras_training import KerasTrainingState
from adadelta_optax._learning_rate import (
  ScaleByDecayedLearningRateState,
  scale_by_decayed_learning_rate,
)
from adadelta_optax._nonfinite import SkipNonfiniteState, skip_nonfinite
from adadelta_optax._optax_state import load_optax_state
from adadelta_optax._sharding import state_shardings
from adadelta_optax._state import AdadeltaState
from adadelta_optax._torch_state import (
  from_torch_state_dict,
  load_torch_state,
  to_torch_state_dict,
)
from adadelta_optax._weight_decay import add_decayed_weights
from adadelta_optax._weights import get_weights, set_weights

__version__ = "0.1.0"

__all__ = [
  "Adadelta",
  "AdadeltaConfig",
  "AdadeltaState",
  "KerasTrainingState",
  "KernelUnavailableWarning",
  "CheckpointError",
  "ScaleByAdadeltaState",
  "ScaleByDecayedLearningRateState",
  "SkipNonfiniteState",
  "__version__",
  "adadelta",
  "add_decayed_weights",
  "clip_gradients",
  "flatten_params",
  "from_adadelta_config",
  "from_keras_config",
  "from_torch_state_dict",
  "get_weights",
  "info",
  "keras3_variables",
  "kernel_available",
  "kernel_unavailable_reason",
  "load_optax_state",
  "load_torch_state",
  "presets",
  "register_schedule",
  "restore_checkpoint",
  "save_checkpoint",
  "scale_by_adadelta",
  "scale_by_decayed_learning_rate",
  "schedules",
  "set_keras3_variables",
  "set_weights",
  "to_keras_config",
  "to_torch_state_dict",
  "TrainingOptions",
  "with_keras_training",
  "skip_nonfinite",
  "state_shardings",
]
