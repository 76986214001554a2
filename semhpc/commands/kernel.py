"""`semhpc kernel -f CONNECTION_FILE`: the Jupyter kernel, in semhpc's own Python.

The semhpc kernel spec (ansible/roles/semhpc_jupyter) starts the kernel through the module's
`semhpc` wrapper rather than naming a Python: in container mode the wrapper already knows how to
enter the image with the site's runtime (hpc/runtimes.yaml: apptainer, singularity, charliecloud,
podman), so the kernel runs in the image with the same binds and environment as every job, and
in bare-metal mode in the venv. This command only becomes IPython's kernel there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from semhpc.utils.errors import SemhpcError

HELP = "Run a Jupyter kernel in semhpc's environment (what the semhpc kernel spec starts)."


def add_arguments(parser) -> None:
    parser.add_argument("-f", dest="connection_file", required=True, metavar="CONNECTION_FILE",
                        help="the connection file Jupyter passes to its kernels")


def main(args) -> int:
    if importlib.util.find_spec("ipykernel") is None:
        raise SemhpcError(f"ipykernel is not installed for {sys.executable} (pip install ipykernel)")
    if not Path(args.connection_file).parent.is_dir():
        raise SemhpcError(f"{args.connection_file}: the connection file's folder does not exist here "
                          "(in a container: bind it, e.g. the home or runtime folder)")
    # Become the kernel (exec), so Jupyter's interrupt and shutdown signals reach IPython directly.
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", args.connection_file])
