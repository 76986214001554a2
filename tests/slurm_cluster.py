"""A real one-node Slurm cluster in a temporary directory, for tests that submit real jobs.

`SlurmCluster(workdir).start()` runs munged, slurmctld and slurmd (Debian `slurm-wlm munge`) in
the foreground as child processes, with every socket, port, state and spool file under
`workdir`, so it never touches a system Slurm or munge. Client commands find it through
`SLURM_CONF`, which `env` holds; jobs inherit it from sbatch. `stop()` cancels the cluster's
jobs, waits for them to leave, and stops the three daemons it started.

The node is this machine (`hostname -s`) with 2 CPUs; process tracking by /proc and no task
plugin, so neither cgroups nor systemd are needed (containers, CI runners).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
CPUS = 2


def missing_binaries() -> list[str]:
    """Slurm/munge programs that are not installed (`scripts/bootstrap.sh --test` installs them)."""
    sbin = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=sbin) is None]


def _sbin(name: str) -> str:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._daemons: list[tuple[str, subprocess.Popen]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "SlurmCluster":
        self._start_munge()
        self._write_config()
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        self._wait_for_idle_node(timeout)
        return self

    def stop(self) -> None:
        if any(name != "munged" for name, _ in self._daemons):
            self._cancel_all_jobs()
        for name, proc in reversed(self._daemons):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._daemons.clear()

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests -----------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a client command (squeue, scontrol, ...) against this cluster."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def job_state(self, job_id: str) -> str:
        """The job's state as slurmctld reports it (PENDING, RUNNING, COMPLETED, FAILED, ...)."""
        out = self.run("scontrol", "show", "job", job_id, "--oneliner", check=False).stdout
        fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
        return fields.get("JobState", "UNKNOWN")

    def wait_for_state(self, job_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(1)

    def logs(self) -> str:
        """The daemons' logs, for assertion messages when a job does not behave."""
        return "\n".join(f"== {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.dir.glob("*.log")))

    # -- internals -------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.dir / f"{name}.out", "w")
        self._daemons.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)))

    def _start_munge(self) -> None:
        munge_dir = self.munge_socket.parent
        munge_dir.mkdir(parents=True, mode=0o700)
        key = munge_dir / "munge.key"
        subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        self._spawn("munged", [_sbin("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--log-file={self.dir / 'munged.log'}", f"--seed-file={munge_dir / 'seed'}"])
        deadline = time.monotonic() + 20
        while not self.munge_socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start:\n{(self.dir / 'munged.out').read_text()}")
            time.sleep(0.1)

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir()
        user = getpass.getuser()
        settings = {
            "ClusterName": "semhpc-test",
            "SlurmctldHost": self.host,
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": user,
            "SlurmdUser": user,
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.dir / "state",
            "SlurmdSpoolDir": self.dir / "spool",
            "SlurmctldPidFile": self.dir / "slurmctld.pid",
            "SlurmdPidFile": self.dir / "slurmd.pid",
            "SlurmctldLogFile": self.dir / "slurmctld.log",
            "SlurmdLogFile": self.dir / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "MpiDefault": "none",
            "ReturnToService": 2,
            "SlurmdParameters": "config_overrides",
            "MinJobAge": 300,
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines += [f"NodeName={self.host} CPUs={CPUS} State=UNKNOWN",
                  f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP"]
        self.conf.write_text("\n".join(lines) + "\n")

    def _wait_for_idle_node(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self._daemons if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while starting:\n{self._outputs()}\n{self.logs()}")
            out = self.run("sinfo", "--noheader", "--format=%T", check=False, timeout=10).stdout.split()
            if out and out[0].rstrip("*") == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not become idle in {timeout:.0f} s:\n{self.logs()}")

    def _cancel_all_jobs(self) -> None:
        self.run("scancel", "--full", f"--user={getpass.getuser()}", check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.run("squeue", "--noheader", "--format=%i", check=False, timeout=10).stdout
            if not out.strip():
                return
            time.sleep(1)

    def _outputs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.dir.glob("*.out")))
