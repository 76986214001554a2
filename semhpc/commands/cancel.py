"""`semhpc cancel JOB...`: cancel batch jobs that `semhpc submit` sent (scancel / qdel)."""

from __future__ import annotations

from semhpc.hpc.job_records import GONE, UNKNOWN, current_states, recorded_id, submitted_jobs
from semhpc.hpc.scheduler import FINISHED, SCHEDULERS
from semhpc.utils.errors import SemhpcError

HELP = "Cancel batch jobs semhpc submitted (scancel/qdel); other jobs are left alone."


def add_arguments(parser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JOB", help="job ids as `semhpc jobs` lists them (PBS: with or without the .server suffix)")
    parser.add_argument("--all", action="store_true", help="every semhpc job that is still queued or running")
    parser.add_argument("--cluster", help="only jobs submitted to this cluster profile")


def main(args) -> int:
    if bool(args.job_ids) == args.all:
        raise SemhpcError("name the jobs to cancel, or pass --all (not both)")
    jobs = {job.id: job for job in submitted_jobs(args.cluster)}
    named = {typed: recorded_id(typed, list(jobs)) for typed in args.job_ids}
    unknown = [typed for typed, job_id in named.items() if job_id is None]
    if unknown:
        raise SemhpcError(f"job {', '.join(unknown)} was not submitted by semhpc (see `semhpc jobs`); "
                          "cancel other jobs with scancel or qdel")
    states = current_states(list(jobs.values()))
    chosen = list(dict.fromkeys(named.values())) or [job_id for job_id, state in states.items()
                                                      if state not in FINISHED | {GONE, UNKNOWN}]
    for name, sched in SCHEDULERS.items():
        ids = [job_id for job_id in chosen if jobs[job_id].scheduler == name]
        if ids:
            sched.cancel(ids)
            for job_id in ids:
                print(f"cancelled job {job_id} ({jobs[job_id].kind} on {jobs[job_id].cluster})")
    if not chosen:
        print("no semhpc job is queued or running")
    return 0
