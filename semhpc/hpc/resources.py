"""What a job asks the scheduler for: job kinds, walltime, and nodes -> Horovod ranks.

The mapping (hpc/README.md, "Resources and ranks"):
- GPU jobs: one rank per GPU; the node's cores are split evenly between its ranks.
- CPU jobs: `node.cpu_ranks` ranks per node (one per socket, or per core group on a KNL), each
  bound to cores // cpu_ranks cores with as many OpenMP/intra-op threads.
- Single-process jobs (jupyter): one process with what a notebook needs, the profile's
  `jupyter.cores` (at most the node's) and `jupyter.memory_gb`, never the whole node.
Memory follows the job, not the node: GPU jobs ask GPUs x `node.memory_gb_per_gpu`, CPU jobs cores x
`node.memory_gb_per_core`, else `node.memory_gb` per node.
GPUs older than the image's CUDA build (IMAGE_COMPUTE_CAPABILITIES) are never asked for: by default
such a profile's jobs run on CPU ranks, and an explicit GPU request is refused before anything is queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from semhpc.utils.errors import SemhpcError

# CUDA compute capabilities the semhpc cuda image is built for: containers/Dockerfile's CUDA_CC_LIST
# (Horovod's NCCL kernels; TensorFlow 2.15's CUDA 12 build has no kernels for 3.x-6.x GPUs worth
# running). tests/test_hpc_render.py checks that the two lists agree.
IMAGE_COMPUTE_CAPABILITIES = (7.0, 7.5, 8.0, 8.6, 9.0)


def gpus_usable(node) -> bool:
    """True when the node's GPUs are at least the oldest compute capability the image is built for."""
    return node.gpus > 0 and node.gpu_compute_capability >= min(IMAGE_COMPUTE_CAPABILITIES)


@dataclass(frozen=True)
class JobKind:
    script: str          # the job snippet in hpc/templates/job/
    command: str         # the semhpc command the ranks run ("" for jupyter)
    uses_gpus: bool      # by default, ask for every GPU of a GPU node
    single_process: bool  # one rank on one node


JOB_KINDS = {
    "train": JobKind("ranks.sh", "train", uses_gpus=True, single_process=False),
    "bench": JobKind("ranks.sh", "bench", uses_gpus=True, single_process=False),
    "classify": JobKind("ranks.sh", "classify", uses_gpus=True, single_process=False),
    "ingest": JobKind("ranks.sh", "ingest", uses_gpus=False, single_process=False),
    "jupyter": JobKind("jupyter.sh", "", uses_gpus=False, single_process=True),
}


@dataclass(frozen=True)
class ResourcePlan:
    nodes: int
    ranks_per_node: int
    cores_per_rank: int
    gpus_per_node: int
    walltime: str  # HH:MM:SS, hours may exceed 24
    queue: str     # "" = the scheduler's default
    qos: str = ""          # Slurm QOS; "" = none asked
    reservation: str = ""  # "" = none
    memory_gb: int = 0     # per node; 0 = the scheduler's default

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def cores_per_node(self) -> int:
        return self.ranks_per_node * self.cores_per_rank


