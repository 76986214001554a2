#!/usr/bin/env bash
# Molecule's dependency step: what the scenario needs from the host before the containers start.
#   1. the Debian bookworm base image (containers/base-image.sh; cached once built)
#   2. the wheelhouse mounted at /wheelhouse, for the image's Python: the pinned tree, Horovod,
#      semhpc from this checkout, and the Jupyter packages the semhpc_jupyter role checks for
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
base=$("$ROOT/containers/base-image.sh" semhpc/debian:bookworm)
NODE_PYTHON_VERSION=$(docker run --rm "$base" python3 -c 'import platform; print(platform.python_version())') \
  "$ROOT/ansible/scripts/wheelhouse.sh" "$HOME/.cache/semhpc/molecule-wheelhouse" ipykernel jupyterlab >/dev/null
