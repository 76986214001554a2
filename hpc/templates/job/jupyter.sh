# JupyterLab on this compute node: a free port, a fresh token, and how to reach both from your
# computer, written to the job log and to jupyter-JOBID.txt in the submit directory. It listens on
# the node's own address only (where the ssh tunnel from the login node arrives), and ends itself
# after SEMHPC_IDLE_SECONDS without activity (the profile's jupyter.idle_minutes; 0: never).
umask 077  # the token is a password: the info file is for your eyes only, and so is the log
log=${SEMHPC_LOG//%j/$SEMHPC_JOB_ID}  # Slurm's %j is the job id
if [[ -f $log ]]; then
  chmod go= "$log"
fi
node=$(hostname)
# The node's address as the login node resolves its name, and a port free on it.
address=$("${SEMHPC_PYTHON[@]}" -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')
port=$("${SEMHPC_PYTHON[@]}" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$address")
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
# Idle: kernels with nothing to run are shut down (even with a page connected), then the server
# with no kernel and no request; so the job ends between one and two idle periods after the last use.
idle_options=()
if (( SEMHPC_IDLE_SECONDS > 0 )); then
  idle_options=(--ServerApp.shutdown_no_activity_timeout="$SEMHPC_IDLE_SECONDS"
    --MappingKernelManager.cull_idle_timeout="$SEMHPC_IDLE_SECONDS" --MappingKernelManager.cull_connected=True
    --MappingKernelManager.cull_interval=$(( SEMHPC_IDLE_SECONDS < 60 ? SEMHPC_IDLE_SECONDS : 60 ))
    --TerminalManager.cull_inactive_timeout="$SEMHPC_IDLE_SECONDS")
fi
exec "${SEMHPC_PYTHON[@]}" -m jupyterlab --no-browser --ip="$address" --port="$port" \
  --ServerApp.port_retries=0 "${root_option[@]}" "${idle_options[@]}" "${SEMHPC_ARGS[@]}"
