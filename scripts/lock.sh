#!/usr/bin/env bash
# Re-resolve requirements.in into requirements.lock in a throw-away venv (run after editing .in).
# This is the one place that takes the newest releases on purpose; everything else installs with
# the lock as requirements or constraints. The build tools (pip, setuptools, wheel, and what they
# depend on) are resolved and pinned too (`pip freeze --all`), so no install step ever takes them
# unpinned from the registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip setuptools wheel
"$tmp/venv/bin/pip" install -q -r "$root/requirements.in"
{
  echo "# Generated from requirements.in by scripts/lock.sh: the full pinned tree (Python 3.11, CPU),"
  echo "# build tools (pip, setuptools, wheel) included. Every install uses it as requirements or"
  echo "# constraints (scripts/lock_check.py proves an environment matches it)."
  echo "# Horovod is not here: scripts/bootstrap.sh builds it against this TensorFlow."
  "$tmp/venv/bin/pip" freeze --all | grep -v -i "^horovod"
} > "$root/requirements.lock"
"$tmp/venv/bin/python" "$root/scripts/lock_check.py" "$root/requirements.lock"
echo "wrote $root/requirements.lock"
