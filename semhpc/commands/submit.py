"""`semhpc submit --cluster C --job KIND -- ARGS`: render a batch job script and submit it.

The options and the flow; the submission itself (a bench job's scaling sweep, the job record,
checking the job's own arguments) is semhpc/hpc/submission.py.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from semhpc.hpc.resources import JOB_KINDS, plan_resources
from semhpc.utils import options
from semhpc.utils.errors import SemhpcError

HELP = "Render a batch job (train, bench, ingest, classify, jupyter) for a cluster profile and submit it."

JOB_DIR = "semhpc-jobs"


def add_arguments(parser) -> None:
    parser.add_argument("--cluster", required=True,
                        help="cluster profile name (hpc/clusters/, /etc/semhpc/clusters/, $SEMHPC_CLUSTERS) "
                             "or path to a profile .yaml")
    parser.add_argument("--job", required=True, choices=list(JOB_KINDS), help="what the job runs")
    parser.add_argument("--nodes", type=options.bounded_int(1, 10_000), help="nodes (default 1)")
    parser.add_argument("--gpus-per-node", type=options.bounded_int(0, options.MAX_GPUS_PER_NODE),
                        help="GPUs per node, one rank each (default: a train job's launch.gpus from its config, "
                             "else all of a GPU node's for train/bench/classify)")
    parser.add_argument("--walltime", help="e.g. 02:30:00, 1-12:00:00, 90m, 12h (default: the profile's)")
    parser.add_argument("--name", help="job name (default semhpc-KIND)")
    parser.add_argument("--queue", help="partition (Slurm) or queue (PBS) instead of the profile's")
    parser.add_argument("--qos", help="Slurm QOS instead of the profile's scheduler.qos (e.g. a debug QOS); "
                                      "'' for none")
    parser.add_argument("--reservation", help="reservation to run in instead of the profile's (Slurm "
                                              "--reservation; PBS: the reservation's queue)")
    parser.add_argument("--job-dir", default=JOB_DIR,
                        help=f"where job scripts and logs go (default ./{JOB_DIR})")
    parser.add_argument("--dry-run", action="store_true", help="print the job script(s), submit nothing")
    parser.add_argument("args", nargs="*", metavar="-- ARGS",
                        help="arguments of the job's semhpc command (jupyter: of jupyter lab), after --")


def main(args) -> int:
    from semhpc.hpc import scheduler, submission
    from semhpc.hpc.profiles import DIRECTIVE_WORD, load_profile
    from semhpc.hpc.render import render_job

    for option in ("queue", "qos", "reservation"):
        value = getattr(args, option)
        if value and not DIRECTIVE_WORD.fullmatch(value):
            raise SemhpcError(f"--{option} {value!r}: may only hold letters, digits and . _ - + @ ,")
    profile = load_profile(args.cluster)
    if args.qos and profile.scheduler.type != "slurm":
        raise SemhpcError(f"--qos {args.qos}: {profile.name} runs {profile.scheduler.type}, which has no QOS; "
                          "use --queue")
    job_args = [*profile.job_defaults.get(args.job, []), *args.args]  # the user's arguments come last and win
    parsed = submission.check_job_arguments(args.job, job_args)
    gpus_per_node = args.gpus_per_node if args.gpus_per_node is not None else submission.config_gpus(args.job, parsed)
    if args.gpus_per_node is None and gpus_per_node is not None and gpus_per_node > profile.node.gpus:
        raise SemhpcError(f"{parsed.config}: launch.gpus is {gpus_per_node} but {profile.name} nodes have "
                          f"{profile.node.gpus} GPU(s); pass --gpus-per-node to run it on fewer")
    plan = plan_resources(profile, args.job, nodes=args.nodes, gpus_per_node=gpus_per_node,
                          walltime=args.walltime, queue=args.queue, qos=args.qos, reservation=args.reservation)
    sched = scheduler.for_profile(profile)
    job_dir = Path(args.job_dir).resolve()
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"  # unique per submit
    previous = None
    for name, point in submission.job_points(args.job, args.name or f"semhpc-{args.job}", plan, profile.node):
        log = sched.log_pattern(str(job_dir / name), stamp)
        script = render_job(profile, args.job, point, name=name, args=job_args, log=log)
        if args.dry_run:
            print(script)
            continue
        job_id = submission.submit_script(sched, profile, args.job, name, point, script,
                                          job_dir / f"{name}-{stamp}.sh", log, after=previous)
        previous = job_id if args.job == "bench" else None
    return 0
