"""`semhpc jupyter`: JupyterLab on this machine, for the monitoring and analysis notebooks.

The server listens on 127.0.0.1 only and requires a token, so other users of a shared login node
can neither reach it from the network nor use it without the URL. The token travels in the
environment (JUPYTER_TOKEN), not on the command line where `ps` would show it. The server's root is
the folder holding `notebooks/`, so the notebooks' default paths (`../runs/demo`) resolve.
On a cluster, the `jupyter` job of `semhpc submit` starts it on a compute node instead.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import stat
import sys
from pathlib import Path

from semhpc.utils import options
from semhpc.utils.errors import SemhpcError

HELP = "Start JupyterLab on 127.0.0.1 with a token, opened on the notebooks folder; prints the URL."

DEFAULT_PORT = 8888


def add_arguments(parser) -> None:
    parser.add_argument("--notebooks", help="notebooks folder (default: the repository's notebooks/)")
    parser.add_argument("--port", type=options.bounded_int(0, 65535), default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or a free one when taken; 0 = any free one)")
    parser.add_argument("--token", help="access token (default: a new random one)")


def main(args) -> int:
    from semhpc.monitor.notebooks import notebooks_dir

    notebooks = Path(args.notebooks).resolve() if args.notebooks else notebooks_dir()
    if not notebooks.is_dir():
        raise SemhpcError(f"{notebooks}: notebooks folder not found")
    token = args.token or secrets.token_hex(24)
    port = _free_port(args.port)
    url = f"http://127.0.0.1:{port}/lab/tree/{notebooks.name}?token={token}"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={notebooks.parent}",
               # Compute and login nodes rarely reach the internet, and a user's browser should not
               # be asked about news: no announcements feed, no update check against PyPI.
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # containers run as root; JupyterLab refuses that unless told
        command.append("--allow-root")
    if importlib.util.find_spec("jupyterlab") is None:
        raise SemhpcError(f"JupyterLab is not installed for {sys.executable} (pip install jupyterlab)")
    _check_runtime_dir_is_private()
    print(f"JupyterLab: {url}", flush=True)
    # Become the server (exec), so Ctrl-C, `kill` and a batch job's end reach it directly.
    os.execve(sys.executable, command, {**os.environ, "JUPYTER_TOKEN": token})


def _check_runtime_dir_is_private() -> None:
    """Refuse a Jupyter runtime folder that other users can enter: the server writes its URL with
    the token there, and one of those files (jpserver-PID-open.html) gets the umask's mode, often
    world-readable. Jupyter creates the folder itself with mode 700; a shared JUPYTER_RUNTIME_DIR
    or a loosened folder would leak the token."""

    from jupyter_core.paths import jupyter_runtime_dir

    runtime = Path(jupyter_runtime_dir())
    if runtime.is_dir() and runtime.stat().st_mode & 0o077:
        raise SemhpcError(f"{runtime}: Jupyter's runtime folder (JUPYTER_RUNTIME_DIR) is open to other users "
                          f"(mode {stat.S_IMODE(runtime.stat().st_mode):o}) and would hold the server's token: "
                          f"chmod 700 {runtime}")


def _free_port(preferred: int) -> int:
    """`preferred` when nothing listens on it, else a port the system picks as free."""

    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise AssertionError("binding port 0 cannot fail")
