"""Parameter-tree shapes the benchmarks share (no import of the package: any version can use it)."""

from __future__ import annotations


def resnet50_shapes() -> list[tuple[int, ...]]:
  """The 161 parameter tensors of torchvision's ResNet-50 (25,557,032 floats)."""
  shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
  in_ch = 64
  for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
    for b in range(blocks):
      shapes += [(width, in_ch, 1, 1), (width,), (width,)]
      shapes += [(width, width, 3, 3), (width,), (width,)]
      shapes += [(4 * width, width, 1, 1), (4 * width,), (4 * width,)]
      if b == 0:
        shapes += [(4 * width, in_ch, 1, 1), (4 * width,), (4 * width,)]
      in_ch = 4 * width
  shapes += [(1000, 2048), (1000,)]
  return shapes
