"""The C++ kernel's per-leaf flags, called directly (``_kernel.kernel_call``) against NumPy.

Each leaf of a call gets its own flags and every segment its own hyperparameter row, as
``_step.tree_step`` builds them. The NumPy step below follows the kernel's order and roundings
operation by operation, in the leaf's dtype, the norm's float64 sum in the kernel's order too, so
the results are the same bits. Sizes are above the kernel's parallel threshold (2 x 2**18
elements in all), so on a machine with two or more cores the call runs on several threads of
XLA's pool, with a leaf split between threads; a run on one core (the inline path) must give
the same bits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from adadelta_optax.core import _kernel
from adadelta_optax.core._step import (
  CLIP_VALUE,
  COUPLED,
  DECOUPLED,
  HYPER_FIELDS,
  NORM_CLIP,
  NORM_FIRST,
  SCALE,
)

pytestmark = pytest.mark.skipif(
  not _kernel.kernel_available(), reason=f"no CPU kernel: {_kernel.kernel_unavailable_reason()}"
)

# Sizes no multiple of 64 (even, for two segments), 1,001,008 elements in all: two threads'
# worth, their ranges split inside the first leaf.
SIZES = (700_002, 299_998, 1_008)
# The kernel's norm blocks (kNormBlock in adadelta_cpu.cc).
NORM_BLOCK = 2**16
# Per leaf: tf.keras 1.x order with value clip and each weight decay, the default order in the
# same call, and the norm-first order without a value clip.
FLAGS = (
  (
    NORM_CLIP | NORM_FIRST | CLIP_VALUE | COUPLED,
    NORM_CLIP | CLIP_VALUE | DECOUPLED,
    NORM_CLIP | NORM_FIRST | CLIP_VALUE | SCALE,
  ),
  (
    NORM_CLIP | NORM_FIRST | CLIP_VALUE | DECOUPLED | SCALE,
    NORM_CLIP | NORM_FIRST,
    NORM_CLIP | CLIP_VALUE,
  ),
)
# clipvalue acts both before and after the norm's scale: |g| ~ 3; scaled, ~0.05 in the large
# leaves and ~1.4 in the small one.
HYPER = dict(
  rho=0.9,
  one_minus_rho=0.1,
  epsilon=1e-6,
  neg_lr=-0.5,
  grad_scale=-0.75,
  clipvalue=0.1,
  clipnorm=60.0,
  wd_coupled=0.01,
  wd_decoupled=0.02,
)


def hyper_rows(dtype: type, segments: int) -> np.ndarray:
  """``segments`` rows in the kernel's layout, each a little different from the one before."""
  rows = []
  for s in range(segments):
    values = {name: value * (1.0 + 0.25 * s) for name, value in HYPER.items()}
    values["rho"] = HYPER["rho"] - 0.05 * s
    values["one_minus_rho"] = 1.0 - values["rho"]
    rows.append([values[name] for name in HYPER_FIELDS])
  return np.array(rows, dtype)


def make_inputs(dtype: type, seed: int = 0) -> tuple[list[np.ndarray], ...]:
  rng = np.random.default_rng(seed)
  grads = [(3.0 * rng.standard_normal(n)).astype(dtype) for n in SIZES]
  params = [rng.standard_normal(n).astype(dtype) for n in SIZES]
  accum_grads = [rng.uniform(0.0, 2.0, n).astype(dtype) for n in SIZES]
  accum_vars = [rng.uniform(0.0, 1e-2, n).astype(dtype) for n in SIZES]
  return grads, params, accum_grads, accum_vars


def clip_value(g: np.ndarray, clip: np.generic) -> np.ndarray:
  """The kernel's comparisons: NaN passes through."""
  g = np.where(g < -clip, -clip, g)
  return np.where(g > clip, clip, g)


def squared_norm(v: np.ndarray) -> float:
  """The kernel's sum of squares: in float64, left to right within blocks of 2**16 elements of a
  segment, the blocks' sums then added in order (the same whatever the threads)."""
  squares = np.square(v.astype(np.float64))
  total = 0.0
  for start in range(0, len(squares), NORM_BLOCK):
    total += np.cumsum(squares[start : start + NORM_BLOCK])[-1]  # cumsum: strictly in order
  return total


