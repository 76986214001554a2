#!/usr/bin/env bash
# Make a Debian bookworm base image locally, for machines that cannot pull from an image registry.
#
#   containers/base-image.sh [TAG]
#
# debootstrap builds a minimal bookworm root file system (plus python3 and ca-certificates, so
# the image also serves as an Ansible/molecule target), and `docker import` turns it into TAG
# (default: semhpc/debian:bookworm, or $SEMHPC_BASE_IMAGE). It is cached: when TAG exists the
# script only prints it. Set SEMHPC_BASE_REBUILD=1 to rebuild, DEBIAN_MIRROR to use another
# mirror. Needs root (debootstrap), debootstrap itself and a running Docker daemon.
# The tag is printed on stdout (progress goes to stderr), so callers can write
#   BASE=$(containers/base-image.sh)
set -euo pipefail

TAG=${1:-${SEMHPC_BASE_IMAGE:-semhpc/debian:bookworm}}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
EXTRA_PACKAGES=python3,ca-certificates

say() { echo "[base-image] $*" >&2; }
die() { echo "[base-image] error: $*" >&2; exit 1; }

if [[ "${SEMHPC_BASE_REBUILD:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  say "$TAG exists (cached; SEMHPC_BASE_REBUILD=1 rebuilds it)"
  echo "$TAG"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "debootstrap needs root: sudo $0 $*"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start it: dockerd &)"

rootfs=$(mktemp -d /tmp/semhpc-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

say "debootstrap $SUITE from $MIRROR into $rootfs (1-3 minutes)"
debootstrap --variant=minbase --include="$EXTRA_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >&2

# debootstrap only lists the release itself; point apt at the updates and security suites too.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
# Keep the image small: no package lists, no downloaded .debs, no docs apt may add later.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF

say "docker import -> $TAG"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase $SUITE $MIRROR (+ $EXTRA_PACKAGES)" \
  - "$TAG" >/dev/null
echo "$TAG"
