"""Installing the package into a Colab-like environment leaves the user's packages alone.

Google Colab runs Python 3.12 with the newest jax, jaxlib, optax, flax and orbax-checkpoint
already installed. A user there types ``pip install adadelta-optax`` (no ``--no-deps``), and pip
resolves our declared dependencies against what is installed: a cap or a pin in them that the
environment does not meet makes pip downgrade or replace the user's jax, which breaks the other
packages built on it. This test builds such an environment in a fresh venv, installs the package
into it from a wheel and then from the checkout, and asserts that nothing that was installed
changed version or went away, that the kernel loads under the environment's jaxlib, and that the
README's Quickstart runs there.
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("ADADELTA_REQUIRE_ALL") == "1"
TIMEOUT = 900  # seconds: pip downloads jax, jaxlib, flax, orbax and their dependencies
# Colab's packages, unpinned: whatever is newest for Python 3.12.
COLAB = ["jax", "jaxlib", "optax", "flax", "orbax-checkpoint"]
OURS = "adadelta-optax"

# Run in the venv: the kernel loads, info() reports the venv's jaxlib, 'auto' picks the kernel
# and nothing warns that it cannot.
CHECK = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
  import adadelta_optax
  tx = adadelta_optax.adadelta()
print(json.dumps({
  "file": adadelta_optax.__file__,
  "kernel_available": adadelta_optax.kernel_available(),
  "reason": adadelta_optax.kernel_unavailable_reason(),
  "implementation": tx.implementation,
  "info": adadelta_optax.info(print_report=False),
  "warnings": [[w.category.__name__, str(w.message)] for w in caught],
}))
"""


def _python312() -> Path | None:
  """A working Python 3.12 with venv and ensurepip: ``python3.12`` on PATH, else pyenv's.

  A pyenv shim on PATH exists even where its version is not selected (it then exits with an
  error), so each candidate is run before it is chosen.
  """
  candidates = []
  if (on_path := shutil.which("python3.12")) is not None:
    candidates.append(on_path)
  pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
  found = glob.glob(os.path.join(pyenv_root, "versions", "3.12.*", "bin", "python3.12"))

  def version(path: str) -> tuple[int, ...]:
    patch = Path(path).parents[1].name.split(".")[2]
    return (int(patch),) if patch.isdigit() else (-1,)

  candidates += sorted(found, key=version, reverse=True)  # the newest 3.12 first
  probe = "import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 12)"
  for candidate in candidates:
    try:
      done = subprocess.run(
        [candidate, "-c", probe], capture_output=True, text=True, timeout=60, env=_env()
      )
    except (OSError, subprocess.TimeoutExpired):
      continue
    if done.returncode == 0:
      return Path(candidate)
  return None


def _env(venv: Path | None = None) -> dict[str, str]:
  """The environment without this runner's venv, with ``venv``'s bin first on PATH."""
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  if venv is not None:
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _run(args: list[str | Path], cwd: Path, venv: Path | None = None) -> str:
  done = subprocess.run(
    [str(arg) for arg in args],
    cwd=cwd,
    env=_env(venv),
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  command = " ".join("CHECK" if arg == CHECK else str(arg) for arg in args)
  assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
  return done.stdout


def _pip(venv: Path, *args: str | Path) -> str:
  """``python -m pip ARGS`` in ``venv`` (run from outside the repository)."""
  python = venv / "bin" / "python"
  return _run([python, "-m", "pip", "--disable-pip-version-check", *args], venv.parent, venv)


def _normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _installed(venv: Path) -> dict[str, str]:
  """Every distribution in ``venv``, by normalised name, with its version."""
  listed = json.loads(_pip(venv, "list", "--format=json"))
  return {_normalize(entry["name"]): entry["version"] for entry in listed}


def _assert_left_alone(before: dict[str, str], venv: Path, how: str) -> None:
  """Nothing in ``before`` changed version or went away; the one distribution added is ours."""
  after = _installed(venv)
  changed = [
    f"{name}: {version} -> {after.get(name, 'removed')}"
    for name, version in sorted(before.items())
    if after.get(name) != version
  ]
  added = sorted(set(after) - set(before))
  assert not changed and added == [OURS], (
    f"installing {how} changed the environment.\nchanged:\n  "
    + "\n  ".join(changed or ["(none)"])
    + f"\nadded: {', '.join(f'{name} {after[name]}' for name in added) or '(none)'}"
  )


def _copy_checkout(dest: Path) -> Path:
  """The checkout's tracked and untracked-but-not-ignored files, copied to ``dest``.

  pip builds in the source tree (``build/``, ``*.egg-info``): a copy keeps the checkout as it is.
  """
  listed = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd=ROOT,
    capture_output=True,
    check=True,
    timeout=TIMEOUT,
  ).stdout.decode()
  for name in filter(None, listed.split("\0")):
    source = ROOT / name
    if not source.is_file():  # deleted since it was committed
      continue
    (dest / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest / name)
  return dest


