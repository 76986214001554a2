"""Which rank this process is, and waiting without stealing cores.

Waiting is done by polling (`Iprobe`, `Ibarrier` + `Test`) with short sleeps rather than in a
blocking call, because Open MPI busy-polls in blocking calls and would steal the core that a
rank's own decoding or inference needs. Only one thread per rank calls MPI at any time
(MPI_THREAD_SERIALIZED is enough).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from semhpc.utils.errors import SemhpcError

POLL_SECONDS = 0.002
TAG_SHARE = 4  # share_from_root's message tag; the commands use other tags for their own messages
# Environment variables through which launchers announce the number of processes.
_LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank `rank` of `size` (a world of one without MPI)."""

    comm: object | None  # mpi4py communicator; None in a single process
    rank: int
    size: int

    @property
    def is_root(self) -> bool:
        return self.rank == 0


def mpi_world() -> World:
    """The MPI world when launched by mpirun/srun with several processes, else a world of one.

    mpi4py is not even imported for a single process, so a login node without a working MPI
    still ingests and classifies.
    """
    launched = max((int(os.environ.get(name, "1") or 1) for name in _LAUNCHER_SIZE_VARIABLES), default=1)
    if launched <= 1:
        return World(None, 0, 1)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_size() != launched:
        raise SemhpcError(f"the launcher started {launched} processes but MPI sees {comm.Get_size()}: "
                          "mpi4py is not using the launcher's MPI (with srun try --mpi=pmix)")
    return World(comm, comm.Get_rank(), comm.Get_size())


def share_from_root(world: World, value=None):
    """Rank 0's `value` on every rank, received by polling."""
    if world.size == 1:
        return value
    if world.is_root:
        for rank in range(1, world.size):
            world.comm.send(value, dest=rank, tag=TAG_SHARE)
        return value
    wait_for_message(world.comm, source=0, tag=TAG_SHARE)
    return world.comm.recv(source=0, tag=TAG_SHARE)


def quiet_barrier(world: World) -> None:
    """A barrier whose waiting ranks sleep instead of spinning on a core others need."""
    if world.size == 1:
        return
    request = world.comm.Ibarrier()
    while not request.Test():
        time.sleep(POLL_SECONDS)


def wait_for_message(comm, source: int, tag: int) -> None:
    """Return once a message from `source` with `tag` is waiting (then `comm.recv` it)."""
    while not comm.Iprobe(source=source, tag=tag):
        time.sleep(POLL_SECONDS)
