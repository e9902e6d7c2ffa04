#!/usr/bin/env bash
# The core tests across the declared range, each in a fresh virtualenv: the oldest jax, jaxlib,
# optax and ml_dtypes that pyproject.toml declares (its [project].dependencies floors, pinned with
# ==) on the oldest Python it admits; a release in between (jax/jaxlib $MIDDLE_JAX, default
# 0.8.3, on Python 3.12: its jaxlib speaks a newer FFI API than the kernel's 0.1, and its psum
# under vmap needed a workaround); and the newest releases the ranges admit on the newest Python. Each gets those, the packages the core tests need (pytest,
# pytest-xdist, flatbuffers for jax.export's serialization) and the package itself: ONE wheel,
# built once as pip builds it (build isolation: the kernel compiled against the jaxlib that
# [build-system] pins), installed --no-deps everywhere, so the same kernel is loaded by every
# jaxlib in range. The core tests (and the package's doctests) run on that install with
# ADADELTA_REQUIRE_ALL=1: a test of the core selection that cannot run fails, none is skipped.
#
# Needs python3.11 or newer (on PATH or under pyenv), pip's access to the package index, git and
# a C++17 compiler. `make test-versions` runs it; CI after `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
CORE='not frameworks and not notebooks and not install'  # as conftest.py says
MIDDLE_JAX=${MIDDLE_JAX:-0.8.3}
MIDDLE_PYTHON_MINOR=${MIDDLE_PYTHON_MINOR:-12}

work=$(mktemp -d "${TMPDIR:-/tmp}/adadelta-versions.XXXXXX")
trap 'rm -rf "$work"' EXIT

log() { printf '%s\n' "versions: $*" >&2; }

# A python3.N for each N in the given range that has one (on PATH, else a pyenv install, which
# pyenv's shims do not run unless selected), oldest first.
pythons() {
  local minor candidate
  for minor in $(seq "$1" "$2"); do
    for candidate in "$(command -v "python3.$minor")" \
      "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3."$minor"; do
      if [[ -x $candidate ]] && "$candidate" -c 'import ensurepip, venv' 2>/dev/null; then
        echo "$candidate"
        break
      fi
    done
  done
}
newest_python=$(pythons 11 30 | tail -n 1)
[[ -n $newest_python ]] || { log "error: no python3.11 or newer found"; exit 1; }

# The floors and requirements from pyproject.toml (tomllib: Python 3.11+).
declared=$("$newest_python" - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as file:
  pyproject = tomllib.load(file)
floors = {}
for requirement in pyproject["project"]["dependencies"]:
  match = re.fullmatch(
    r"\s*(jax|jaxlib|ml_dtypes|optax)\s*>=\s*([0-9][0-9.]*)\s*(,.*)?", requirement
  )
  if match:
    floors[match[1]] = match[2]
missing = {"jax", "jaxlib", "ml_dtypes", "optax"} - set(floors)
if missing:
  raise SystemExit(f"pyproject.toml: no 'NAME>=VERSION' floor for {sorted(missing)}")
requires = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*", pyproject["project"]["requires-python"])
if not requires:
  raise SystemExit("pyproject.toml: requires-python is not '>=3.N'")
print(requires[1], floors["jax"], floors["jaxlib"], floors["optax"], floors["ml_dtypes"])
EOF
)
read -r requires_minor jax_floor jaxlib_floor optax_floor ml_dtypes_floor <<<"$declared"
# The newest run takes the newest releases the declared ranges admit (caps included).
mapfile -t declared_ranges < <("$newest_python" - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as file:
  dependencies = tomllib.load(file)["project"]["dependencies"]
print("\n".join(r for r in dependencies if re.match(r"\s*(jax|jaxlib|ml_dtypes|optax)\b", r)))
EOF
)
oldest_python=$(pythons "$requires_minor" 30 | sed -n 1p)
[[ -n $oldest_python ]] || { log "error: no python3.$requires_minor or newer found"; exit 1; }
middle_python=$(pythons "$MIDDLE_PYTHON_MINOR" 30 | sed -n 1p)
[[ -n $middle_python ]] || middle_python=$newest_python

# The repository's files as they are (committed or not, not ignored ones), for each build.
copy_tree() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do [[ -e $path ]] && printf '%s\0' "$path"; done |
    tar --null -cf - -T - | tar -xf - -C "$1"
}

