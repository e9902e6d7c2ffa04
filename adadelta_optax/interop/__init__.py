"""Moving state and configuration between adadelta_optax and the other frameworks.

Keras (tf.keras 1.x/2.x and Keras 3 configs, Keras 3 optimizer variables), PyTorch
(``torch.optim.Adadelta`` state dicts) and optax (``optax.adadelta`` states). Built on
``adadelta_optax.core``, which never imports from here. Keras' and torch's own packages are
imported only inside the functions that need them: neither is a dependency.
"""

from adadelta_optax.interop._keras_config import from_keras_config, to_keras_config
from adadelta_optax.interop._keras_state import keras3_variables, set_keras3_variables
from adadelta_optax.interop._optax_state import load_optax_state
from adadelta_optax.interop._torch_state import (
  from_torch_state_dict,
  load_torch_state,
  to_torch_state_dict,
)

__all__ = [
  "from_keras_config",
  "from_torch_state_dict",
  "keras3_variables",
  "load_optax_state",
  "load_torch_state",
  "set_keras3_variables",
  "to_keras_config",
  "to_torch_state_dict",
]
