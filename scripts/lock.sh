#!/usr/bin/env bash
# Resolve requirements.in into requirements.lock in a throw-away venv (run after editing .in).
#
#   scripts/lock.sh            keep every version the lock pins today; resolve only what is new
#                              in requirements.in (the lock is the constraint)
#   scripts/lock.sh --upgrade  resolve everything afresh at the newest releases
#
# These are the only installs that take versions from the registry on purpose; everything else
# installs with the lock as requirements or constraints. The build tools (pip, setuptools, wheel,
# and what they depend on) are resolved and pinned too (`pip freeze --all`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
upgrade=0
[[ "${1:-}" == "--upgrade" ]] && upgrade=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
