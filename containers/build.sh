#!/usr/bin/env bash
# Build the semhpc image of one flavour and everything a cluster without Docker needs from it.
#
#   containers/build.sh [--flavor cpu|mkl|cuda] [--base-image IMAGE | --local-base] [--site-ca FILE]
#                       [--reuse-wheels DIR] [--out DIR] [--no-archive] [-- EXTRA DOCKER BUILD ARGS...]
#
#   --flavor       cpu (default): Debian bookworm + tensorflow-cpu; mkl: cpu + Intel Extension for
#                  TensorFlow (requirements-mkl.lock; reuses the cpu build's cached layers);
#                  cuda: NVIDIA CUDA + cuDNN base
#   --base-image   the FROM image (default: debian:bookworm for cpu and mkl,
#                  nvidia/cuda:12.2.2-cudnn8-devel-ubuntu22.04 for cuda)
#   --local-base   no registry: make a Debian bookworm base with containers/base-image.sh (cpu, mkl)
#   --site-ca      CA bundle pip must trust in the build, for a TLS-inspecting proxy
#                  (default: $SITE_CA_BUNDLE, else $PIP_CERT; used in the build stage only)
#   --reuse-wheels a folder with a Horovod wheel already compiled for the image's Python,
#                  TensorFlow and Open MPI (a wheelhouse exported by an earlier build, or
#                  ~/.cache/semhpc/wheels/horovod-VERSION-tfVERSION/ of scripts/bootstrap.sh on
#                  a bookworm host): skips the 3-4 minute compile. Without it Horovod is compiled.
#   --out          output folder (default: containers/out)
#   --no-archive   skip the `docker save` archive (and so the SIF)
#
# Results:
#   images   semhpc:VERSION-FLAVOR and semhpc:FLAVOR ($SEMHPC_IMAGE renames "semhpc")
#   DIR/semhpc-VERSION-FLAVOR.tar   `docker save` archive: `docker load -i`, or Apptainer's
#                                   docker-archive bootstrap (containers/semhpc.def)
#   DIR/semhpc-VERSION-FLAVOR.sif   when `apptainer` or `singularity` is on PATH
#   DIR/wheelhouse-VERSION-FLAVOR/  every wheel the image was built from (Horovod compiled
#                                   against its TensorFlow and OpenMPI, semhpc, the pinned tree)
#                                   and requirements.txt, for offline installs:
#                                   pip install --no-index --find-links DIR -r DIR/requirements.txt
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
IMAGE=${SEMHPC_IMAGE:-semhpc}

flavor=cpu
base_image=
local_base=0
site_ca=${SITE_CA_BUNDLE:-${PIP_CERT:-}}
reuse_wheels=
out=$HERE/out
archive=1
extra_build_args=()

say() { echo "[build] $*" >&2; }
die() { echo "[build] error: $*" >&2; exit 2; }

python_constant() {
  # A string constant of semhpc/__init__.py (the single source of the versions), without Python.
  sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$ROOT/semhpc/__init__.py"
}

default_base_image() {
  case "$1" in
    cpu|mkl) echo "debian:bookworm" ;;
    cuda) echo "nvidia/cuda:12.2.2-cudnn8-devel-ubuntu22.04" ;;
  esac
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --flavor) flavor=${2:?--flavor needs cpu, mkl or cuda}; shift 2 ;;
    --base-image) base_image=${2:?--base-image needs an image}; shift 2 ;;
    --local-base) local_base=1; shift ;;
    --site-ca) site_ca=${2:?--site-ca needs a file}; shift 2 ;;
    --reuse-wheels) reuse_wheels=${2:?--reuse-wheels needs a folder}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --no-archive) archive=0; shift ;;
    --) shift; extra_build_args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ "$flavor" == cpu || "$flavor" == mkl || "$flavor" == cuda ]] || die "--flavor must be cpu, mkl or cuda, not '$flavor'"
command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start it: dockerd &)"
if [[ $local_base -eq 1 ]]; then
  [[ "$flavor" != cuda ]] || die "--local-base makes a Debian base: it serves the cpu and mkl flavours only"
  base_image=$("$HERE/base-image.sh")
fi
base_image=${base_image:-$(default_base_image "$flavor")}

version=$(python_constant __version__)
horovod_version=$(python_constant SUPPORTED_HOROVOD)
tag="$IMAGE:$version-$flavor"
name="semhpc-$version-$flavor"

# Machine-specific build inputs are staged in the build context (site-ca/, prebuilt-wheels/) for
# this run only: emptied first and on exit, so they are never committed and a build without the
# option never picks up what an earlier one staged.
unstage() { rm -f "$HERE/site-ca/ca-bundle.crt" "$HERE"/prebuilt-wheels/*.whl; }
unstage
trap unstage EXIT
if [[ -n "$site_ca" ]]; then
  [[ -s "$site_ca" ]] || die "site CA bundle '$site_ca' is missing or empty"
  cp "$site_ca" "$HERE/site-ca/ca-bundle.crt"
  say "pip in the build trusts $site_ca (staged as containers/site-ca/ca-bundle.crt; not in the image)"
fi
if [[ -n "$reuse_wheels" ]]; then
  wheel=$(find "$reuse_wheels" -maxdepth 1 -name "horovod-$horovod_version-*.whl" 2>/dev/null | head -n1)
  [[ -n "$wheel" ]] || die "--reuse-wheels: no horovod-$horovod_version-*.whl in '$reuse_wheels'"
  cp "$wheel" "$HERE/prebuilt-wheels/"
  say "reusing $wheel instead of compiling Horovod"
fi

build_args=(
  --build-arg FLAVOR="$flavor"
  --build-arg BASE_IMAGE="$base_image"
  --build-arg SEMHPC_VERSION="$version"
  --build-arg TENSORFLOW_VERSION="$(python_constant SUPPORTED_TENSORFLOW)"
  --build-arg HOROVOD_VERSION="$horovod_version"
  --build-arg VCS_REF="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
  "${extra_build_args[@]}"
)
say "building $tag from $base_image"
start=$(date +%s)
docker build --force-rm -f "$HERE/Dockerfile" -t "$tag" -t "$IMAGE:$flavor" "${build_args[@]}" "$ROOT" >&2
say "built $tag in $(( $(date +%s) - start )) s"

mkdir -p "$out"
# The wheelhouse: the same build stopped at its `wheelhouse` stage (all cached by now), copied out.
wheelhouse_image="$IMAGE-wheelhouse:$version-$flavor"
docker build -q --force-rm -f "$HERE/Dockerfile" --target wheelhouse -t "$wheelhouse_image" "${build_args[@]}" "$ROOT" >/dev/null
container=$(docker create "$wheelhouse_image")
rm -rf "$out/wheelhouse-$version-$flavor"
docker cp "$container:/wheelhouse" "$out/wheelhouse-$version-$flavor"
docker rm "$container" >/dev/null
say "wheelhouse: $out/wheelhouse-$version-$flavor ($(find "$out/wheelhouse-$version-$flavor" -name '*.whl' | wc -l) wheels)"

if [[ $archive -eq 1 ]]; then
  docker save -o "$out/$name.tar" "$tag"
  say "archive: $out/$name.tar"
  runtime=$(command -v apptainer || command -v singularity || true)
  if [[ -n "$runtime" ]]; then
    "$runtime" build --force --build-arg ARCHIVE="$out/$name.tar" "$out/$name.sif" "$HERE/semhpc.def" >&2
    say "SIF: $out/$name.sif"
  else
    say "no apptainer/singularity here: build the SIF where one is, from the archive (containers/README.md)"
  fi
fi
echo "$tag"
