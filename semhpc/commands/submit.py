"""`semhpc submit --cluster C --job KIND -- ARGS`: render a batch job script and submit it.

A bench job becomes a scaling sweep: one job per point (1, 2, 4 ... ranks, then 2, 4 ... nodes),
each starting after the previous one ends, so no two points share (and disturb) the nodes.
"""

from __future__ import annotations

from semhpc.utils import options

HELP = "Render a batch job (train, bench, ingest, classify, jupyter) for a cluster profile and submit it."

JOB_DIR = "semhpc-jobs"


def add_arguments(parser) -> None:
    from semhpc.hpc.resources import JOB_KINDS

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
    import datetime
    import os
    from pathlib import Path

    from semhpc.hpc import scheduler
    from semhpc.hpc.profiles import DIRECTIVE_WORD, load_profile
    from semhpc.hpc.render import render_job
    from semhpc.hpc.resources import plan_resources
    from semhpc.utils.errors import SemhpcError

    for option in ("queue", "qos", "reservation"):
        value = getattr(args, option)
        if value and not DIRECTIVE_WORD.fullmatch(value):
            raise SemhpcError(f"--{option} {value!r}: may only hold letters, digits and . _ - + @ ,")
    profile = load_profile(args.cluster)
    if args.qos and profile.scheduler.type != "slurm":
        raise SemhpcError(f"--qos {args.qos}: {profile.name} runs {profile.scheduler.type}, which has no QOS; "
                          "use --queue")
    job_args = [*profile.job_defaults.get(args.job, []), *args.args]  # the user's arguments come last and win
    parsed = check_job_arguments(args.job, job_args)
    gpus_per_node = args.gpus_per_node if args.gpus_per_node is not None else config_gpus(args.job, parsed)
    if args.gpus_per_node is None and gpus_per_node is not None and gpus_per_node > profile.node.gpus:
        raise SemhpcError(f"{parsed.config}: launch.gpus is {gpus_per_node} but {profile.name} nodes have "
                          f"{profile.node.gpus} GPU(s); pass --gpus-per-node to run it on fewer")
    plan = plan_resources(profile, args.job, nodes=args.nodes, gpus_per_node=gpus_per_node,
                          walltime=args.walltime, queue=args.queue, qos=args.qos, reservation=args.reservation)
    sched = scheduler.for_profile(profile)
    job_dir = Path(args.job_dir).resolve()
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"  # unique per submit
    previous = None
    for name, point in job_points(args.job, args.name or f"semhpc-{args.job}", plan, profile.node):
        log = sched.log_pattern(str(job_dir / name), stamp)
        script = render_job(profile, args.job, point, name=name, args=job_args, log=log)
        if args.dry_run:
            print(script)
            continue
        job_id = submit_script(sched, profile, args.job, name, point, script, job_dir / f"{name}-{stamp}.sh", log,
                               after=previous)
        previous = job_id if args.job == "bench" else None
    return 0


def submit_script(sched, profile, kind: str, name: str, plan, script: str, path, log: str, after: str | None) -> str:
    """Write the script, submit it, record the job for `semhpc jobs`, and say where its log is."""
    import datetime
    import os

    from semhpc.hpc import registry
    from semhpc.utils import atomic

    atomic.write_text(path, script)
    job_id = sched.submit(path, after=after)
    log = sched.log_of(log, job_id)
    registry.record(registry.SubmittedJob(
        id=job_id, cluster=profile.name, scheduler=sched.name, kind=kind, name=name, script=str(path), log=log,
        workdir=os.getcwd(), submitted=datetime.datetime.now().isoformat(timespec="seconds")))
    print(f"job {job_id}  {kind} on {profile.name}: {plan.nodes} node(s) x {plan.ranks_per_node} rank(s)  "
          f"log {log}", flush=True)
    if kind == "jupyter":
        print(f"once it runs, the ssh -L command and the URL are in the log and in "
              f"{os.getcwd()}/jupyter-{job_id}.txt")
    return job_id


def job_points(kind: str, name: str, plan, node) -> list[tuple[str, object]]:
    """(job name, plan) of each job to submit: the sweep's points for bench, else the one job."""
    from semhpc.hpc.resources import scaling_sweep

    if kind != "bench":
        return [(name, plan)]
    return [(f"{name}-{point.ranks}r", point) for point in scaling_sweep(plan, node)]


def config_gpus(kind: str, job_args) -> int | None:
    """`launch.gpus` of a train job's config (`--config`, `--set` applied), None when 0 or absent:
    a thesis config asks for the GPUs its run used."""
    if kind != "train" or job_args is None or not getattr(job_args, "config", None):
        return None
    from semhpc.config import load_config

    return load_config(job_args.config, job_args.overrides).launch.gpus or None


def check_job_arguments(kind: str, argv: list[str]):
    """Parse ARGS with the job command's own options now, so a typo fails here, not after the queue;
    returns the parsed arguments (None for jupyter, whose arguments are jupyter lab's).

    argparse prints the command's usage and exits on an error, before anything is submitted.
    """
    import argparse
    import importlib

    from semhpc import cli
    from semhpc.hpc.resources import JOB_KINDS
    from semhpc.utils.errors import SemhpcError

    command = JOB_KINDS[kind].command
    if not command:  # jupyter: the arguments are jupyter lab's
        return None
    if command not in cli.COMMANDS:
        raise SemhpcError(f"this semhpc has no `{command}` command, so a {kind} job cannot run")
    parser = argparse.ArgumentParser(prog=f"semhpc {command}", description="the job's arguments, after --")
    importlib.import_module(f"semhpc.commands.{command}").add_arguments(parser)
    return parser.parse_args(argv)
