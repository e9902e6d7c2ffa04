"""The optimizer: configuration, the step and its kernel, the optax transforms, the state.

The bottom layer of the package: nothing here imports from :mod:`adadelta_optax.interop`,
:mod:`adadelta_optax.checkpoint` or :mod:`adadelta_optax.distributed`. Its modules, from the
bottom up:

- ``_validation``: the checks every argument goes through (errors name the argument);
- ``_config``: :class:`AdadeltaConfig` and :class:`TrainingOptions`, typed and frozen, and
  their ``get_config`` dicts;
- ``_rule``, ``_clipping``, ``_global_norm``, ``_weight_decay``, ``_learning_rate``: the pieces
  of the step, each also an optax transform of its own;
- ``_step``: the step defined once (every option, in order, for a whole tree);
- ``_kernel``: the binding of the C++ CPU kernel that implements ``_step``'s arithmetic;
- ``_optimizer``: :func:`adadelta`, :class:`Adadelta` and :func:`with_keras_training`
  (``_keras_training``), ``_sparse``: TensorFlow's sparse-row semantics;
- ``_state``, ``_weights``, ``_flat``, ``_gradients``, ``_nonfinite``, ``_info``: the state and
  the tools around it.

Everything users need from here is re-exported by :mod:`adadelta_optax`.
"""

from adadelta_optax.core._clipping import clip_gradients
from adadelta_optax.core._config import AdadeltaConfig, TrainingOptions, register_schedule
from adadelta_optax.core._flat import flatten_params
from adadelta_optax.core._flat_state import FlatAdadeltaState, TreeSpec, flat_state, tree_state
from adadelta_optax.core._info import info
from adadelta_optax.core._keras_training import KerasTrainingState
from adadelta_optax.core._kernel import (
  KernelUnavailableWarning,
  kernel_available,
  kernel_unavailable_reason,
)
from adadelta_optax.core._learning_rate import (
  ScaleByDecayedLearningRateState,
  scale_by_decayed_learning_rate,
)
from adadelta_optax.core._nonfinite import SkipNonfiniteState, skip_nonfinite
from adadelta_optax.core._optimizer import (
  Adadelta,
  adadelta,
  from_adadelta_config,
  with_keras_training,
)
from adadelta_optax.core._rule import ScaleByAdadeltaState, scale_by_adadelta
from adadelta_optax.core._state import AdadeltaState
from adadelta_optax.core._weight_decay import add_decayed_weights
from adadelta_optax.core._weights import get_weights, set_weights

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
  "adadelta",
  "add_decayed_weights",
  "clip_gradients",
  "flat_state",
  "flatten_params",
  "from_adadelta_config",
  "get_weights",
  "info",
  "kernel_available",
  "kernel_unavailable_reason",
  "register_schedule",
  "scale_by_adadelta",
  "scale_by_decayed_learning_rate",
  "set_weights",
  "skip_nonfinite",
  "tree_state",
  "with_keras_training",
]
