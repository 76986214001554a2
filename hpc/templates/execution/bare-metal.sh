# Bare metal: ranks run the venv's Python, which has semhpc, TensorFlow and Horovod.
if [[ ! -x $SEMHPC_VENV/bin/python ]]; then
  echo "semhpc job: no venv at $SEMHPC_VENV (the profile's execution.venv); create it with scripts/bootstrap.sh" >&2
  exit 1
fi
# shellcheck source=/dev/null
source "$SEMHPC_VENV/bin/activate"
SEMHPC_PYTHON=("$SEMHPC_VENV/bin/python")
