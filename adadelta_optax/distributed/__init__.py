"""Running the optimizer on several devices and processes.

:func:`state_shardings` places a state like its params. The step is elementwise, so XLA
partitions it without any collective; only ``global_clipnorm`` needs one, an all-reduce of the
squared norms (``adadelta_optax/core/_global_norm.py``): exactly one on a mesh of ``Explicit``
axes, one per replica group on ``Auto`` axes.
"""

import warnings
from typing import Any

from adadelta_optax.distributed._sharding import state_shardings

__all__ = ["state_shardings"]


class _PrivateGlobalNormUnavailableWarning(UserWarning):
  """The warning of the removed opt-in private global norm (never issued any more)."""


def __getattr__(name: str) -> Any:
  # Removed with the opt-in it warned about; the name resolves, with a DeprecationWarning, until
  # 0.3, so that a warnings filter naming it keeps importing.
  if name == "PrivateGlobalNormUnavailableWarning":
    warnings.warn(
      "adadelta_optax.distributed.PrivateGlobalNormUnavailableWarning is never issued: the "
      "opt-in private global norm it warned about was removed. The name goes in 0.3.",
      DeprecationWarning,
      stacklevel=2,
    )
    return _PrivateGlobalNormUnavailableWarning
  raise AttributeError(f"module 'adadelta_optax.distributed' has no attribute {name!r}")
