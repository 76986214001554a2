#!/usr/bin/env bash
# The multi-node test cluster: a head node and two one-core compute nodes in Docker containers,
# with real Slurm (slurmctld, slurmdbd + MariaDB, slurmd) and real OpenPBS (pbs_server, pbs_sched,
# pbs_comm, pbs_mom). hpc/testbed/README.md describes it.
#
#   hpc/testbed/testbed.sh build          build the image (cached: seconds when nothing changed)
#   hpc/testbed/testbed.sh up             build, then start the nodes and wait until both
#                                         schedulers list both compute nodes as free
#   hpc/testbed/testbed.sh down           remove the nodes, their network and volumes
#   hpc/testbed/testbed.sh status         the containers and what Slurm and PBS see
#   hpc/testbed/testbed.sh exec [--root] NODE CMD...
#                                         run CMD on NODE (head, node1, node2) as the user semhpc
#                                         (or root), in the user's home
#   hpc/testbed/testbed.sh kill NODE      `docker kill` a node (a node dies)
#   hpc/testbed/testbed.sh start NODE     start a killed node again and wait until it is free
#
# Environment:
#   SEMHPC_TESTBED         name prefix of the containers, network and volumes (semhpc-testbed)
#   SEMHPC_TESTBED_IMAGE   the image's tag (semhpc-testbed:latest)
#   SEMHPC_TESTBED_BASE    the semhpc image it builds on (semhpc:cpu; made with
#                          containers/build.sh --flavor cpu --local-base when missing)
#   OPENPBS_TARBALL        OpenPBS source (default: shared/vendor/openpbs-cd7ab5e.tar.gz beside
#                          this checkout, where the project's shared folder keeps it)
#   PYTHON                 the Python whose pip downloads JupyterHub's wheels (python3)
#   SEMHPC_HUB_WHEELS      where they are kept between builds (~/.cache/semhpc/testbed-hub-wheels)
#   SEMHPC_TESTBED_IMAGES  a host folder of Charliecloud images (ch-convert -o dir), mounted
#                          read-only at /images on every node, like a site's shared software
#                          storage (default: none)
#
# Isolation: the nodes' only network is created with --internal (no route out); they share the
# volumes PREFIX-home (/home) and PREFIX-scratch (/scratch); this checkout is mounted read-only
# at /opt/semhpc/src and is the semhpc every node runs. The nodes run without Docker's seccomp
# filter (seccomp=unconfined): it refuses unshare(CLONE_NEWUSER), which Charliecloud's ch-run
# needs to start a container as the user; no capability or device is added.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PREFIX=${SEMHPC_TESTBED:-semhpc-testbed}
IMAGE=${SEMHPC_TESTBED_IMAGE:-semhpc-testbed:latest}
BASE=${SEMHPC_TESTBED_BASE:-semhpc:cpu}
TARBALL=${OPENPBS_TARBALL:-$(dirname "$ROOT")/shared/vendor/openpbs-cd7ab5e.tar.gz}
NETWORK=$PREFIX-net
NODES=(head node1 node2)
READY_TIMEOUT=${SEMHPC_TESTBED_TIMEOUT:-180}
PYTHON=${PYTHON:-python3}
HUB_CACHE=${SEMHPC_HUB_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/semhpc/testbed-hub-wheels}

say() { echo "[testbed] $*" >&2; }
die() { echo "[testbed] error: $*" >&2; exit 1; }

container() { echo "$PREFIX-$1"; }

build() {
  command -v docker >/dev/null || die "docker not found"
  docker info >/dev/null 2>&1 || die "no Docker daemon answers (start it: dockerd &)"
  [[ -r $TARBALL ]] || die "OpenPBS source $TARBALL not found (set OPENPBS_TARBALL)"
  if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    say "$BASE is missing: building it (containers/build.sh --flavor cpu --local-base, ~10 min)"
    "$ROOT/containers/build.sh" --flavor cpu --local-base --no-archive >/dev/null
  fi
  local pbs_base start
  pbs_base=$("$ROOT/containers/base-image.sh")
  context=$(mktemp -d /tmp/semhpc-testbed-context.XXXXXX)
  trap 'rm -rf "$context"' EXIT
  cp "$HERE/Dockerfile" "$HERE/slurm.conf" "$HERE/slurmdbd.conf" "$HERE/gres.conf" "$HERE/node-start.sh" "$context/"
  cp "$TARBALL" "$context/openpbs.tar.gz"
  stage_hub "$context"
  start=$(date +%s)
  # The OpenPBS stage gets a tag of its own, so `docker image prune` keeps the compiled PBS.
  docker build -q --force-rm --target openpbs -t "${IMAGE%:*}-openpbs:latest" \
    --build-arg PBS_BUILD_BASE="$pbs_base" "$context" >/dev/null
  docker build -q --force-rm -t "$IMAGE" --build-arg BASE_IMAGE="$BASE" --build-arg PBS_BUILD_BASE="$pbs_base" \
    "$context" >/dev/null
  say "image $IMAGE ready in $(( $(date +%s) - start )) s"
}

