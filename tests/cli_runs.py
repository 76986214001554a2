"""Running the real `semhpc` command in a subprocess, as a user does, and the tiny synthetic
dataset (synth, then ingest) that most end-to-end tests train on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# This environment plus what Open MPI needs to run as root (the CI container's user).
MPI_ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def run_semhpc(*args, mpi_ranks: int = 0, timeout: int = 600, env: dict | None = None,
               **kwargs) -> subprocess.CompletedProcess:
    """`python -m semhpc ARGS` in a subprocess (under `mpirun -np mpi_ranks` when mpi_ranks > 0),
    with `env` added to this process's environment."""
    command = [sys.executable, "-m", "semhpc", *map(str, args)]
    if mpi_ranks:
        command = ["mpirun", "-np", str(mpi_ranks), "--oversubscribe", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**MPI_ENV, **(env or {})}, **kwargs)


def semhpc_ok(*args, **kwargs) -> str:
    """`run_semhpc`, failing the test with the command's stderr unless it succeeds; its stdout."""
    out = run_semhpc(*args, **kwargs)
    assert out.returncode == 0, f"semhpc {' '.join(map(str, args))} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out.stdout


def synth_and_ingest(root: Path, per_class: int = 8, shards_per_split: int = 2) -> tuple[Path, Path]:
    """(TIFF tree ROOT/tiffs/<Category>/*.tif of 64x48 synthetic images, its ingested dataset ROOT/data)."""
    semhpc_ok("synth", root / "tiffs", "--per-class", per_class, "--size", "64x48", "--seed", "3")
    semhpc_ok("ingest", root / "tiffs", root / "data", "--size", "64x48", "--shards-per-split", shards_per_split)
    return root / "tiffs", root / "data"
