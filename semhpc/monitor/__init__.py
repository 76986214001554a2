"""Follow and analyse runs from Python and the notebooks in `notebooks/`.

    from semhpc.monitor import open_run, figures
    run = open_run("runs/demo")
    run.status().describe()          # 'running: step 120/400 (30%), ETA 5.2 min; ...'
    run.steps(), run.epochs()        # pandas tables of metrics.jsonl
    figures.training_curves(run.steps(), run.epochs())

Modules: `run` (a run directory), `status` (running/finished/failed/stalled), `jobs` (batch jobs
of `semhpc submit`), `bench` and `profile` (benchmark and per-layer profile outputs),
`classification` (predictions review), `dataset` (an ingested dataset), `figures` (every plot),
`notebooks` (run a notebook headless), `report` (static HTML for `semhpc report`).
"""

from semhpc.monitor.jobs import list_jobs
from semhpc.monitor.run import Run, describe_rank_spread, open_run
from semhpc.monitor.status import RunStatus

__all__ = ["Run", "RunStatus", "describe_rank_spread", "list_jobs", "open_run"]
