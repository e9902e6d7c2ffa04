#!/usr/bin/env bash
# The core tests on the oldest jax, jaxlib and optax that pyproject.toml declares (its
# [project].dependencies floors, pinned with ==) and on the newest ones, each in a fresh virtualenv:
# those three, the packages the core tests need (pytest, pytest-xdist, flatbuffers for jax.export's
# serialization) and the build requirements but jaxlib (pyproject's [build-system]); then the
# package, installed (not editable) with its kernel compiled against that virtualenv's own jaxlib,
# and the core tests (and the package's doctests) run on that install, with
# ADADELTA_REQUIRE_ALL=1: a test of the core selection that cannot run fails, none is skipped.
#
# The oldest run uses the oldest Python that requires-python admits (python3.10 for ">=3.10") when
# the machine has it, else the oldest python3.x it has; the newest run the newest python3.x.
# Needs those pythons, pip's access to the package index, git and a C++17 compiler. `make
# test-versions` runs it; CI after `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
CORE='not frameworks and not notebooks and not install'  # as conftest.py says

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
build=$("$newest_python" - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as file:
  requires = tomllib.load(file)["build-system"]["requires"]
# jaxlib is the one the virtualenv has: the kernel is built against it (--no-build-isolation).
print("\n".join(r for r in requires if re.match(r"\s*jaxlib\b", r) is None))
EOF
)
# The newest run takes the newest releases the declared ranges admit (caps included).
mapfile -t declared_ranges < <("$newest_python" - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as file:
  dependencies = tomllib.load(file)["project"]["dependencies"]
print("\n".join(r for r in dependencies if re.match(r"\s*(jax|jaxlib|ml_dtypes|optax)\b", r)))
EOF
)
build_requires=()
[[ -z $build ]] || mapfile -t build_requires <<<"$build"
oldest_python=$(pythons "$requires_minor" 30 | sed -n 1p)
[[ -n $oldest_python ]] || { log "error: no python3.$requires_minor or newer found"; exit 1; }

# The repository's files as they are (committed or not, not ignored ones), for each build.
copy_tree() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do [[ -e $path ]] && printf '%s\0' "$path"; done |
    tar --null -cf - -T - | tar -xf - -C "$1"
}

# setup NAME PYTHON REQUIREMENT...: a virtualenv with the package installed from a copy of the
# repository, which then holds the tests and no package (so they import the installed one).
setup() {
  local name=$1 python=$2 venv=$work/$1/venv src=$work/$1/src
  shift 2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$@" pytest pytest-xdist flatbuffers "${build_requires[@]}"
  copy_tree "$src"
  "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps "$src"
  rm -rf "$src/adadelta_optax" "$src/build"
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
    --rootdir . -n 2 --dist loadgroup -q -m "$CORE" "$@" tests "$package")
}

log "oldest: jax==$jax_floor jaxlib==$jaxlib_floor optax==$optax_floor ml_dtypes==$ml_dtypes_floor on $oldest_python" \
  "(requires-python >=3.$requires_minor); newest: ${declared_ranges[*]} on $newest_python"
start=$SECONDS
# The two setups (downloads, the kernel's compile) at once; their logs are shown if one fails.
setup oldest "$oldest_python" "jax==$jax_floor" "jaxlib==$jaxlib_floor" "optax==$optax_floor" \
  "ml_dtypes==$ml_dtypes_floor" \
  >"$work/oldest.log" 2>&1 &
oldest_setup=$!
setup newest "$newest_python" "${declared_ranges[@]}" >"$work/newest.log" 2>&1 &
newest_setup=$!
status=0
for name in oldest newest; do
  pid_var=${name}_setup
  if ! wait "${!pid_var}"; then
    log "error: setting up the $name virtualenv failed:"
    cat "$work/$name.log" >&2
    status=1
  fi
done
((status == 0)) || exit 1
log "set up in $((SECONDS - start)) s"

# With the same jax and jaxlib at both ends (the range's cap can make them equal), the
# multi-device tests (subprocesses on 8 simulated devices: JAX's partitioning, not optax's or
# Python's) would run the same code twice: they run once, in the newest.
jax_of() { grep -o 'jax [0-9.]*, jaxlib [0-9.]*' "$work/$1/versions"; }
oldest_args=()
if [[ "$(jax_of oldest)" == "$(jax_of newest)" ]]; then
  oldest_args=(--ignore=tests/test_sharding.py --ignore=tests/test_multiprocess.py)
  log "oldest and newest have the same $(jax_of oldest): the multi-device tests run in the newest"
fi

summary=()
for name in oldest newest; do
  log "$name: $(cat "$work/$name/versions")"
  started=$SECONDS
  args=()
  [[ $name == oldest ]] && args=("${oldest_args[@]}")
  if run "$name" "${args[@]}"; then result=passed; else result=FAILED status=1; fi
  summary+=("$name ($(cat "$work/$name/versions")): $result in $((SECONDS - started)) s")
done
log "summary, $((SECONDS - start)) s in all:"
printf '  %s\n' "${summary[@]}" >&2
exit "$status"