def _quickstart() -> str:
  """The first ```python block of README.md's Quickstart section."""
  readme = (ROOT / "README.md").read_text()
  section = re.search(r"^## Quickstart\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
  assert section is not None, "README.md has no '## Quickstart' section"
  block = re.search(r"^```python\n(.*?)^```", section.group(1), re.M | re.S)
  assert block is not None, "README.md's Quickstart has no ```python block"
  return block.group(1)


def _check(venv: Path, cwd: Path, jaxlib: str, how: str) -> None:
  """The installed package (not the checkout) loads its kernel under the venv's jaxlib."""
  result = json.loads(_run([venv / "bin" / "python", "-c", CHECK], cwd, venv).splitlines()[-1])
  assert Path(result["file"]).resolve().is_relative_to(venv.resolve()), result["file"]
  assert result["kernel_available"], (
    f"installed {how}, the kernel is unavailable: {result['reason']}"
  )
  kernel_warnings = [w for w in result["warnings"] if w[0] == "KernelUnavailableWarning"]
  assert kernel_warnings == [], kernel_warnings
  assert result["implementation"] == "kernel", result
  assert result["info"]["jaxlib"] == jaxlib, result["info"]


@pytest.mark.xdist_group("install")
def test_colab_like_environment_is_left_alone(tmp_path):
  """A Python 3.12 venv with the newest jax, jaxlib, optax, flax and orbax-checkpoint: installing
  the wheel, and then the checkout, adds the package alone, its kernel runs under that jaxlib and
  the README's Quickstart trains there."""
  python = _python312()
  if python is None:
    missing = "Python 3.12 (python3.12 on PATH, or pyenv's versions/3.12.*) with venv"
    if REQUIRE_ALL:
      pytest.fail(f"ADADELTA_REQUIRE_ALL=1 and {missing} is not installed", pytrace=False)
    pytest.skip(f"needs {missing}, not installed")

  source = _copy_checkout(tmp_path / "source")
  wheels = tmp_path / "wheels"
  _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source], tmp_path)
  (wheel,) = wheels.glob("adadelta_optax-*.whl")

  venv = tmp_path / "venv"
  _run([python, "-m", "venv", venv], tmp_path)
  _pip(venv, "install", "-q", "--upgrade", *COLAB)
  before = _installed(venv)
  before.pop(OURS, None)  # the package itself is not part of the environment
  jaxlib = before["jaxlib"]
  work = tmp_path / "work"  # outside the repository and its copy: the installed package imports
  work.mkdir()

  _pip(venv, "install", wheel)
  _assert_left_alone(before, venv, f"the wheel {wheel.name}")
  _check(venv, work, jaxlib, "from the wheel")

  _pip(venv, "uninstall", "-y", OURS)
  _pip(venv, "install", source)
  _assert_left_alone(before, venv, "from the checkout")
  _check(venv, work, jaxlib, "from the checkout")

  script = work / "quickstart.py"
  script.write_text(_quickstart())
  printed = _run([venv / "bin" / "python", script], work, venv)
  losses = [
    (int(match.group(1)), float(match.group(2)))
    for match in re.finditer(r"^step (\d+): loss (\S+)$", printed, re.M)
  ]
  assert [step for step, _ in losses] == list(range(5)), printed
  values = [loss for _, loss in losses]
  assert abs(values[0] - math.log(10)) <= 1e-3, values
  assert all(later < earlier for earlier, later in itertools.pairwise(values)), values
