"""The batch jobs `semhpc submit` started, with their scheduler states, as a table.

The job records ($SEMHPC_HOME/jobs.jsonl, default ~/.semhpc/jobs.jsonl) and the state queries
(squeue / qstat, once per scheduler) belong to `semhpc.hpc.job_records`; this is its pandas view.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import pandas as pd

from semhpc.hpc import job_records


def list_jobs(with_states: bool = True) -> pd.DataFrame:
    """One row per submitted job, newest first (id, cluster, scheduler, kind, name, log, workdir,
    submitted, ...), with a `state` column when `with_states`. Empty when nothing was submitted."""

    jobs = job_records.submitted_jobs()
    table = pd.DataFrame([asdict(job) for job in jobs], columns=[f.name for f in fields(job_records.SubmittedJob)])
    if with_states:
        table.insert(4, "state", table["id"].map(job_records.current_states(jobs)))
    return table.iloc[::-1].reset_index(drop=True)
