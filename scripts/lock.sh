#!/usr/bin/env bash
# Resolve requirements.in into requirements.lock in a throw-away venv (run after editing .in).
#
#   scripts/lock.sh            keep every version the lock pins today; resolve only what is new
#                              in requirements.in (the lock is the constraint)
#   scripts/lock.sh --upgrade  resolve everything afresh at the newest releases
#   scripts/lock.sh --extras   only the flavour extras (requirements-mkl.in -> requirements-mkl.lock)
#
# A flavour extra (the mkl flavour's Intel Extension for TensorFlow) is installed with --no-deps on
# top of requirements.lock (requirements-mkl.in says why), so it is resolved that way too, in a venv
# of its own, and pinned in a lock of its own that the default install never reads.
#
# These are the only installs that take versions from the registry on purpose; everything else
# installs with the lock as requirements or constraints. The build tools (pip, setuptools, wheel,
# and what they depend on) are resolved and pinned too (`pip freeze --all`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
upgrade=0
extras_only=0
case "${1:-}" in
  --upgrade) upgrade=1 ;;
  --extras) extras_only=1 ;;
  "") ;;
  *) echo "lock.sh: unknown option '$1' (--upgrade, --extras)" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

lock_extra() {
  # requirements-NAME.in -> requirements-NAME.lock: what --no-deps installs, at the versions the
  # extra's lock pins today (unless --upgrade).
  local name=$1 venv="$tmp/venv-$1" keep=()
  python3 -m venv "$venv"
  PIP_CONSTRAINT="$root/requirements.lock" "$venv/bin/pip" install -q pip setuptools wheel
  [[ $upgrade -eq 0 && -f "$root/requirements-$name.lock" ]] && keep=(-c "$root/requirements-$name.lock")
  "$venv/bin/pip" install -q --no-deps "${keep[@]}" -r "$root/requirements-$name.in"
  {
    echo "# Generated from requirements-$name.in by scripts/lock.sh: the $name flavour's extra, installed"
    echo "# with --no-deps on top of requirements.lock (scripts/lock_check.py checks a venv against both)."
    # the venv's build tools and their dependencies are requirements.lock's own pins
    "$venv/bin/pip" freeze | grep -v -x -F -f "$root/requirements.lock"
  } > "$tmp/requirements-$name.lock"
  mv "$tmp/requirements-$name.lock" "$root/requirements-$name.lock"
  echo "wrote $root/requirements-$name.lock"
}

if [[ $extras_only -eq 1 ]]; then
  lock_extra mkl
  exit 0
fi
python3 -m venv "$tmp/venv"
if [[ $upgrade -eq 1 ]]; then
  "$tmp/venv/bin/pip" install -q --upgrade pip setuptools wheel
  "$tmp/venv/bin/pip" install -q -r "$root/requirements.in"
else
  export PIP_CONSTRAINT="$root/requirements.lock"
  "$tmp/venv/bin/pip" install -q pip setuptools wheel
  "$tmp/venv/bin/pip" install -q -r "$root/requirements.in"
fi
{
  echo "# Generated from requirements.in by scripts/lock.sh: the full pinned tree (Python 3.11, CPU),"
  echo "# build tools (pip, setuptools, wheel) included. Every install uses it as requirements or"
  echo "# constraints (scripts/lock_check.py proves an environment matches it)."
  echo "# Horovod is not here: scripts/bootstrap.sh builds it against this TensorFlow."
  "$tmp/venv/bin/pip" freeze --all | grep -v -i "^horovod"
} > "$tmp/requirements.lock"
"$tmp/venv/bin/python" "$root/scripts/lock_check.py" "$tmp/requirements.lock"
mv "$tmp/requirements.lock" "$root/requirements.lock"
echo "wrote $root/requirements.lock"
lock_extra mkl
