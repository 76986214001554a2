#!/usr/bin/env bash
# Idempotent environment bootstrap for semhpc, used by `make demo` and `make test`.
#
#   scripts/bootstrap.sh           runtime: OpenMPI + build tools, .venv, pinned TensorFlow, Horovod
#   scripts/bootstrap.sh --test    also what the test suite drives for real (see TEST_APT_PACKAGES)
#   scripts/bootstrap.sh --mkl     the mkl flavour: also Intel Extension for TensorFlow
#                                  (requirements-mkl.lock; or SEMHPC_FLAVOR=mkl). A run without it
#                                  takes the extension out again: the venv is the cpu flavour.
#
# 1. Debian packages that are missing are installed when we are root (else: one error line).
# 2. .venv is created with the pinned tree of requirements.lock (tensorflow-cpu==2.15.1, numpy<2),
#    build tools included; the lock constrains every pip call, and scripts/lock_check.py then
#    proves that every installed package is pinned there at its installed version.
# 3. Horovod 0.28.1 is compiled once with MPI + Gloo against that TensorFlow; the wheel is cached
#    in $SEMHPC_CACHE/wheels (default ~/.cache/semhpc) so later bootstraps only install it.
# 4. semhpc itself is installed editable, and `semhpc doctor` must pass (for --mkl: with the
#    extension's plugin loaded).
# A stamp (hash of the locks, this script, the check, pyproject.toml and the flavour) makes a second
# run take seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SEMHPC_VENV:-$ROOT/.venv}
CACHE=${SEMHPC_CACHE:-$HOME/.cache/semhpc}
PYTHON=${PYTHON:-python3}
HOROVOD_VERSION=0.28.1
TENSORFLOW_VERSION=2.15.1

RUNTIME_APT_PACKAGES=(openmpi-bin libopenmpi-dev cmake g++ make)
# Tools the tests use for real: shellcheck for job scripts, Docker and debootstrap for the images,
# Slurm, Chromium for the browser tests, Charliecloud (an unprivileged HPC container runtime),
# PostgreSQL for the catalog's shared backend.
TEST_APT_PACKAGES=(shellcheck docker.io debootstrap slurm-wlm munge chromium charliecloud postgresql)

want_test=0
flavor=${SEMHPC_FLAVOR:-cpu}
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --mkl) flavor=mkl ;;
    *) echo "[bootstrap] error: unknown option '$arg' (--test, --mkl)" >&2; exit 1 ;;
  esac
done
[[ "$flavor" == cpu || "$flavor" == mkl ]] || { echo "[bootstrap] error: SEMHPC_FLAVOR must be cpu or mkl, not '$flavor'" >&2; exit 1; }

say() { echo "[bootstrap] $*" >&2; }
die() { echo "[bootstrap] error: $*" >&2; exit 1; }

missing_apt_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

