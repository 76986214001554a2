# Slurm: the job's id, the directory and host it was submitted from, and its nodes.
SEMHPC_JOB_ID=${SLURM_JOB_ID:?this script runs as a Slurm job: submit it with sbatch}
SEMHPC_SUBMIT_DIR=${SLURM_SUBMIT_DIR:-$PWD}
SEMHPC_SUBMIT_HOST=${SLURM_SUBMIT_HOST:-}
export SEMHPC_JOB_ID SEMHPC_SUBMIT_DIR SEMHPC_SUBMIT_HOST  # for the job's processes
cd "$SEMHPC_SUBMIT_DIR"  # relative paths in the job's arguments mean what they meant at submit time

# The job's nodes as an mpirun host list, node1:R,node2:R (R = SLURM_NTASKS_PER_NODE).
job_hosts() {
  scontrol show hostnames "$SLURM_JOB_NODELIST" |
    awk -v ranks="$SLURM_NTASKS_PER_NODE" '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $1, ranks }'
}
