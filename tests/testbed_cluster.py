"""The multi-node test cluster (hpc/testbed/testbed.sh) driven from tests.

`Testbed(prefix).up()` builds the image (cached after the first time) and starts the head node
and two one-core compute nodes; `down()` removes them with their network and volumes. Commands
run on a node through `docker exec`, as the non-root user `semhpc` in its home (the shared
/home volume) unless `root=True`. The checkout is mounted read-only on every node, so the nodes
run the semhpc under test. `images`, a host folder of Charliecloud images, is mounted read-only
at /images on every node.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

TESTBED_SH = Path(__file__).resolve().parents[1] / "hpc" / "testbed" / "testbed.sh"
HOME = "/home/semhpc"
DATA = "/scratch/semhpc/data"
# Four of semhpc synth's categories (chance accuracy 1/4): enough for a short run to learn.
CATEGORIES = ["Biological", "Porous_Sponge", "Powder", "Tips"]


class Testbed:
    def __init__(self, prefix: str, images: Path | None = None):
        self.prefix = prefix
        self.env = {**os.environ, "SEMHPC_TESTBED": prefix}
        if images:
            self.env["SEMHPC_TESTBED_IMAGES"] = str(images)
        self.up_seconds: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, timeout: float = 3600) -> "Testbed":
        """Start the testbed (building its image first when needed); raises with the script's output."""
        start = time.monotonic()
        out = subprocess.run([str(TESTBED_SH), "up"], env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"testbed.sh up failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
        self.up_seconds = time.monotonic() - start
        return self

    def down(self) -> None:
        subprocess.run([str(TESTBED_SH), "down"], env=self.env, capture_output=True, text=True, timeout=300)

    def kill(self, node: str) -> None:
        """A node dies: `docker kill` its container."""
        subprocess.run([str(TESTBED_SH), "kill", node], env=self.env, check=True, capture_output=True, timeout=60)

    def start(self, node: str) -> None:
        """Start a killed node again; returns once both schedulers list every compute node as free."""
        out = subprocess.run([str(TESTBED_SH), "start", node], env=self.env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]

    # -- commands on the nodes -----------------------------------------------------------------
    def run(self, *cmd: str, node: str = "head", root: bool = False, workdir: str | None = None,
            check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """`cmd` on `node` as semhpc (or root), in `workdir` (default: the user's home)."""
        user = "root" if root else "semhpc"
        docker = ["docker", "exec", "-u", user, "-w", workdir or (HOME if not root else "/"),
                  f"{self.prefix}-{node}", *cmd]
        out = subprocess.run(docker, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} on {node} failed ({out.returncode}):\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def semhpc(self, workdir: str, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """`semhpc ARGS` on the login (head) node as the user, in `workdir` (created when missing)."""
        self.run("mkdir", "-p", workdir)
        return self.run("semhpc", *args, workdir=workdir, check=check, timeout=timeout)

    def read_text(self, path: str, node: str = "head") -> str:
        return self.run("cat", path, node=node).stdout

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def write_text(self, path: str, text: str) -> None:
        subprocess.run(["docker", "exec", "-i", "-u", "semhpc", f"{self.prefix}-head", "sh", "-c",
                        f"mkdir -p {shlex.quote(str(Path(path).parent))} && cat > {shlex.quote(path)}"],
                       input=text, text=True, check=True, capture_output=True, timeout=60)

    def ingested_dataset(self) -> str:
        """DATA: 160 synthetic 64x48 SEM images of CATEGORIES ingested into the shared /scratch on
        the login node (once: kept while the testbed lives)."""
        if not self.exists(f"{DATA}/manifest.json"):
            self.semhpc("/scratch/semhpc", "synth", "all", "--per-class", "40", "--size", "64x48", "--seed", "3")
            self.run("mkdir", "/scratch/semhpc/tiffs")
            self.run("mv", *[f"/scratch/semhpc/all/{category}" for category in CATEGORIES], "/scratch/semhpc/tiffs")
            self.semhpc("/scratch/semhpc", "ingest", "tiffs", DATA, "--size", "64x48", "--shards-per-split", "2")
        return DATA

    # -- a site's names -----------------------------------------------------------------------
    def add_slurm_names(self, partitions: dict[str, str], qos: set[str], accounts: set[str]) -> None:
        """Slurm partitions (name -> MaxTime) on node1 and node2, QOS, and accounts the user
        semhpc belongs to with every QOS: a site's names on the testbed's nodes, so that sbatch
        checks a site profile's directives against them. Names already there are kept."""
        for name, max_time in sorted(partitions.items()):
            if self.run("scontrol", "show", "partition", name, root=True, check=False).returncode != 0:
                self.run("scontrol", "create", f"PartitionName={name}", "Nodes=node[1-2]", f"MaxTime={max_time}",
                         "State=UP", root=True)
        known_qos = set(self._sacctmgr_list("qos", "name"))
        for name in sorted(qos - known_qos):
            self.run("sacctmgr", "--immediate", "add", "qos", name, root=True)
        every_qos = ",".join(sorted(qos | known_qos))
        known_accounts = set(self._sacctmgr_list("account", "account"))
        for name in sorted(accounts - known_accounts):
            self.run("sacctmgr", "--immediate", "add", "account", name, "Cluster=testbed", root=True)
        for name in sorted(accounts):
            self.run("sacctmgr", "--immediate", "add", "user", "semhpc", f"Account={name}", "Cluster=testbed",
                     f"QOS={every_qos}", root=True, check=False)  # the association may exist already
            self.run("sacctmgr", "--immediate", "modify", "user", "where", "name=semhpc", f"account={name}", "set",
                     f"QOS={every_qos}", root=True, check=False)  # "nothing modified" when it has them

        def controller_knows_them():  # slurmdbd pushes associations to slurmctld a moment later
            out = self.run("scontrol", "show", "assoc_mgr", "users=semhpc", "flags=assoc", root=True).stdout
            return all(f"Account={name} UserName=semhpc(" in out for name in accounts)
        self.wait_for(controller_knows_them, 60, f"slurmctld to know the accounts {sorted(accounts)}")

    def _sacctmgr_list(self, entity: str, field: str) -> list[str]:
        out = self.run("sacctmgr", "--noheader", "--parsable2", "list", entity, f"format={field}", root=True)
        return out.stdout.split()

    def add_pbs_queues(self, queues: dict[str, str]) -> None:
        """PBS execution queues (name -> resources_max.walltime), enabled and started; existing ones are kept."""
        for name, max_walltime in sorted(queues.items()):
            if self.run("qmgr", "-c", f"list queue {name}", root=True, check=False).returncode != 0:
                self.run("qmgr", "-c", f"create queue {name} queue_type=execution,enabled=true,started=true,"
                         f"resources_max.walltime={max_walltime}", root=True)

    # -- scheduler views -----------------------------------------------------------------------
    def slurm_state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", job_id, "--oneliner", check=False).stdout
        fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
        return fields.get("JobState", "UNKNOWN")

    def pbs_job(self, job_id: str) -> dict:
        """qstat -x -f of one job (job_state, Exit_status, exec_host ...), {} when PBS does not know it."""
        out = self.run("qstat", "-x", "-f", "-F", "json", job_id, check=False).stdout
        jobs = json.loads(out or "{}").get("Jobs", {})
        return next(iter(jobs.values()), {})

    def wait_for(self, condition, timeout: float, what: str, every: float = 1.0):
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}"
            time.sleep(every)
        return result

    def logs(self) -> str:
        """The schedulers' logs, for assertion messages."""
        parts = []
        for node, files in (("head", "/var/log/slurm/slurmctld.log"), ("node1", "/var/log/slurm/slurmd.log"),
                            ("node2", "/var/log/slurm/slurmd.log")):
            out = self.run("tail", "-n", "15", files, node=node, root=True, check=False)
            parts.append(f"== {node}:{files}\n{out.stdout}")
        return "\n".join(parts)