def numpy_step(
  g: np.ndarray,
  x: np.ndarray,
  a: np.ndarray,
  d: np.ndarray,
  row: np.ndarray,
  flags: int,
  apply: bool,
  order_of: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One segment of one leaf, in the kernel's order (``order_of``: take the clip order of these
  flags instead, to show the orders differ)."""
  h = dict(zip(HYPER_FIELDS, row, strict=True))  # scalars of the leaf's dtype
  norm_first = bool((flags if order_of is None else order_of) & NORM_FIRST)
  scale = h["grad_scale"]
  if flags & NORM_CLIP:
    raw_norm = norm_first or not flags & CLIP_VALUE
    v = g if raw_norm else clip_value(g, h["clipvalue"])
    norm = g.dtype.type(np.sqrt(squared_norm(v)))
    c = h["clipnorm"]
    scale = scale * (c / (norm if not norm <= c else c))  # a NaN norm propagates
  scaled = flags & (SCALE | NORM_CLIP)
  if norm_first:
    g = g * scale if scaled else g
    g = clip_value(g, h["clipvalue"]) if flags & CLIP_VALUE else g
  else:
    g = clip_value(g, h["clipvalue"]) if flags & CLIP_VALUE else g
    g = g * scale if scaled else g
  if flags & COUPLED:
    g = g + h["wd_coupled"] * x
  new_a = h["rho"] * a + h["one_minus_rho"] * (g * g)
  u = np.sqrt(d + h["epsilon"]) / np.sqrt(new_a + h["epsilon"]) * g
  new_d = h["rho"] * d + h["one_minus_rho"] * (u * u)
  if flags & DECOUPLED:
    u = u + h["wd_decoupled"] * x
  step = h["neg_lr"] * u
  return (x + step if apply else step), new_a, new_d


def numpy_call(inputs, rows, flags, apply, order_of=None):
  """:func:`numpy_step` over every leaf and segment: ``(outs, accum_grads, accum_vars)``."""
  out: tuple[list[np.ndarray], ...] = ([], [], [])
  for i, (g, x, a, d) in enumerate(zip(*inputs, strict=True)):
    parts = [
      numpy_step(*(np.split(v, len(rows))[s] for v in (g, x, a, d)), rows[s], flags[i], apply,
                 None if order_of is None else order_of[i])
      for s in range(len(rows))
    ]  # fmt: skip
    for k in range(3):
      out[k].append(np.concatenate([p[k] for p in parts]))
  return out


def kernel_call(inputs, rows, flags, apply):
  grads, params, accum_grads, accum_vars = (list(map(jnp.asarray, v)) for v in inputs)
  result = _kernel.kernel_call(
    _kernel.GroupArrays(grads, params, accum_grads, accum_vars),
    jnp.asarray(rows),
    flags=np.asarray(flags, np.int32),
    apply=apply,
  )
  return tuple([np.asarray(v) for v in part] for part in result)


def assert_same_bits(actual, expected, dtype, what):
  for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
    assert a.dtype == dtype, (what, i, a.dtype)
    np.testing.assert_array_equal(a, e, err_msg=f"{what}, leaf {i}")


@pytest.mark.parametrize("segments", [1, 2])
@pytest.mark.parametrize("apply", [True, False])
@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_orders_match_numpy(dtype, flags, apply, segments):
  """kNormFirst (64): norm of the raw gradient, then scale, then value clip (tf.keras 1.x);
  without it, value clip first and the norm of the clipped gradient; in one call, per leaf,
  bit for bit."""
  inputs = make_inputs(dtype)
  rows = hyper_rows(dtype, segments)
  got = kernel_call(inputs, rows, flags, apply)
  want = numpy_call(inputs, rows, flags, apply)
  for name, actual, expected in zip(("out", "accum_grad", "accum_var"), got, want, strict=True):
    assert_same_bits(actual, expected, dtype, name)
  # The data make the order matter: the other order is far outside the tolerance.
  swapped = [f ^ NORM_FIRST if f & CLIP_VALUE else f for f in flags]
  other = numpy_call(inputs, rows, flags, apply, order_of=swapped)
  for i, f in enumerate(flags):
    if f & CLIP_VALUE:
      assert not np.allclose(other[1][i], want[1][i], rtol=1e-3), f"leaf {i}: orders agree"


@pytest.mark.parametrize("flags", [NORM_FIRST, NORM_FIRST | CLIP_VALUE, 16, 128])
def test_refuses_unknown_flags(flags):
  """kNormFirst alone (without kNormClip) and bits the kernel does not define are refused."""
  inputs = tuple([v[:64] for v in part] for part in make_inputs(np.float32))
  with pytest.raises(Exception, match="leaf flags"):
    kernel_call(inputs, hyper_rows(np.float32, 1), [flags, 0, 0], apply=True)


ONE_THREAD = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
sys.path.insert(0, sys.argv[1])
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import test_kernel_flags as t
for k, dtype in enumerate((np.float32, np.float64)):
  for apply in (True, False):
    got = t.kernel_call(t.make_inputs(dtype), t.hyper_rows(dtype, 2), t.FLAGS[k], apply)
    np.savez(f"{sys.argv[2]}/{k}{int(apply)}.npz", *[v for part in got for v in part])
"""


