#!/usr/bin/env bash
# Build a wheelhouse: the offline install source of the semhpc_env role (semhpc_env_wheelhouse).
#
#   ansible/scripts/wheelhouse.sh DIR [EXTRA_REQUIREMENT ...]
#
# DIR receives the wheels of requirements.lock, the Horovod wheel compiled against this machine's
# TensorFlow and MPI (the one scripts/bootstrap.sh caches), a semhpc wheel built from this
# checkout, any EXTRA_REQUIREMENT (e.g. ipykernel jupyterlab, for the Jupyter kernel and job)
# with its dependencies, and DIR/requirements.txt pinning every wheel there: the layout
# containers/build.sh exports, so either works as semhpc_env_wheelhouse. On a node without
# internet: pip install --no-deps --no-index --find-links DIR -r DIR/requirements.txt
# Run it on a machine like the nodes: same Python minor version, OS family and MPI (Horovod is
# linked against that MPI). Only binary wheels are taken, chosen for the nodes' exact Python
# (NODE_PYTHON_VERSION, e.g. 3.11.2; default: PYTHON's), since some wheels require a patch level. The pinned wheels are fetched once (a stamp of the lock and the
# extras); later runs only rebuild semhpc's wheel, so DIR always holds the checkout's code.
# Env: PYTHON (default: the repository's .venv python), SEMHPC_CACHE (default ~/.cache/semhpc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
CACHE=${SEMHPC_CACHE:-$HOME/.cache/semhpc}

say() { echo "[wheelhouse] $*" >&2; }
die() { echo "[wheelhouse] error: $*" >&2; exit 2; }

python_constant() {
  # A string constant of semhpc/__init__.py (the single source of the versions).
  sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$ROOT/semhpc/__init__.py"
}

[[ $# -ge 1 ]] || die "usage: $0 DIR [EXTRA_REQUIREMENT ...]"
out=$1
shift
extras=("$@")
[[ -x $PYTHON ]] || die "no Python at $PYTHON (set PYTHON=...)"
horovod=$(python_constant SUPPORTED_HOROVOD)
tensorflow=$(python_constant SUPPORTED_TENSORFLOW)
py_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
node_python=${NODE_PYTHON_VERSION:-$("$PYTHON" -c 'import platform; print(platform.python_version())')}
mkdir -p "$out"

pinned_wheels() {
  # The lock (without Horovod, which is compiled, not downloaded) plus the extras.
  local stamp="$out/.pinned-stamp" value
  value=$({ cat "$ROOT/requirements.lock"; printf '%s\n' "$node_python" "${extras[@]}"; } | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$value" ]]; then
    say "pinned wheels are up to date"
    return
  fi
  rm -f "$out"/*.whl "$stamp"
  { grep -v -E '^horovod( |@|=|$)' "$ROOT/requirements.lock"; printf '%s\n' "${extras[@]}"; } >"$out/pinned.txt"
  say "fetching the wheels of requirements.lock ${extras[*]} for Python $node_python (once; about 400 MB)"
  # The lock also constrains the extras and whatever they pull in.
  "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --python-version "$node_python" -d "$out" -r "$out/pinned.txt" -c "$ROOT/requirements.lock" >&2
  rm "$out/pinned.txt"
  echo "$value" >"$stamp"
}

horovod_wheel() {
  local wheels=("$CACHE/wheels/horovod-$horovod-tf$tensorflow/horovod-$horovod-$py_tag-"*.whl)
  [[ -f ${wheels[0]} ]] || die "no Horovod $horovod wheel for $py_tag in $CACHE/wheels: run scripts/bootstrap.sh first (it compiles and caches it)"
  cp -p "${wheels[0]}" "$out/"
}

semhpc_wheel() {
  # Built from a copy of the package sources, so the checkout gets no build/ or egg-info.
  local src
  src=$(mktemp -d)
  trap 'rm -rf "$src"' RETURN
  cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/semhpc" "$ROOT/hpc" "$src/"
  rm -f "$out"/semhpc-*.whl
  "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -c "$ROOT/requirements.lock" -w "$out" "$src" >&2
  # The cluster profiles and job templates travel as data files (pyproject.toml); without them
  # `semhpc submit` on the nodes has nothing to render.
  "$PYTHON" -c 'import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(not any("/data/share/semhpc/hpc/templates/job/" in n for n in names))' "$out"/semhpc-*.whl \
    || die "the semhpc wheel lacks share/semhpc/hpc (cluster profiles and job templates)"
}

requirements() {
  # name==version of every wheel (file names are NAME-VERSION-...whl, NAME with _ for -).
  local wheel
  for wheel in "$out"/*.whl; do
    wheel=$(basename "$wheel")
    echo "$(echo "$wheel" | cut -d- -f1 | tr _ -)==$(echo "$wheel" | cut -d- -f2)"
  done
}

pinned_wheels
horovod_wheel
semhpc_wheel
requirements >"$out/requirements.txt"
say "$out: $(wc -l <"$out/requirements.txt") wheels and requirements.txt"
echo "$out"
