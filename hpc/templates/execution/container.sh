# Container: every rank is a container started by the host's launcher (hybrid MPI model: the
# host mpirun/srun starts the ranks, the image's Open MPI joins them through PMIx). The runtime's
# words (SEMHPC_CONTAINER_OPTIONS, SEMHPC_IMAGE_PYTHON) come from hpc/runtimes.yaml.
if ! command -v "$SEMHPC_RUNTIME" >/dev/null 2>&1; then
  echo "semhpc job: $SEMHPC_RUNTIME not found; add its module to the profile's execution.modules" >&2
  exit 1
fi
if [[ $SEMHPC_IMAGE_IS_PATH == 1 && $SEMHPC_IMAGE != *://* && ! -r $SEMHPC_IMAGE ]]; then
  echo "semhpc job: cannot read the image $SEMHPC_IMAGE (the profile's execution.image)" >&2
  exit 1
fi
# Open MPI keeps the job's session folder under $TMPDIR, and the ranks in the image join the host's
# launcher there (PMIx): it must be a folder the container sees (hpc/runtimes.yaml: tmpdir).
if [[ -n $SEMHPC_RUNTIME_TMPDIR ]]; then
  export TMPDIR=$SEMHPC_RUNTIME_TMPDIR
fi
# ch-run refuses to start without $USER, which a job submitted from a non-login environment lacks.
export USER="${USER:-$(id -un)}"
SEMHPC_PYTHON=("$SEMHPC_RUNTIME" "${SEMHPC_CONTAINER_OPTIONS[@]}" "$SEMHPC_IMAGE" "${SEMHPC_IMAGE_PYTHON[@]}")
