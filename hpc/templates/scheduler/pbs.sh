# PBS Pro: the job's id, the directory and host it was submitted from, and its nodes.
SEMHPC_JOB_ID=${PBS_JOBID:?this script runs as a PBS job: submit it with qsub}
SEMHPC_SUBMIT_DIR=${PBS_O_WORKDIR:-$PWD}
SEMHPC_SUBMIT_HOST=${PBS_O_HOST:-}
export SEMHPC_JOB_ID SEMHPC_SUBMIT_DIR SEMHPC_SUBMIT_HOST  # for the job's processes
cd "$SEMHPC_SUBMIT_DIR"  # relative paths in the job's arguments mean what they meant at submit time

# The job's nodes as an mpirun host list, node1:R,node2:R. PBS_NODEFILE names each node once
# per MPI process (mpiprocs), in placement order.
job_hosts() {
  awk '!($1 in ranks) { order[++nodes] = $1 } { ranks[$1]++ }
       END { for (i = 1; i <= nodes; i++) printf "%s%s:%d", (i > 1 ? "," : ""), order[i], ranks[order[i]] }' \
    "$PBS_NODEFILE"
}
