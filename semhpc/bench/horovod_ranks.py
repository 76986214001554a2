"""The ranks of a benchmark: start Horovod and gather every rank's result on rank 0.

A benchmark runs the same way as one process or as N ranks under mpirun (the launcher binds each
rank to its own cores); only rank 0 prints and writes, from the results of all ranks.
"""

from __future__ import annotations

from semhpc.runtime.distributed import HorovodWorld, init_horovod
from semhpc.runtime.stack import require_supported_stack


def start(threads: int = 0) -> HorovodWorld:
    """Horovod with `threads` intra-op threads per rank (0: one per core this rank is bound to)."""

    require_supported_stack()
    return init_horovod(threads)


def gather(result) -> list:
    """Every rank's `result` (any picklable object), in rank order, on every rank."""
    import horovod.tensorflow as hvd

    if hvd.size() == 1:
        return [result]
    return hvd.allgather_object(result)