ensure_apt_packages() {
  local missing
  missing=$(missing_apt_packages "$@")
  [[ -z "$missing" ]] && return 0
  command -v apt-get >/dev/null || die "missing system packages ($(echo $missing)) and no apt-get: install them with your package manager"
  [[ $(id -u) -eq 0 ]] || die "missing system packages: $(echo $missing); run as root or: sudo apt-get install $(echo $missing)"
  say "installing system packages: $(echo $missing)"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

semhpc_version() {
  sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/semhpc/__init__.py"
}

stamp_value() {
  { cat "$ROOT/requirements.lock" "$ROOT/requirements-mkl.lock" "$ROOT/scripts/bootstrap.sh" \
      "$ROOT/scripts/lock_check.py" "$ROOT/pyproject.toml"; echo "flavor=$flavor"; } |
    sha256sum | cut -c1-16
}

install_flavor_extension() {
  # The mkl flavour's extension goes in with --no-deps (its metadata asks for `tensorflow` and
  # older protobuf/absl-py than the lock's, which load and train: requirements-mkl.in says why);
  # the cpu flavour takes out what an earlier --mkl run installed. Prints the locks to check against.
  local names
  names=$(sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\)==.*/\1/p' "$ROOT/requirements-mkl.lock")
  if [[ "$flavor" == mkl ]]; then
    say "installing the mkl flavour's extension (requirements-mkl.lock)"
    "$VENV/bin/pip" install -q --no-deps -c "$ROOT/requirements.lock" -r "$ROOT/requirements-mkl.lock" >&2
    echo "$ROOT/requirements.lock $ROOT/requirements-mkl.lock"
  else
    # shellcheck disable=SC2086
    "$VENV/bin/pip" uninstall -q -y $names >/dev/null 2>&1 || true
    echo "$ROOT/requirements.lock"
  fi
}

horovod_wheel() {
  # The cached wheel for this Horovod/TensorFlow/Python triple, built on first use.
  local py_tag dir wheel
  py_tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  dir="$CACHE/wheels/horovod-$HOROVOD_VERSION-tf$TENSORFLOW_VERSION"
  wheel=$(ls "$dir"/horovod-"$HOROVOD_VERSION"-"$py_tag"-*.whl 2>/dev/null | head -n1 || true)
  if [[ -z "$wheel" ]]; then
    say "building Horovod $HOROVOD_VERSION with MPI + Gloo against TensorFlow $TENSORFLOW_VERSION (about 2-4 minutes, once)"
    mkdir -p "$dir"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
      HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      "$VENV/bin/pip" wheel -q --no-build-isolation --no-deps --no-cache-dir -c "$ROOT/requirements.lock" \
      -w "$dir" "horovod==$HOROVOD_VERSION" >&2
    wheel=$(ls "$dir"/horovod-"$HOROVOD_VERSION"-"$py_tag"-*.whl | head -n1)
  fi
  echo "$wheel"
}

main() {
  ensure_apt_packages "${RUNTIME_APT_PACKAGES[@]}"
  [[ $want_test -eq 1 ]] && ensure_apt_packages "${TEST_APT_PACKAGES[@]}"
  # npm installs JupyterHub's proxy (pinned by its package-lock.json) for the hub test; a Node.js
  # that is already there (say, from NodeSource) is used as it is.
  if [[ $want_test -eq 1 ]] && ! command -v npm >/dev/null; then ensure_apt_packages nodejs npm; fi

  local stamp="$VENV/.semhpc-bootstrap"
  if [[ -x "$VENV/bin/semhpc" && -f "$stamp" && "$(cat "$stamp")" == "$(stamp_value)" ]]; then
    say "environment ready ($VENV)"
    return 0
  fi

  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))' ||
      die "$PYTHON is $("$PYTHON" --version 2>&1); TensorFlow $TENSORFLOW_VERSION needs Python 3.9-3.11 (set PYTHON=...)"
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing the pinned Python packages (requirements.lock)"
  # The lock constrains every pip call below and any pip those start (PIP_CONSTRAINT), the build
  # tools first: nothing comes from the registry at whatever version it published last.
  export PIP_CONSTRAINT="$ROOT/requirements.lock"
  "$VENV/bin/pip" install -q pip setuptools wheel
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.lock"

  if [[ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("horovod"))' 2>/dev/null)" != "$HOROVOD_VERSION" ]]; then
    "$VENV/bin/pip" install -q --no-deps "$(horovod_wheel)"
  fi
  # No build isolation: an isolated build would fetch setuptools unpinned.
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" >"$VENV/.semhpc-install.log" 2>&1 ||
    { cat "$VENV/.semhpc-install.log" >&2; die "pip install -e $ROOT failed"; }
  local locks
  locks=$(install_flavor_extension)
  # shellcheck disable=SC2086
  "$VENV/bin/python" "$ROOT/scripts/lock_check.py" $locks \
    --allow "horovod==$HOROVOD_VERSION" --allow "semhpc==$(semhpc_version)" >/dev/null ||
    die "$VENV differs from $locks (above): remove what you installed by hand, or delete $VENV and run again"

  "$VENV/bin/semhpc" doctor >/dev/null || { "$VENV/bin/semhpc" doctor; die "semhpc doctor found problems"; }
  if [[ "$flavor" == mkl ]]; then
    "$VENV/bin/semhpc" doctor --json | "$VENV/bin/python" -c 'import json, sys; report = json.load(sys.stdin);
sys.exit(None if report["itex_loaded"] else "[bootstrap] error: --mkl: " + report["cpu_extension"])'
  fi
  stamp_value > "$stamp"
  say "environment ready ($VENV)"
}

main
