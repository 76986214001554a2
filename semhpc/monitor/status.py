"""Is a run running, finished, failed or stalled? Decided from files alone, so it works on a
login node, in a notebook, or long after the job ended.

The trainer's `RUN/status.json` (`semhpc.runtime.run_artifacts.write_status`) is the primary
source: {"state": "running"|"finished"|"failed", "pid", "host", "updated", "step", "error"}.
A "running" file is only a claim: the process may have been killed (-9, OOM, walltime) without a
chance to say so. On the same host we check that the pid is alive; elsewhere, and for runs
without a status.json, the metrics' pace decides: no new record for longer than `stall_factor`
x the median step interval (`stall_factor` x median step time x log_every) means stalled.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

STATUS_FILE = "status.json"
DEFAULT_STALL_FACTOR = 10.0
# A floor under the stall threshold: validation, checkpoint saves and the first step's graph
# tracing take far longer than one logging interval of a tiny run.
DEFAULT_MIN_STALL_SECONDS = 120.0


@dataclass(frozen=True)
class RunStatus:
    state: str                       # running | finished | failed | stalled
    reason: str                      # one line saying why, for people
    step: int | None                 # newest step recorded
    total_steps: int | None          # steps_per_epoch x epochs, when known
    last_update: float | None        # epoch seconds of the newest record or status.json
    seconds_per_step: float | None   # wall clock, over the current attempt's step records
    eta_seconds: float | None        # to the last step, at the current pace (running only)

    @property
    def progress(self) -> float | None:
        return self.step / self.total_steps if self.step is not None and self.total_steps else None

    def describe(self) -> str:
        """One line for people: 'running: step 120/400 (30%), ETA 5.2 min; last record 3 s ago'."""
        where = f"step {self.step if self.step is not None else '-'}"
        if self.total_steps:
            where += f"/{self.total_steps} ({self.progress:.0%})"
        eta = f", ETA {self.eta_seconds / 60:.1f} min" if self.eta_seconds is not None else ""
        return f"{self.state}: {where}{eta}; {self.reason}"


def read_status_file(run_dir: str | Path) -> dict | None:
    """RUN/status.json as written by the trainer, or None when absent or half-written (an atomic
    rename makes the latter rare; treat it as absent and use the metrics)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "state" in data else None


def process_alive(pid: int) -> bool:
    """True while `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): os.kill's answer stands
    return stat.rpartition(")")[2].split()[0] != "Z"


def decide_status(records: list[dict], status_file: dict | None, finished_file: bool,
                  total_steps: int | None, log_every: int, stall_factor: float = DEFAULT_STALL_FACTOR,
                  min_stall_seconds: float = DEFAULT_MIN_STALL_SECONDS, now: float | None = None) -> RunStatus:
    """The state of a run from its metrics records, its status.json (or None) and whether
    test_metrics.json exists. Pure apart from the pid check, so every branch is testable."""
    now = time.time() if now is None else now
    attempt = _current_attempt(records)
    steps = [r for r in attempt if r.get("kind") == "step"]
    step = max((int(r["step"]) for r in attempt if "step" in r), default=None)
    times = [r["time"] for r in records if "time" in r]
    if status_file and status_file.get("updated"):
        times.append(float(status_file["updated"]))
    last_update = max(times, default=None)
    pace = _seconds_per_step(steps)

    def status(state, reason, eta=None):
        return RunStatus(state, reason, step, total_steps, last_update, pace, eta)

    claimed = (status_file or {}).get("state")
    tested = any(r.get("kind") == "test" for r in attempt)
    if claimed == "failed":
        return status("failed", f"the trainer reported: {status_file.get('error') or 'failed'}")
    # test_metrics.json alone may be left over from an earlier attempt that was then resumed.
    if claimed == "finished" or tested or (claimed is None and finished_file):
        return status("finished", "test results written")
    if claimed == "running" and status_file.get("host") == socket.gethostname() \
            and not process_alive(int(status_file["pid"])):
        return status("failed", f"process {status_file['pid']} on {status_file['host']} is gone without finishing")

    typical_step_time = statistics.median(r["step_time"] for r in steps) if steps else None
    if typical_step_time is None or last_update is None:
        return status("running", "started, no step recorded yet")
    threshold = max(stall_factor * typical_step_time * log_every, min_stall_seconds)
    silent = now - last_update
    if silent > threshold:
        return status("stalled", f"no new metrics for {silent:.0f} s (threshold {threshold:.0f} s: {stall_factor:g} x "
                                 f"median step time x log_every, at least {min_stall_seconds:g} s)")
    eta = (total_steps - step) * pace if total_steps and pace and step is not None else None
    return status("running", f"last record {silent:.0f} s ago", eta)


def _current_attempt(records: list[dict]) -> list[dict]:
    """Records since the newest start/resume: an earlier attempt's pace and end say nothing now."""
    starts = [i for i, r in enumerate(records) if r.get("kind") in ("start", "resume")]
    return records[starts[-1]:] if starts else records


def _seconds_per_step(steps: list[dict]) -> float | None:
    """Wall seconds per step between the first and the newest step record (includes validation
    and checkpointing, which a per-step `step_time` does not: the honest pace for an ETA)."""
    if len(steps) < 2 or steps[-1]["step"] == steps[0]["step"]:
        return None
    return (steps[-1]["time"] - steps[0]["time"]) / (steps[-1]["step"] - steps[0]["step"])
