"""Build the `mpirun` command line for Horovod ranks, with settings measured to be fast on CPUs.

Measured on a 2-core machine (DenseNet-121, 112 px, batch 16, one thread per rank; two independent
single-core processes = 58.5 img/s together):
- plain `mpirun -np 2 --bind-to core`: 36.6 img/s (0.63 of the ceiling): the MPI progress
  engine busy-polls and steals the core from TensorFlow while a rank waits in allreduce;
- `--mca mpi_yield_when_idle 1 -x HOROVOD_CYCLE_TIME=5`: 55.8 img/s (0.95): waiting ranks yield
  the core, and Horovod's background thread wakes every 5 ms instead of every 1 ms.
`benchmarks/horovod_overhead.py` re-measures this. Each rank is bound to its own cores and gets
one intra-op thread per core (the trainer reads its affinity), so ranks never share a core.
The same defaults are baked into the container images (containers/Dockerfile), and every Horovod
rank takes them as defaults before `hvd.init()` (runtime/distributed.py): a rank started by srun,
by a hand-written mpirun line or alone runs with the same settings, and with the stall limits
below a dead rank cannot leave it waiting until walltime.
"""

from __future__ import annotations

import os
import shlex
import sys

# MCA parameters and environment that make CPU ranks fast (see the module docstring).
FAST_MCA = {"mpi_yield_when_idle": "1"}
FAST_ENV = {"HOROVOD_CYCLE_TIME": "5"}
# A rank that dies makes Horovod's collective stall: report after 60 s, abort after 120 s, so the
# survivors exit instead of hanging until walltime (mpirun then tears the job down).
FAILURE_ENV = {"HOROVOD_STALL_CHECK_TIME_SECONDS": "60", "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "120"}
# The libraries' own values of the tuned settings: the plain baseline states them, because a rank
# would otherwise take the tuned ones as its defaults (rank_environment).
LIBRARY_MCA = {"mpi_yield_when_idle": "0"}
LIBRARY_ENV = {"HOROVOD_CYCLE_TIME": "1"}


def settings_of(tuned: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(MCA parameters, Horovod environment): the tuned ones, or the libraries' own values."""
    return (FAST_MCA, FAST_ENV) if tuned else (LIBRARY_MCA, LIBRARY_ENV)


def rank_environment(tuned: bool = True) -> dict[str, str]:
    """The settings and the stall limits as one rank's environment variables (MCA parameters as
    OMPI_MCA_*): the tuned ones are what batch scripts export to srun ranks and what a rank
    defaults to."""
    mca, tuning = settings_of(tuned)
    return {**FAILURE_ENV, **tuning, **{f"OMPI_MCA_{key}": value for key, value in mca.items()}}


def mpirun_command(np: int, semhpc_args: list[str], *, cores_per_rank: int = 1, hosts: str | None = None,
                   tuned: bool = True, python: str = sys.executable) -> list[str]:
    """`mpirun ... python -m semhpc ARGS` for `np` ranks.

    tuned=False gives the plain baseline (`--bind-to core`, the libraries' own cycle and polling),
    kept for benchmarks.
    """
    cmd = ["mpirun", "-np", str(np)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if hosts:
        cmd += ["-H", hosts]
    if cores_per_rank > 1:
        cmd += ["--map-by", f"slot:PE={cores_per_rank}"]
    cmd += ["--bind-to", "core"]
    env = {"OMP_NUM_THREADS": str(cores_per_rank), **FAILURE_ENV}
    mca, tuning = settings_of(tuned)
    for key, value in mca.items():
        cmd += ["--mca", key, value]
    env.update(tuning)
    for key, value in env.items():
        cmd += ["-x", f"{key}={value}"]
    cmd += ["-x", "PATH"]
    if os.environ.get("PYTHONPATH"):
        cmd += ["-x", "PYTHONPATH"]
    return cmd + [python, "-m", "semhpc", *semhpc_args]


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in cmd)
