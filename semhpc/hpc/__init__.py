"""Batch jobs on HPC clusters: cluster profiles, job scripts for Slurm and PBS Pro, submission.

The flow of `semhpc submit --cluster C --job K -- ARGS`:
  profiles.load_profile(C)        the site: scheduler, node shape, modules/container, paths, env
  resources.plan_resources(...)   nodes x ranks per node x cores per rank (one rank per GPU)
  render.render_job(...)          the job script: directives + settings + bash snippets
  scheduler.for_profile(...)      sbatch/qsub, squeue/qstat, scancel/qdel
  job_records.record(...)         ~/.semhpc/jobs.jsonl, for `semhpc jobs` and `semhpc cancel`
The shipped profiles and bash snippets live in the repository's `hpc/` folder (hpc/README.md).
"""

import sys
from pathlib import Path


def _shipped_dir() -> Path:
    """The repository's hpc/ folder (a checkout or editable install), else the copy a wheel
    installs into <prefix>/share/semhpc/hpc (pyproject.toml data-files)."""
    checkout = Path(__file__).resolve().parents[2] / "hpc"
    if (checkout / "templates").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "semhpc" / "hpc"


# Shipped cluster profiles (clusters/) and bash snippets (templates/).
SHIPPED_DIR = _shipped_dir()
