"""Running the optimizer on several devices and processes.

:func:`state_shardings` places a state like its params. The step is elementwise, so XLA
partitions it without any collective; only ``global_clipnorm`` needs one, an all-reduce of the
squared norms (``adadelta_optax/core/_global_norm.py``, with the opt-in private partitioning and
its :class:`PrivateGlobalNormUnavailableWarning`).
"""

from adadelta_optax.core._global_norm import PrivateGlobalNormUnavailableWarning
from adadelta_optax.distributed._sharding import state_shardings

__all__ = ["PrivateGlobalNormUnavailableWarning", "state_shardings"]