def plan_resources(profile, kind: str, *, nodes: int | None = None, gpus_per_node: int | None = None,
                   walltime: str | None = None, queue: str | None = None, qos: str | None = None,
                   reservation: str | None = None) -> ResourcePlan:
    """The resources of one job of `kind` on `profile`'s nodes; raises on impossible requests."""
    job, node, sched = JOB_KINDS[kind], profile.node, profile.scheduler
    nodes = 1 if nodes is None else nodes
    if nodes < 1:
        raise SemhpcError(f"--nodes {nodes}: must be >= 1")
    if job.single_process and nodes != 1:
        raise SemhpcError(f"a {kind} job runs on one node; drop --nodes {nodes}")
    if gpus_per_node is None:
        gpus = node.gpus if job.uses_gpus and gpus_usable(node) else 0
    else:
        gpus = gpus_per_node
    if not 0 <= gpus <= node.gpus:
        raise SemhpcError(f"--gpus-per-node {gpus}: {profile.name} nodes have {node.gpus} GPU(s)")
    if gpus and not gpus_usable(node):
        raise SemhpcError(
            f"--gpus-per-node {gpus}: {profile.name}'s GPUs ({node.gpu_model or 'model not given'}, compute "
            f"capability {node.gpu_compute_capability:.1f}) are older than the semhpc image's CUDA build "
            f"(compute capabilities {', '.join(f'{cc:.1f}' for cc in IMAGE_COMPUTE_CAPABILITIES)}); "
            "run on CPU ranks (--gpus-per-node 0) or pick a profile with newer GPUs")
    if job.single_process:
        ranks_per_node = 1
    else:
        ranks_per_node = gpus or node.cpu_ranks
    seconds = parse_walltime(walltime or sched.default_walltime, "--walltime")
    if sched.max_walltime and seconds > parse_walltime(sched.max_walltime, ""):
        raise SemhpcError(f"--walltime {walltime}: {profile.name} allows at most {sched.max_walltime}")
    queue = queue if queue is not None else (sched.gpu_queue if gpus else sched.cpu_queue)
    if job.single_process:
        cores_per_rank, memory_gb = min(profile.jupyter.cores, node.cores), profile.jupyter.memory_gb
    else:
        cores_per_rank = node.cores // ranks_per_node
        memory_gb = memory_per_node(node, gpus, ranks_per_node * cores_per_rank)
    return ResourcePlan(nodes=nodes, ranks_per_node=ranks_per_node, cores_per_rank=cores_per_rank,
                        gpus_per_node=gpus, walltime=format_walltime(seconds), queue=queue,
                        qos=sched.qos if qos is None else qos,
                        reservation=sched.reservation if reservation is None else reservation,
                        memory_gb=memory_gb)


def memory_per_node(node, gpus: int, cores: int) -> int:
    """GB per node the job asks: by its GPUs, else by its cores, else the profile's per-node value."""
    if gpus and node.memory_gb_per_gpu:
        return gpus * node.memory_gb_per_gpu
    if node.memory_gb_per_core:
        return cores * node.memory_gb_per_core
    return node.memory_gb


def scaling_sweep(full: ResourcePlan, node) -> list[ResourcePlan]:
    """The bench sweep up to `full`: 1, 2, 4 ... ranks on one node, then 2, 4 ... full nodes.

    Every point keeps the cores (and GPU) per rank of the full job, so points differ only in the
    number of ranks (memory follows `node`'s per-GPU/per-core rule); each is its own job because a
    job array cannot vary its node count.
    """
    def doubling(upto: int) -> list[int]:
        counts = [1]
        while counts[-1] * 2 < upto:
            counts.append(counts[-1] * 2)
        return counts + ([upto] if upto > 1 else [])

    gpus_per_rank = 1 if full.gpus_per_node else 0
    points = [replace(full, nodes=1, ranks_per_node=r, gpus_per_node=r * gpus_per_rank,
                      memory_gb=memory_per_node(node, r * gpus_per_rank, r * full.cores_per_rank))
              for r in doubling(full.ranks_per_node)]
    points += [replace(full, nodes=n) for n in doubling(full.nodes)[1:]]
    return points


_CLOCK = re.compile(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)")
_UNITS = {"d": 86400, "h": 3600, "m": 60}
MAX_WALLTIME_DAYS = 365  # no queue runs a job longer; a longer walltime is a typo


def parse_walltime(text: str, what: str) -> int:
    """Seconds in `H:MM:SS`, `D-HH:MM:SS`, or `90m` / `12h` / `2d`, from 1 s to MAX_WALLTIME_DAYS;
    `what` names the source in errors."""
    text = str(text).strip()
    clock = _CLOCK.fullmatch(text)
    seconds = None
    if clock:
        days, hours, minutes, secs = (int(g or 0) for g in clock.groups())
        if minutes < 60 and secs < 60:
            seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    elif re.fullmatch(r"\d+[dhm]", text):
        seconds = int(text[:-1]) * _UNITS[text[-1]]
    if seconds is None:
        raise SemhpcError(f"{what} {text!r}: walltime must look like 02:30:00, 1-12:00:00, 90m, 12h or 2d")
    if not 0 < seconds <= MAX_WALLTIME_DAYS * _UNITS["d"]:
        raise SemhpcError(f"{what} {text!r}: walltime must be longer than zero and at most {MAX_WALLTIME_DAYS} days")
    return seconds


def format_walltime(seconds: int) -> str:
    """HH:MM:SS, which both Slurm and PBS Pro accept (hours may be more than 24); `seconds` comes
    from parse_walltime, which refuses zero."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
