# The ranks: `semhpc ARGS` on every rank, started by run_ranks (above).
echo "semhpc job $SEMHPC_JOB_ID on $(hostname): semhpc ${SEMHPC_ARGS[*]}"
run_ranks "${SEMHPC_ARGS[@]}"
