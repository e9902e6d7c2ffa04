"""Saving and restoring optimizer states (and any pytree) with orbax, checked on restore.

Needs the ``checkpoint`` extra (``pip install "adadelta-optax[checkpoint]"``).
"""

from adadelta_optax.checkpoint._checkpoint import (
  CheckpointError,
  restore_checkpoint,
  save_checkpoint,
)

__all__ = ["CheckpointError", "restore_checkpoint", "save_checkpoint"]
