"""`semhpc jobs`: the batch jobs `semhpc submit` sent, with their state from squeue / qstat."""

from __future__ import annotations

from semhpc.hpc.job_records import GONE, current_states, jobs_file, submitted_jobs

HELP = "List the batch jobs semhpc submitted (state from squeue/qstat), newest last."


def add_arguments(parser) -> None:
    parser.add_argument("--all", action="store_true",
                        help="also jobs the scheduler no longer lists (finished a while ago)")
    parser.add_argument("--cluster", help="only jobs submitted to this cluster profile")


def main(args) -> int:
    jobs = submitted_jobs(args.cluster)
    states = current_states(jobs)
    shown = [job for job in jobs if args.all or states[job.id] != GONE]
    if not shown:
        hint = "" if args.all else " still known to the scheduler (--all lists finished ones)"
        print(f"no jobs{hint}; semhpc records its jobs in {jobs_file()}")
        return 0
    rows = [("JOB", "CLUSTER", "KIND", "NAME", "STATE", "SUBMITTED", "LOG")]
    rows += [(job.id, job.cluster, job.kind, job.name, states[job.id], job.submitted, job.log) for job in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]))
    return 0
