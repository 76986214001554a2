"""Everything that differs between Slurm and PBS Pro on the Python side.

Each scheduler knows its job-script directives (from a ResourcePlan) and wraps its commands:
submit (sbatch / qsub), status (squeue / qstat) and cancel (scancel / qdel). The bash side of
the difference (job id, node list, submit directory) is in hpc/templates/scheduler/.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
from pathlib import Path

from semhpc.hpc.resources import ResourcePlan
from semhpc.utils.errors import SemhpcError

# States after which a job is gone for good (Slurm's words; PBS letters are mapped onto them).
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE", "FINISHED"}


class Scheduler:
    name = ""
    directive = ""
    submit_command = ""
    status_command = ""
    cancel_command = ""

    def directives(self, plan: ResourcePlan, profile, job_name: str, log: str) -> list[str]:
        raise NotImplementedError

    def log_pattern(self, prefix: str, stamp: str) -> str:
        """The log file the scheduler writes, for job files starting with `prefix`."""
        raise NotImplementedError

    def log_of(self, pattern: str, job_id: str) -> str:
        return pattern

    def submit(self, script: Path, after: str | None = None) -> str:
        """Submit `script` (to start after job `after` ends, if given); return the job id."""
        raise NotImplementedError

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """Job id -> state for the ids the scheduler still knows."""
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> None:
        _run([self.cancel_command, *job_ids])

    def available(self) -> bool:
        return shutil.which(self.status_command) is not None


class Slurm(Scheduler):
    name = "slurm"
    directive = "#SBATCH"
    submit_command, status_command, cancel_command = "sbatch", "squeue", "scancel"

    def directives(self, plan, profile, job_name, log):
        sched = profile.scheduler
        lines = [f"--job-name={job_name}", f"--nodes={plan.nodes}", f"--ntasks-per-node={plan.ranks_per_node}",
                 f"--cpus-per-task={plan.cores_per_rank}"]
        if plan.gpus_per_node:
            # One GPU bound to each rank, or G per node that the ranks find by local rank.
            lines.append("--gpus-per-task=1" if sched.gpus_per_task else f"--gres=gpu:{plan.gpus_per_node}")
            if sched.gpu_bind:
                lines.append(f"--gpu-bind={sched.gpu_bind}")
        if plan.memory_gb:
            lines.append(f"--mem={plan.memory_gb}G")
        lines.append(f"--time={plan.walltime}")
        if plan.queue:
            lines.append(f"--partition={plan.queue}")
        if plan.qos:
            lines.append(f"--qos={plan.qos}")
        if plan.reservation:
            lines.append(f"--reservation={plan.reservation}")
        if sched.constraint:
            lines.append(f"--constraint={sched.constraint}")
        if sched.exclusive:
            lines.append("--exclusive")
        if sched.account:
            lines.append(f"--account={sched.account}")
        lines.append(f"--output={log}")
        lines += sched.extra_directives
        return [f"{self.directive} {line}" for line in lines]

    def log_pattern(self, prefix, stamp):
        return f"{prefix}-%j.log"

    def log_of(self, pattern, job_id):
        return pattern.replace("%j", job_id)

    def submit(self, script, after=None):
        cmd = [self.submit_command, "--parsable"]
        if after:
            cmd.append(f"--dependency=afterany:{after}")
        out = _run([*cmd, str(script)])
        return out.strip().split(";")[0]  # "ID" or "ID;cluster"

    def states(self, job_ids):
        out = _run([self.status_command, "--noheader", "--states=all", f"--user={getpass.getuser()}",
                    "--format=%i|%T"])
        wanted = set(job_ids)
        return {job: state for job, _, state in (line.partition("|") for line in out.splitlines()) if job in wanted}


class PbsPro(Scheduler):
    name = "pbs"
    directive = "#PBS"
    submit_command, status_command, cancel_command = "qsub", "qstat", "qdel"
    # qstat job_state letters, in Slurm's words.
    STATES = {"Q": "PENDING", "H": "HELD", "W": "WAITING", "T": "MOVING", "R": "RUNNING", "B": "RUNNING",
              "E": "EXITING", "S": "SUSPENDED", "U": "SUSPENDED", "F": "FINISHED", "X": "FINISHED",
              "M": "MOVED"}

    def directives(self, plan, profile, job_name, log):
        chunk = f"select={plan.nodes}:ncpus={plan.cores_per_node}"
        if plan.gpus_per_node:
            chunk += f":ngpus={plan.gpus_per_node}"
        chunk += f":mpiprocs={plan.ranks_per_node}"
        if plan.memory_gb:
            chunk += f":mem={plan.memory_gb}gb"
        sched = profile.scheduler
        place = sched.place + (":excl" if sched.exclusive and ":excl" not in sched.place else "")
        lines = [f"-N {job_name}", f"-l {chunk}", f"-l place={place}", f"-l walltime={plan.walltime}"]
        # A PBS Pro reservation is a queue of its own (R123.server), used instead of the profile's.
        if plan.reservation or plan.queue:
            lines.append(f"-q {plan.reservation or plan.queue}")
        if sched.account:
            lines.append(f"-A {sched.account}")
        # One log with stdout and stderr, written in place while the job runs (not spooled).
        lines += ["-j oe", "-k oed", f"-o {log}"]
        lines += sched.extra_directives
        return [f"{self.directive} {line}" for line in lines]

    def log_pattern(self, prefix, stamp):
        return f"{prefix}-{stamp}.log"  # PBS cannot put the job id into -o

    def submit(self, script, after=None):
        cmd = [self.submit_command]
        if after:
            cmd += ["-W", f"depend=afterany:{after}"]
        return _run([*cmd, str(script)]).strip()

    def states(self, job_ids):
        # -x includes finished jobs the server still remembers; unknown ids only add stderr lines.
        # Delimiter-separated output, one line per job: OpenPBS 23.06's `-F json` shows only the
        # first of several job ids.
        out = _run([self.status_command, "-x", "-f", "-F", "dsv", *job_ids], check=False)
        states = {}
        for line in out.splitlines():
            job = _DSV_JOB.match(line)
            state = _DSV_STATE.search(line)
            if job and state:
                states[job.group(1)] = self.STATES.get(state.group(1), state.group(1))
        return states


_DSV_JOB = re.compile(r"Job Id: ([^|]+)\|")
_DSV_STATE = re.compile(r"\|job_state=(\w+)")


SCHEDULERS = {scheduler.name: scheduler for scheduler in (Slurm(), PbsPro())}


def for_profile(profile) -> Scheduler:
    return SCHEDULERS[profile.scheduler.type]


def _run(cmd: list[str], check: bool = True) -> str:
    """Run a scheduler command; its failure becomes one SemhpcError line with its own message."""
    if shutil.which(cmd[0]) is None:
        raise SemhpcError(f"{cmd[0]} not found: run this on a login node of the cluster")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SemhpcError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {detail[-1] if detail else ''}")
    return proc.stdout