# The wheel, once, as pip builds it for a user (build isolation), from a copy of the repository.
build_wheel() {
  copy_tree "$work/wheel-src"
  "$newest_python" -m pip wheel -q --no-deps -w "$work/wheel" "$work/wheel-src"
}

# setup NAME PYTHON REQUIREMENT...: a virtualenv with those and the wheel, and a copy of the
# repository without the package (so the tests import the installed one).
setup() {
  local name=$1 python=$2 venv=$work/$1/venv src=$work/$1/src
  shift 2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$@" pytest pytest-xdist flatbuffers
  copy_tree "$src"
  rm -rf "$src/adadelta_optax"
  while [[ ! -e $work/wheel.done ]]; do
    [[ -e $work/wheel.failed ]] && { echo "the wheel did not build" >&2; return 1; }
    sleep 1
  done
  "$venv/bin/python" -m pip install -q --no-deps "$work"/wheel/*.whl
  "$venv/bin/python" -m pip check
  (cd "$work" && "$venv/bin/python" - <<'EOF'
import importlib.metadata
import platform
import sys

import adadelta_optax

versions = ", ".join(f"{n} {importlib.metadata.version(n)}" for n in ("jax", "jaxlib", "optax"))
print(f"Python {platform.python_version()} ({sys.executable}), {versions}")
if not adadelta_optax.kernel_available():
  sys.exit(f"the kernel is not available: {adadelta_optax.kernel_unavailable_reason()}")
EOF
  ) >"$work/$name/versions"
}

# run NAME [PYTEST ARG...]: the core tests and the package's doctests, on the installed package.
run() {
  local venv=$work/$1/venv src=$work/$1/src package
  shift
  package=$(cd "$work" && "$venv/bin/python" -c \
    'import adadelta_optax, os; print(os.path.dirname(adadelta_optax.__file__))')
  (cd "$src" && ADADELTA_REQUIRE_ALL=1 "$venv/bin/python" -m pytest -c pyproject.toml \
    --rootdir . -n 2 --dist loadgroup -q --durations=10 -m "$CORE" "$@" tests "$package")
}

log "oldest: jax==$jax_floor jaxlib==$jaxlib_floor optax==$optax_floor ml_dtypes==$ml_dtypes_floor on $oldest_python" \
  "(requires-python >=3.$requires_minor); middle: jax==$MIDDLE_JAX on $middle_python;" \
  "newest: ${declared_ranges[*]} on $newest_python"
start=$SECONDS
# The wheel and the three setups (downloads) at once; their logs are shown if one fails.
{ build_wheel >"$work/wheel.log" 2>&1 && touch "$work/wheel.done"; } || touch "$work/wheel.failed" &
wheel_build=$!
setup oldest "$oldest_python" "jax==$jax_floor" "jaxlib==$jaxlib_floor" "optax==$optax_floor" \
  "ml_dtypes==$ml_dtypes_floor" \
  >"$work/oldest.log" 2>&1 &
oldest_setup=$!
setup middle "$middle_python" "jax==$MIDDLE_JAX" "jaxlib==$MIDDLE_JAX" "${declared_ranges[@]}" \
  >"$work/middle.log" 2>&1 &
middle_setup=$!
setup newest "$newest_python" "${declared_ranges[@]}" >"$work/newest.log" 2>&1 &
newest_setup=$!
status=0
wait "$wheel_build" || true
if [[ ! -e $work/wheel.done ]]; then
  log "error: building the wheel failed:"
  cat "$work/wheel.log" >&2
  status=1
fi
for name in oldest middle newest; do
  pid_var=${name}_setup
  if ! wait "${!pid_var}"; then
    log "error: setting up the $name virtualenv failed:"
    cat "$work/$name.log" >&2
    status=1
  fi
done
((status == 0)) || exit 1
log "set up in $((SECONDS - start)) s"

summary=()
for name in oldest middle newest; do
  log "$name: $(cat "$work/$name/versions")"
  started=$SECONDS
  if run "$name"; then result=passed; else result=FAILED status=1; fi
  summary+=("$name ($(cat "$work/$name/versions")): $result in $((SECONDS - started)) s")
done
log "summary, $((SECONDS - start)) s in all:"
printf '  %s\n' "${summary[@]}" >&2
exit "$status"
