"""Which files to classify, and how MPI ranks share them: dynamic distribution from rank 0.

Why dynamic. SEM files differ a lot in cost (a 2 MP 16-bit FEI TIFF with a data bar decodes
several times slower than a 0.8 MP 8-bit Zeiss one; files on Lustre or NFS stall at random), so a
static split (rank r takes every N-th file) finishes when its slowest rank does. Here rank 0 keeps
the list of pending chunks (CHUNK = a few batches of paths) and hands the next one to whichever
rank asks: a rank that got cheap files simply asks more often, and the ranks finish within one
chunk of each other.

How. Rank 0 is also a worker: its own reader takes chunks straight from the shared `LocalWork`
queue, while a `Dispatcher` thread answers the other ranks' requests from the same queue. Ranks
1..N-1 ask with `RemoteWork.next_chunk()` (from their reader thread, so the request overlaps
inference) and end with `RemoteWork.finish(stats)`. Waiting is done by polling `Iprobe` every
few milliseconds rather than in a blocking receive, because Open MPI busy-polls in a blocking
receive and would steal the core a rank's own inference needs. Only one thread per rank calls
MPI at any time (MPI_THREAD_SERIALIZED is enough). The message size is one chunk of paths, so
rank 0 never becomes a bottleneck at archive scale.

If a rank dies, nobody waits for it forever: an exception on any rank calls `comm.Abort`
(`semhpc.ranks.jobs.abort_on_failure`, also used by ingest) and a killed rank makes mpirun
end the job (with srun, pass --kill-on-bad-exit=1). `World`, `mpi_world` and `share_from_root`
come from semhpc/ranks/world.py, shared with `semhpc ingest`.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from semhpc.data.source_tree import IMAGE_SUFFIXES, find_images, is_image_name
from semhpc.ranks.jobs import EXIT_INTERNAL_ERROR
from semhpc.ranks.world import POLL_SECONDS, World, wait_for_message
from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import kind_of

REQUEST, ASSIGN, DONE = 1, 2, 3  # message tags (semhpc.ranks.world.TAG_SHARE is 4)


@dataclass(frozen=True)
class Chunk:
    """The unit of distribution and of resumption: a few batches of files."""

    index: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Inputs:
    paths: list[str]  # absolute, sorted
    skipped: list[dict]  # {"path", "reason"} of folder entries not taken (see source_tree.find_images)


def discover_inputs(source: str | os.PathLike) -> Inputs:
    """The files to classify.

    A folder: every image file below it, found as `semhpc ingest` and `semhpc hdf5` find them
    (`source_tree.find_images`: image suffixes, hidden entries ignored, symlinked folders
    followed). Other regular files (README.txt, PROVENANCE.md) are not inputs and are ignored;
    any other entry it skips (a broken link, a FIFO, an unreadable folder) is reported like a bad
    file.
    An image file (by suffix): that file. Any other file: a list, one path per line (blank lines
    and `#` comments skipped; relative paths are relative to the list's folder), taken as given.
    """
    source = Path(source)
    if source.is_dir():
        root = os.path.abspath(source)
        found, skipped = find_images(root)
        problems = [item for item in skipped if not _is_other_file(os.path.join(root, item.path))]
        inputs = Inputs([os.path.join(root, item.path) for item in found],
                        [{"path": output_key(os.path.join(root, item.path)), "reason": item.reason}
                         for item in problems])
        if not inputs.paths:
            raise SemhpcError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {source}")
        return inputs
    if source.is_file() and is_image_name(source.name):
        return Inputs([os.path.abspath(source)], [])
    if source.is_file():
        paths = _read_list(source)
        if not paths:
            raise SemhpcError(f"{source}: the list names no files")
        return Inputs(sorted(set(paths)), [])
    if source.exists():  # a FIFO or device: never opened (a FIFO would block the read)
        raise SemhpcError(f"{source}: not a folder, image or list file ({kind_of(source.stat().st_mode)}); not read")
    raise SemhpcError(f"{source}: no such folder or list file")


def _is_other_file(path: str) -> bool:
    """A regular file that is not named like an image: not meant to be classified."""
    return os.path.isfile(path) and not is_image_name(os.path.basename(path))


def _read_list(list_file: Path) -> list[str]:
    base = list_file.resolve().parent
    lines = (line.strip() for line in list_file.read_text(errors="surrogateescape").splitlines())
    return [os.path.normpath(os.path.join(base, line)) for line in lines if line and not line.startswith("#")]


def make_chunks(paths: list[str], chunk_size: int) -> list[Chunk]:
    return [Chunk(index, tuple(paths[start:start + chunk_size]))
            for index, start in enumerate(range(0, len(paths), chunk_size))]


def output_key(path: str) -> str:
    """How a path is written in the outputs and matched on resume: printable, and one key per exact
    path. A byte that is not UTF-8 appears as `\\xe9` and a backslash is doubled, so a file whose
    name holds the raw byte 0xE9 and one whose name holds the four characters `\\xe9` get distinct
    keys (`\\xe9` and `\\\\xe9`) and never share a row."""
    return os.fsencode(path).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


class LocalWork:
    """The pending chunks, shared by rank 0's reader thread and its Dispatcher thread."""

    def __init__(self, chunks: list[Chunk]):
        self._chunks = deque(chunks)
        self._lock = threading.Lock()

    def next_chunk(self) -> Chunk | None:
        with self._lock:
            return self._chunks.popleft() if self._chunks else None


class Dispatcher(threading.Thread):
    """Rank 0's server: hands chunks of `work` to ranks 1..N-1 until every one has sent DONE.

    `on_progress(n)` is called with the number of images other ranks have finished since their
    previous message (for the progress bar); `stats` collects each rank's final statistics.
    """

    def __init__(self, world: World, work: LocalWork, on_progress: Callable[[int], None]):
        super().__init__(name="chunk-dispatcher", daemon=True)
        self.world, self.work, self.on_progress = world, work, on_progress
        self.stats: dict[int, dict] = {}

    def run(self) -> None:
        try:
            self._serve()
        except BaseException:  # an unserved rank would wait forever: end the whole job
            traceback.print_exc()
            self.world.comm.Abort(EXIT_INTERNAL_ERROR)

    def _serve(self) -> None:
        from mpi4py import MPI

        comm, status = self.world.comm, MPI.Status()
        while len(self.stats) < self.world.size - 1:
            if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                time.sleep(POLL_SECONDS)
                continue
            source, tag = status.Get_source(), status.Get_tag()
            message = comm.recv(source=source, tag=tag)
            self.on_progress(message["completed"])
            if tag == REQUEST:
                comm.send(self.work.next_chunk(), dest=source, tag=ASSIGN)
            elif tag == DONE:
                self.stats[source] = message["stats"]


class RemoteWork:
    """A rank > 0's view of the queue on rank 0; `completed()` tells how many images it finished."""

    def __init__(self, world: World, completed: Callable[[], int]):
        self.world, self.completed = world, completed
        self._reported = 0

    def next_chunk(self) -> Chunk | None:
        comm = self.world.comm
        comm.send({"completed": self._unreported()}, dest=0, tag=REQUEST)
        wait_for_message(comm, source=0, tag=ASSIGN)
        return comm.recv(source=0, tag=ASSIGN)

    def finish(self, stats: dict) -> None:
        self.world.comm.send({"completed": self._unreported(), "stats": stats}, dest=0, tag=DONE)

    def _unreported(self) -> int:
        done = self.completed()
        delta, self._reported = done - self._reported, done
        return delta
