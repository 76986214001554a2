#!/usr/bin/env bash
# Molecule's dependency step for the container scenario: what it needs from the host.
#   1. the Debian bookworm base image of the nodes (containers/base-image.sh; cached once built)
#   2. the cpu image (containers/build.sh when semhpc:cpu is missing) as the archive of its
#      Charliecloud image folder a site deploys: `ch-convert -i docker -o dir` (the folder
#      tests/hpc_runtime.py converts, when it is there), then the folder archived with tar
#      (uncompressed: gzip costs more time than the copy saves here). ch-convert -i docker -o tar
#      is no substitute: its archive lacks ch/environment, the image's ENV `ch-run --set-env` reads.
#      Made once per image id into ~/.cache/semhpc/molecule-image/ with its sha256 beside it; the
#      link semhpc-0.1.0-cpu.tar names the current one (inventory/group_vars/all.yml reads it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
"$ROOT/containers/base-image.sh" semhpc/debian:bookworm >/dev/null
tag=semhpc:cpu
if ! docker image inspect "$tag" >/dev/null 2>&1; then
  "$ROOT/containers/build.sh" --flavor cpu --local-base --no-archive >/dev/null
fi
cache=$HOME/.cache/semhpc/molecule-image
id=$(docker image inspect --format '{{.Id}}' "$tag" | cut -d: -f2 | cut -c1-16)
archive=$cache/semhpc-cpu-$id.tar
if [[ ! -s $archive.sha256 ]]; then
  rm -rf "$cache" && mkdir -p "$cache"
  folder=${SEMHPC_RUNTIME_CACHE:-/var/tmp/semhpc-cache}/charliecloud/$id
  if [[ ! -f $folder/ch/environment ]]; then
    folder=$cache/folder
    USER=${USER:-$(id -un)} ch-convert -i docker -o dir "$tag" "$folder" >&2
  fi
  tar -C "$folder" -cf "$archive.partial" .
  mv "$archive.partial" "$archive"
  rm -rf "$cache/folder"
  sha256sum "$archive" | cut -d' ' -f1 > "$archive.sha256"
fi
ln -sfn "$(basename "$archive")" "$cache/semhpc-0.1.0-cpu.tar"
ln -sfn "$(basename "$archive").sha256" "$cache/semhpc-0.1.0-cpu.tar.sha256"
