#!/usr/bin/env bash
# Re-resolve requirements.in into requirements.lock in a throw-away venv (run after editing .in).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q -r "$root/requirements.in"
{
  echo "# Generated from requirements.in by scripts/lock.sh: the full pinned tree (Python 3.11, CPU)."
  echo "# Horovod is not here: scripts/bootstrap.sh builds it against this TensorFlow."
  "$tmp/venv/bin/pip" freeze | grep -v -i "^horovod"
} > "$root/requirements.lock"
echo "wrote $root/requirements.lock"
