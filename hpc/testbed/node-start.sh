#!/bin/bash
# A testbed node's services (the image's entrypoint; hpc/testbed/testbed.sh starts the nodes).
#
#   testbed-node-start head      munge, sshd, MariaDB + slurmdbd (accounts and QOS), slurmctld,
#                                pbs_server + pbs_sched + pbs_comm; then waits
#   testbed-node-start compute   munge, sshd, slurmd, pbs_mom; then waits
#   testbed-node-start ready     (on the head) exit 0 once both Slurm and PBS list every compute
#                                node as free, else print what is missing and exit 1
#
# Names are fixed (slurm.conf): the head is `head`, the compute nodes `node1` and `node2`. The
# Slurm account, partition and QOS are named like a CINECA site's: account tb_semhpc, partition
# tb_usr_prod, QOS normal and tb_qos_dbg (debug: 30 minutes at most).
set -euo pipefail

COMPUTE_NODES=(node1 node2)
USER_NAME=semhpc
ACCOUNT=tb_semhpc
DEBUG_QOS=tb_qos_dbg
DEBUG_WALLTIME=00:30:00
PBS_SERVER_HOST="head"

say() { echo "[testbed $(hostname)] $*"; }

wait_until() {  # wait_until SECONDS WHAT COMMAND...: retry COMMAND until it succeeds
  local seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  say "error: $what did not come up in $seconds s"
  return 1
}

start_common() {
  mkdir -p /run/munge /run/sshd && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  /usr/sbin/sshd
}

start_mariadb_and_slurmdbd() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  runuser -u mysql -- /usr/sbin/mariadbd --bind-address=127.0.0.1 >/var/log/mariadb.log 2>&1 &
  wait_until 60 MariaDB mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'testbed';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  slurmdbd
  wait_until 60 slurmdbd sacctmgr --noheader list cluster
}

add_accounts() {
  # The cluster, one project account, the debug QOS, and the user with both QOS (normal default).
  sacctmgr --immediate add cluster testbed >/dev/null
  sacctmgr --immediate add qos "$DEBUG_QOS" MaxWall="$DEBUG_WALLTIME" MaxTRESPerUser=node=2 Priority=100 >/dev/null
  sacctmgr --immediate add account "$ACCOUNT" Cluster=testbed Description="semhpc testbed project" \
    Organization=semhpc >/dev/null
  sacctmgr --immediate add user "$USER_NAME" Account="$ACCOUNT" Cluster=testbed DefaultAccount="$ACCOUNT" \
    QOS=normal,"$DEBUG_QOS" DefaultQOS=normal >/dev/null
}

write_pbs_conf() {  # write_pbs_conf SERVER SCHED COMM MOM (1 = start it here)
  cat >/etc/pbs.conf <<EOF
PBS_EXEC=/opt/pbs
PBS_HOME=/var/spool/pbs
PBS_SERVER=$PBS_SERVER_HOST
PBS_START_SERVER=$1
PBS_START_SCHED=$2
PBS_START_COMM=$3
PBS_START_MOM=$4
PBS_CORE_LIMIT=unlimited
PBS_SCP=/usr/bin/scp
EOF
}

start_pbs_server() {
  write_pbs_conf 1 1 1 0
  /opt/pbs/libexec/pbs_init.d start >/var/log/pbs-start.log 2>&1
  wait_until 60 pbs_server /opt/pbs/bin/qstat -B
  local qmgr=/opt/pbs/bin/qmgr
  $qmgr -c "set server job_history_enable = true"  # qstat -x still shows finished jobs
  $qmgr -c "set server flatuid = true"
  for node in "${COMPUTE_NODES[@]}"; do
    $qmgr -c "list node $node" >/dev/null 2>&1 || $qmgr -c "create node $node"
    $qmgr -c "set node $node resources_available.ncpus = 1"  # the container's one core (--cpuset-cpus)
  done
}

start_pbs_mom() {
  write_pbs_conf 0 0 0 1
  # Jobs' output goes straight to the shared /home and /scratch: copy there, never rcp.
  printf '%s\n' "\$clienthost $PBS_SERVER_HOST" "\$usecp *:/home/ /home/" "\$usecp *:/scratch/ /scratch/" \
    >/var/spool/pbs/mom_priv/config
  /opt/pbs/libexec/pbs_init.d start >/var/log/pbs-start.log 2>&1
}

user_ssh_key() {
  # Passwordless ssh between the nodes for the user: one key in the shared home.
  runuser -u "$USER_NAME" -- bash -c '
    if [[ ! -f ~/.ssh/id_ed25519 ]]; then
      mkdir -p -m 700 ~/.ssh
      ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519
      cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
      chmod 600 ~/.ssh/authorized_keys
    fi'
  mkdir -p "/scratch/$USER_NAME" && chown "$USER_NAME:$USER_NAME" "/scratch/$USER_NAME"
}

ready() {
  local missing=()
  local idle  # once per node: sinfo --Node lists a node once per partition it is in
  idle=$(sinfo --noheader --Node --format='%N %t' 2>/dev/null | awk '$2 == "idle" { print $1 }' | sort -u | xargs)
  [[ $idle == "${COMPUTE_NODES[*]}" ]] || missing+=("Slurm idle nodes: '${idle}'")
  local free
  free=$(/opt/pbs/bin/pbsnodes -a -F json 2>/dev/null |
    python3 -c 'import json, sys; print(*sorted(n for n, v in json.load(sys.stdin)["nodes"].items() if v["state"] == "free"))' 2>/dev/null || true)
  [[ $free == "${COMPUTE_NODES[*]}" ]] || missing+=("PBS free nodes: '${free}'")
  if ((${#missing[@]})); then
    printf '%s\n' "${missing[@]}"
    return 1
  fi
}

wait_forever() {
  say "up"
  trap 'exit 0' TERM INT
  sleep infinity &
  wait $!
}

case "${1:-}" in
  head)
    start_common
    user_ssh_key
    start_mariadb_and_slurmdbd
    sacctmgr --noheader --parsable2 list account "$ACCOUNT" | grep -q . || add_accounts
    slurmctld
    start_pbs_server
    wait_forever
    ;;
  compute)
    start_common
    slurmd
    start_pbs_mom
    wait_forever
    ;;
  ready)
    ready
    ;;
  *)
    echo "usage: $0 head|compute|ready" >&2
    exit 2
    ;;
esac
