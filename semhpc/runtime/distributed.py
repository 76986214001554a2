"""Horovod start-up for one rank: init, CPU threads, GPU pinning, and rank-aware helpers.

Under `mpirun -np N` every process runs the same code; Horovod tells each its rank. Rank 0 alone
writes files and shows progress; everything that must agree across ranks (data shards, step
counts, initial weights) is derived from the rank and world size or broadcast from rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from semhpc.runtime.launcher import rank_environment


@dataclass(frozen=True)
class HorovodWorld:
    """This rank's place in a Horovod job (training, benchmarks); the mpi4py commands use
    semhpc.ranks.world.World."""

    rank: int
    size: int
    local_rank: int
    threads: int

    @property
    def is_root(self) -> bool:
        return self.rank == 0


def init_horovod(threads: int = 0) -> HorovodWorld:
    """hvd.init(), one GPU per local rank if there are GPUs, and intra-op threads per rank.

    threads=0 means: as many intra-op threads as cores this process is bound to. The launcher binds
    each rank to its own cores, so ranks never fight over a core (one thread per core).
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    # Read by hvd.init(): a rank started without the launcher (`semhpc train` alone, srun, a
    # hand-written mpirun line) runs with the launcher's settings, unless its environment says otherwise.
    for key, value in rank_environment().items():
        os.environ.setdefault(key, value)
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    n_threads = threads or len(os.sched_getaffinity(0))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, n_threads)))
    except RuntimeError:  # TensorFlow already started in this process (a second run from Python): keep its pools
        n_threads = tf.config.threading.get_intra_op_parallelism_threads() or n_threads
    return HorovodWorld(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(), threads=n_threads)