# JupyterHub for the image (Dockerfile): the lock's jupyterhub and batchspawner with their
# dependencies as wheels (downloaded once into $HUB_CACHE), and configurable-http-proxy's
# node_modules from the semhpc_jupyter role's package-lock.json.
stage_hub() {
  local context=$1 proxy=$ROOT/ansible/roles/semhpc_jupyter/files/proxy
  local wheels  # one folder per version of the lock: a changed lock downloads its own wheels
  wheels=$HUB_CACHE/$(sha256sum "$ROOT/requirements.lock" | cut -c1-12)
  if ! compgen -G "$wheels/jupyterhub-*.whl" >/dev/null || ! compgen -G "$wheels/batchspawner-*.whl" >/dev/null; then
    say "downloading the wheels of jupyterhub and batchspawner (requirements.lock) into $wheels"
    "$PYTHON" -m pip download -q --only-binary=:all: -c "$ROOT/requirements.lock" -d "$wheels" \
      jupyterhub batchspawner >/dev/null || die "downloading the wheels of jupyterhub and batchspawner failed"
  fi
  mkdir -p "$context/hub-wheels" "$context/proxy"
  cp "$wheels"/*.whl "$context/hub-wheels/"
  if [[ ! -x $proxy/node_modules/.bin/configurable-http-proxy ]]; then
    (cd "$proxy" && npm ci --no-audit --no-fund >/dev/null) || die "npm ci in $proxy failed"
  fi
  cp -r "$proxy/package.json" "$proxy/package-lock.json" "$proxy/node_modules" "$context/proxy/"
}

cpu_of() {  # the host core a compute node is pinned to: node1 -> 0, node2 -> 1 (0 on a 1-core host)
  local index=$(( ${1#node} - 1 ))
  echo $(( index % $(nproc) ))
}

# --cgroupns private: the node sees its own cgroup as the root, so hwloc (Open MPI's binding)
# finds the cpuset's one core instead of assuming every host core is allowed.
run_node() {
  local node=$1 role=compute limits=()
  if [[ $node == head ]]; then
    role="head"
  else
    limits=(--cpuset-cpus "$(cpu_of "$node")")
  fi
  local images=()
  if [[ -n ${SEMHPC_TESTBED_IMAGES:-} ]]; then
    [[ -d $SEMHPC_TESTBED_IMAGES ]] || die "SEMHPC_TESTBED_IMAGES $SEMHPC_TESTBED_IMAGES is not a folder"
    images=(-v "$SEMHPC_TESTBED_IMAGES:/images:ro")
  fi
  docker run -d --name "$(container "$node")" --hostname "$node" --network "$NETWORK" --network-alias "$node" \
    --init --shm-size 256m --cgroupns private --security-opt seccomp=unconfined "${limits[@]}" \
    -v "$PREFIX-home:/home" -v "$PREFIX-scratch:/scratch" -v "$ROOT:/opt/semhpc/src:ro" "${images[@]}" \
    --label "io.semhpc.testbed=$PREFIX" "$IMAGE" "$role" >/dev/null
}

wait_ready() {
  local deadline=$(( $(date +%s) + READY_TIMEOUT )) why=""
  while ! why=$(docker exec "$(container head)" testbed-node-start ready 2>&1); do
    if (( $(date +%s) > deadline )); then
      for node in "${NODES[@]}"; do
        echo "== $node"; docker logs --tail 20 "$(container "$node")" 2>&1 || true
      done >&2
      die "the testbed was not ready in $READY_TIMEOUT s: $why"
    fi
    for node in "${NODES[@]}"; do
      [[ $(docker inspect -f '{{.State.Running}}' "$(container "$node")" 2>/dev/null) == true ]] ||
        die "$node stopped while starting: $(docker logs --tail 20 "$(container "$node")" 2>&1)"
    done
    sleep 1
  done
}

up() {
  build
  local start
  start=$(date +%s)
  if docker container inspect "$(container head)" >/dev/null 2>&1; then
    die "$PREFIX is already up (hpc/testbed/testbed.sh down first)"
  fi
  docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create --internal "$NETWORK" >/dev/null
  for node in "${NODES[@]}"; do
    run_node "$node"
  done
  wait_ready
  say "up in $(( $(date +%s) - start )) s: head, node1, node2 on the internal network $NETWORK"
}

down() {
  local ids
  mapfile -t ids < <(docker ps -aq --filter "label=io.semhpc.testbed=$PREFIX")
  ((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
  docker volume rm "$PREFIX-home" "$PREFIX-scratch" >/dev/null 2>&1 || true
  say "down"
}

status() {
  docker ps -a --filter "label=io.semhpc.testbed=$PREFIX" --format '{{.Names}}\t{{.Status}}'
  if docker container inspect "$(container head)" >/dev/null 2>&1; then
    docker exec "$(container head)" sinfo --Node --long || true
    docker exec "$(container head)" /opt/pbs/bin/pbsnodes -aS || true
  fi
}

exec_on() {
  local user=semhpc workdir=/home/semhpc tty=()
  if [[ ${1:-} == --root ]]; then
    user=root workdir=/
    shift
  fi
  local node=${1:?exec needs a node: head, node1 or node2}
  shift
  [[ -t 0 && -t 1 ]] && tty=(-it)
  exec docker exec "${tty[@]}" -u "$user" -w "$workdir" "$(container "$node")" "$@"
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  status) status ;;
  exec) shift; exec_on "$@" ;;
  kill) docker kill "$(container "${2:?kill needs a node}")" >/dev/null ;;
  start) docker start "$(container "${2:?start needs a node}")" >/dev/null && wait_ready ;;
  -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [[ -n ${1:-} ]] ;;
  *) die "unknown command '$1' (see --help)" ;;
esac
