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


def gpt2_shapes(layers: int, width: int) -> list[tuple[int, ...]]:
  """The parameter tensors of Hugging Face's GPT-2 (``GPT2LMHeadModel``, tied embeddings):
  ``gpt2_shapes(24, 1024)`` is GPT-2 medium (292 tensors, 354,823,168 floats) and
  ``gpt2_shapes(48, 1600)`` GPT-2 XL (580 tensors, 1,557,611,200 floats)."""
  shapes: list[tuple[int, ...]] = [(50257, width), (1024, width)]  # token and position embeddings
  for _ in range(layers):
    shapes += [(width,), (width,)]  # ln_1
    shapes += [(width, 3 * width), (3 * width,), (width, width), (width,)]  # attention
    shapes += [(width,), (width,)]  # ln_2
    shapes += [(width, 4 * width), (4 * width,), (4 * width, width), (width,)]  # MLP
  shapes += [(width,), (width,)]  # ln_f
  return shapes


def many_leaves_shapes() -> list[tuple[int, ...]]:
  """2,000 leaves of 1,000 floats: where the per-buffer costs of a jitted step dominate."""
  return [(1000,)] * 2000