@pytest.mark.skipif(
  not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
  reason="needs two CPUs to compare with one",
)
def test_same_bits_on_one_thread(tmp_path):
  """The pool's threads change nothing: a process pinned to one CPU (XLA's pool of one thread:
  the kernel runs inline) gives the same bits, norms included."""
  here = Path(__file__).parent
  subprocess.run(
    [sys.executable, "-c", textwrap.dedent(ONE_THREAD), str(here), str(tmp_path)],
    check=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  for k, dtype in enumerate((np.float32, np.float64)):
    for apply in (True, False):
      got = kernel_call(make_inputs(dtype), hyper_rows(dtype, 2), FLAGS[k], apply)
      with np.load(tmp_path / f"{k}{int(apply)}.npz") as one_thread:
        for j, v in enumerate(v for part in got for v in part):
          np.testing.assert_array_equal(v, one_thread[f"arr_{j}"], err_msg=f"{dtype} {apply} {j}")


# --- The calling convention is checked before any handler is registered ----------------------


@pytest.mark.skipif(not _kernel.kernel_available(), reason="CPU kernel not built")
def test_the_kernel_reports_the_packages_flags_and_slots():
  """The C++ enums (AdadeltaLayout) equal the Python flags and HYPER_FIELDS, which the fused JAX
  step uses too: the two sides cannot drift without the kernel being refused."""
  import ctypes

  library = ctypes.CDLL(str(_kernel.kernel_file()))
  assert _kernel.built_layout(library) == _kernel.LAYOUT
  assert _kernel.LAYOUT == (1, 2, 4, 8, 32, 64, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
  assert _kernel.layout_mismatch(_kernel.LAYOUT) is None
  for wrong in (None, (2, 1, *_kernel.LAYOUT[2:]), _kernel.LAYOUT[:-1]):
    assert "rebuild it" in _kernel.layout_mismatch(wrong)


DRIFTED = """
import runpy, sys
from pathlib import Path
from adadelta_optax.core import _kernel
_kernel.kernel_file = lambda: Path(sys.argv[1])
print(_kernel._load())
"""


@pytest.mark.skipif(not _kernel.kernel_available(), reason="CPU kernel not built")
def test_a_kernel_built_with_other_slots_is_refused(tmp_path):
  """The kernel's source with two hyperparameter slots swapped (rho and 1 - rho), compiled with
  setup.py's flags: the package refuses to register it, naming the layouts and the rebuild."""
  import runpy
  import shutil

  import jax

  compiler = os.environ.get("CXX", "c++")
  if shutil.which(compiler) is None:
    pytest.skip(f"no C++ compiler ({compiler!r})")
  root = Path(__file__).resolve().parent.parent
  source = (root / "adadelta_optax" / "_kernel" / "adadelta_cpu.cc").read_text()
  swapped = source.replace("  kRho,\n  kOneMinusRho,\n", "  kOneMinusRho,\n  kRho,\n", 1)
  assert swapped != source, "the enum Hyper moved: update this test"
  (tmp_path / "drifted.cc").write_text(swapped)
  setup = runpy.run_path(str(root / "setup.py"), run_name="drift")  # setup() runs as __main__
  subprocess.run(
    [
      compiler,
      *setup["COMPILE_ARGS"],
      "-fPIC",
      "-shared",
      f"-I{jax.ffi.include_dir()}",
      str(tmp_path / "drifted.cc"),
      *setup["LINK_ARGS"],
      "-o",
      str(tmp_path / "drifted.so"),
    ],
    check=True,
    timeout=600,
  )
  done = subprocess.run(
    [sys.executable, "-c", DRIFTED, str(tmp_path / "drifted.so")],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert "flags and hyperparameter slots (1, 2, 4, 8, 32, 64, 1, 0, 2," in done.stdout
  assert "rebuild it" in done.stdout
