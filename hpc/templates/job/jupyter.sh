# JupyterLab on this compute node: a free port, a fresh token, and how to reach both from your
# computer, written to the job log and to jupyter-JOBID.txt in the submit directory.
umask 077  # the token is a password: the info file is for your eyes only, and so is the log
log=${SEMHPC_LOG//%j/$SEMHPC_JOB_ID}  # Slurm's %j is the job id
if [[ -f $log ]]; then
  chmod go= "$log"
fi
node=$(hostname)
port=$("${SEMHPC_PYTHON[@]}" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
JUPYTER_TOKEN=$("${SEMHPC_PYTHON[@]}" -c 'import secrets; print(secrets.token_hex(24))')
export JUPYTER_TOKEN  # read by jupyter_server; never on a command line where `ps` shows it
login_host=${SEMHPC_LOGIN_HOST:-${SEMHPC_SUBMIT_HOST:-LOGIN_HOST}}
{
  echo "JupyterLab (job $SEMHPC_JOB_ID) on $node port $port"
  echo "1. on your computer: ssh -N -L $port:$node:$port ${USER:-$(id -un)}@$login_host"
  echo "2. then open: http://localhost:$port/lab?token=$JUPYTER_TOKEN"
} | tee "jupyter-$SEMHPC_JOB_ID.txt"

root_option=()
if [[ $(id -u) -eq 0 ]]; then
  root_option=(--allow-root)
fi
exec "${SEMHPC_PYTHON[@]}" -m jupyterlab --no-browser --ip=0.0.0.0 --port="$port" \
  --ServerApp.port_retries=0 "${root_option[@]}" "${SEMHPC_ARGS[@]}"
