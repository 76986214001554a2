"""The jobs `semhpc submit` sent, so that `semhpc jobs` and `semhpc cancel` touch only those.

One JSON object per line in $SEMHPC_HOME/jobs.jsonl (default ~/.semhpc/jobs.jsonl), appended at
submission. The file only grows; `semhpc jobs` asks the scheduler for each job's state.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from semhpc.hpc.scheduler import SCHEDULERS


@dataclass(frozen=True)
class SubmittedJob:
    id: str
    cluster: str     # profile name
    scheduler: str   # slurm | pbs
    kind: str        # train | bench | ingest | classify | jupyter
    name: str
    script: str      # the rendered job script
    log: str         # the scheduler's log file for the job
    workdir: str     # where it was submitted from (the job runs there)
    submitted: str   # ISO time


def jobs_file() -> Path:
    return Path(os.environ.get("SEMHPC_HOME") or "~/.semhpc").expanduser() / "jobs.jsonl"


def record(job: SubmittedJob) -> None:
    path = jobs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent submits never interleave inside a line.
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(job)) + "\n")


def submitted_jobs(cluster: str | None = None) -> list[SubmittedJob]:
    """Every recorded job (of `cluster`, if given), oldest first; unreadable lines are skipped."""
    path = jobs_file()
    if not path.is_file():
        return []
    names = {f.name for f in fields(SubmittedJob)}
    jobs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a full disk or a kill
            continue
        if isinstance(entry, dict) and set(entry) == names:
            jobs.append(SubmittedJob(**entry))
    return [job for job in jobs if cluster is None or job.cluster == cluster]


def recorded_id(typed: str, recorded: list[str]) -> str | None:
    """The recorded job id that `typed` names: the id itself, or a PBS id without its `.server`
    suffix (qsub prints 12.head; people type 12). None when it names no job or several."""
    if typed in recorded:
        return typed
    matches = [job_id for job_id in recorded if job_id.split(".", 1)[0] == typed]
    return matches[0] if len(matches) == 1 else None


# The state of a job the scheduler no longer lists (it finished a while ago), and of one whose
# scheduler cannot be asked from this machine.
GONE, UNKNOWN = "GONE", "?"


def current_states(jobs: list[SubmittedJob]) -> dict[str, str]:
    """Job id -> state, asking each scheduler once for all of its jobs."""

    states = {}
    for name, sched in SCHEDULERS.items():
        ids = [job.id for job in jobs if job.scheduler == name]
        if ids:
            known = sched.states(ids) if sched.available() else {}
            states.update({job_id: known.get(job_id, GONE if sched.available() else UNKNOWN) for job_id in ids})
    return states
