"""Submitting rendered job scripts: what `semhpc submit` does after planning and rendering.

A bench job becomes a scaling sweep: one job per point (1, 2, 4 ... ranks, then 2, 4 ... nodes),
each starting after the previous one ends, so no two points share (and disturb) the nodes. Every
submitted job is recorded (job_records.py) for `semhpc jobs` and `semhpc cancel`. The job's own
arguments are parsed with its command's options before submitting, so a typo fails here, not
after hours in the queue.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import os

from semhpc.config import load_config
from semhpc.hpc import job_records
from semhpc.hpc.resources import JOB_KINDS, scaling_sweep
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError


def submit_script(sched, profile, kind: str, name: str, plan, script: str, path, log: str, after: str | None) -> str:
    """Write the script, submit it, record the job for `semhpc jobs`, and say where its log is."""
    atomic.write_text(path, script)
    job_id = sched.submit(path, after=after)
    log = sched.log_of(log, job_id)
    job_records.record(job_records.SubmittedJob(
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
    if kind != "bench":
        return [(name, plan)]
    return [(f"{name}-{point.ranks}r", point) for point in scaling_sweep(plan, node)]


def config_gpus(kind: str, job_args) -> int | None:
    """`launch.gpus` of a train job's config (`--config`, `--set` applied), None when 0 or absent:
    a thesis config asks for the GPUs its run used."""
    if kind != "train" or job_args is None or not getattr(job_args, "config", None):
        return None
    return load_config(job_args.config, job_args.overrides).launch.gpus or None


def check_job_arguments(kind: str, argv: list[str]):
    """Parse ARGS with the job command's own options now, so a typo fails here, not after the queue;
    returns the parsed arguments (None for jupyter, whose arguments are jupyter lab's).

    argparse prints the command's usage and exits on an error, before anything is submitted.
    """
    command = JOB_KINDS[kind].command
    if not command:  # jupyter: the arguments are jupyter lab's
        return None
    if importlib.util.find_spec(f"semhpc.commands.{command}") is None:
        raise SemhpcError(f"this semhpc has no `{command}` command, so a {kind} job cannot run")
    parser = argparse.ArgumentParser(prog=f"semhpc {command}", description="the job's arguments, after --")
    importlib.import_module(f"semhpc.commands.{command}").add_arguments(parser)
    return parser.parse_args(argv)
