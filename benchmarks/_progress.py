"""``tqdm`` where it is installed, else a stand-in that prints the description: a device machine
may have JAX and optax but not tqdm, and the device benchmarks must still run there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
  from tqdm import tqdm as progress
except ImportError:  # pragma: no cover - depends on the machine

  def progress(items: Iterable[Any], desc: str = "") -> Iterable[Any]:  # type: ignore[no-redef]
    print(desc, flush=True)
    return items


__all__ = ["progress"]
