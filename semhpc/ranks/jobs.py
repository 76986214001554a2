"""How the ranks of an MPI job (`semhpc ingest`, `semhpc hdf5`; `semhpc classify` for its exit
codes, `root_decides` and `abort_on_failure`) share work and report it.

* Static, deterministic shares: rank 0 lists the work once (N ranks listing a 150,000-file tree
  on Lustre at once is the small-file load TFRecords exist to avoid), decides which rank does
  which job, and sends the decision to all (`root_decides`). Jobs are dealt heaviest first to the
  least-loaded rank (`deal_by_weight`), so ranks finish close together.
* One progress bar: ranks > 0 send their image counts to rank 0 at most twice a second; rank 0
  draws the bar (rate, ETA) for the whole job and collects each rank's result (`ProgressRelay`).
  Waiting is done by polling with short sleeps: Open MPI busy-polls in blocking calls and would
  steal the core a converting rank needs.
* No rank waits forever for a dead one: an exception on any rank ends the whole job at once with
  MPI_Abort (`abort_on_failure`), and a rank killed by the OS makes mpirun end the others.

Exit codes: 0 all inputs done, 1 some inputs failed (errors.csv), 2 a SemhpcError (one line),
3 an internal error (traceback), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from typing import Callable

from semhpc.ranks.world import POLL_SECONDS, World, share_from_root
from semhpc.utils.errors import SemhpcError
from semhpc.utils.progress import close_all, progress

EXIT_OK, EXIT_FILES_FAILED, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
REPORT_EVERY_SECONDS = 0.5
_TAG_PROGRESS = 21  # ("progress", images) and ("done", images, result) from ranks > 0 to rank 0


def run_jobs(world: World, command: str, make_plan: Callable[[], object], do_jobs: Callable, finish: Callable) -> int:
    """The shape of every conversion: plan on rank 0, each rank does its share, rank 0 merges.

    make_plan() -> plan, run on rank 0 only; the plan has `assignment` (job indices per rank) and
    `pending_images` (the progress bar's total). do_jobs(plan, my_jobs, advance) -> this rank's
    result, calling advance() after each image. finish(plan, {rank: result}) -> exit code, on
    rank 0. Returns that exit code on every rank.
    """
    with abort_on_failure(world, command):
        plan = root_decides(world, make_plan)
        relay = ProgressRelay(world, total=plan.pending_images, desc=command)
        results = relay.finish(do_jobs(plan, plan.assignment[world.rank], relay.advance))
        exit_code = finish(plan, results) if world.is_root else None
    return share_from_root(world, exit_code)


class KnownToAllRanks(SemhpcError):
    """A user error found by rank 0 after the other ranks were told to stop: no abort needed."""


def root_decides(world: World, compute: Callable[[], object]):
    """`compute()` on rank 0, its result on every rank.

    A SemhpcError in `compute` is raised on rank 0 (as KnownToAllRanks) while the other ranks exit
    quietly with code 2, so the user sees the message once and nothing is aborted.
    """
    if world.size == 1:
        return compute()
    if not world.is_root:
        value = share_from_root(world)
        if isinstance(value, KnownToAllRanks):
            raise SystemExit(EXIT_USER_ERROR)
        return value
    try:
        value = compute()
    except SemhpcError as exc:
        share_from_root(world, KnownToAllRanks(str(exc)))
        raise KnownToAllRanks(str(exc)) from exc
    return share_from_root(world, value)


@contextlib.contextmanager
def abort_on_failure(world: World, command: str):
    """Turn an exception on any rank into the end of the whole job, with a meaningful exit code.

    One process: a SemhpcError propagates (the CLI prints it, exit 2), anything unexpected prints
    its traceback and exits 3 (not 1, which means "some files failed").
    """
    try:
        yield
    except (SystemExit, KnownToAllRanks):
        raise
    except SemhpcError as exc:
        if world.size == 1:
            raise
        close_all()  # rank 0's bar: the error line starts a line of its own
        print(f"semhpc {command}: error (rank {world.rank}): {exc}", file=sys.stderr, flush=True)
        world.comm.Abort(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if world.size == 1:
            raise
        world.comm.Abort(EXIT_INTERRUPTED)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        if world.size == 1:
            raise SystemExit(EXIT_INTERNAL_ERROR) from None
        world.comm.Abort(EXIT_INTERNAL_ERROR)


def deal_by_weight(weights: list[int], ranks: int) -> list[list[int]]:
    """Job indices for each rank: heaviest job first, to the least-loaded rank (lowest on ties).

    Deterministic for given weights; the longest-processing-time rule keeps the heaviest rank
    within 4/3 of the best possible finish.
    """
    shares: list[list[int]] = [[] for _ in range(ranks)]
    loads = [0] * ranks
    for job in sorted(range(len(weights)), key=lambda index: (-weights[index], index)):
        rank = loads.index(min(loads))
        shares[rank].append(job)
        loads[rank] += weights[job]
    return [sorted(share) for share in shares]


class ProgressRelay:
    """One bar on rank 0 for the images all ranks convert; collects every rank's result at the end.

    Call `advance()` after each image on every rank, then `finish(result)` once: rank 0 gets
    {rank: result} for all ranks, the others get None.
    """

    def __init__(self, world: World, total: int, desc: str):
        self.world = world
        self._bar = progress(total=total, desc=desc, unit="img", enabled=world.is_root)
        self._unreported = 0
        self._last_report = time.monotonic()
        self._results: dict[int, object] = {}  # rank 0: results of ranks that sent "done"

    def advance(self, images: int = 1) -> None:
        if self.world.is_root:
            self._bar.update(images)
            self._receive(until_all_done=False)
            return
        self._unreported += images
        if time.monotonic() - self._last_report >= REPORT_EVERY_SECONDS:
            self._send(("progress", self._unreported))

    def finish(self, result) -> dict[int, object] | None:
        if not self.world.is_root:
            self._send(("done", self._unreported, result))
            return None
        self._results[0] = result
        self._receive(until_all_done=True)
        self._bar.close()
        return dict(sorted(self._results.items()))

    def _send(self, message: tuple) -> None:
        self.world.comm.send(message, dest=0, tag=_TAG_PROGRESS)
        self._unreported, self._last_report = 0, time.monotonic()

    def _receive(self, until_all_done: bool) -> None:
        """Read the messages waiting; with `until_all_done`, poll until every rank sent "done"."""
        if self.world.size == 1:
            return
        from mpi4py import MPI

        comm, status = self.world.comm, MPI.Status()
        while True:
            if comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_PROGRESS, status=status):
                message = comm.recv(source=status.Get_source(), tag=_TAG_PROGRESS)
                self._bar.update(message[1])
                if message[0] == "done":
                    self._results[status.Get_source()] = message[2]
            elif not until_all_done or len(self._results) == self.world.size:
                return
            else:
                time.sleep(POLL_SECONDS)
