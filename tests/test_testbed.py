"""`semhpc submit / jobs / cancel` on the multi-node test cluster (hpc/testbed/): real Slurm with
accounting and real OpenPBS, a head node and two one-core compute nodes in Docker containers.

A DenseNet-28 training runs on two nodes, one rank each, through the testbed-slurm profile
(host mpirun, and `srun --mpi=pmix`) and the testbed-pbs profile (mpirun over ssh on the hosts
of $PBS_NODEFILE): the ranks ran on two different hosts, ended with identical replicas and
learned. `semhpc jobs` shows a running job of each scheduler and `semhpc cancel` ends it; a
partition or QOS the scheduler does not have is refused in one line by `semhpc submit`.
Everything runs as the non-root user on the login (head) node.
"""

import json
import re

import pytest
import yaml

from semhpc.hpc import SHIPPED_DIR

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.mpi]

DATA = "/scratch/semhpc/data"
PROFILES = "/home/semhpc/profiles"
CLASSES = 10  # semhpc synth's categories: chance accuracy is 1/10


@pytest.fixture(scope="module")
def dataset(testbed):
    """80 synthetic 64x48 SEM images ingested into the shared /scratch (on the login node)."""
    if not testbed.exists(f"{DATA}/manifest.json"):
        testbed.semhpc("/scratch/semhpc", "synth", "tiffs", "--per-class", "12", "--size", "64x48", "--seed", "3")
        testbed.semhpc("/scratch/semhpc", "ingest", "tiffs", DATA, "--size", "64x48", "--shards-per-split", "2")
    return DATA


def write_config(testbed, workdir, epochs):
    """A DenseNet-28 run on `dataset` at 32 px (run dir: ./run in the submit directory)."""
    config = f"{workdir}/train.yaml"
    testbed.write_text(config, yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": DATA, "image_size": 32, "augment": False},
        "model": {"name": "densenet28"},
        "train": {"epochs": epochs, "batch_size": 8, "optimizer": "adam", "lr": 0.002, "lr_decay": 0.85,
                  "num_epochs_per_decay": 1}}))
    return config


def profile_variant(testbed, shipped, name, **changes):
    """A copy of a shipped testbed profile in the user's profile folder with `changes` (section.key=value)."""
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / f"{shipped}.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path = f"{PROFILES}/{name}.yaml"
    testbed.write_text(path, yaml.safe_dump(data))
    return path


def submitted_id(stdout):
    """The job id from `semhpc submit`'s line `job ID  KIND on CLUSTER: ...`."""
    match = re.match(r"job (\S+)  ", stdout)
    assert match, stdout
    return match.group(1)


def jobs_row(testbed, workdir, job_id):
    rows = [line.split() for line in testbed.semhpc(workdir, "jobs").stdout.splitlines()[1:]]
    return next((row for row in rows if row[0] == job_id), None)


def job_ended(testbed, scheduler, job_id):
    """The job's final state once it has ended ('COMPLETED'/'FAILED'... or PBS 'exit N'), else None."""
    if scheduler == "slurm":
        state = testbed.slurm_state(job_id)
        return state if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"} else None
    job = testbed.pbs_job(job_id)
    return f"exit {job.get('Exit_status')}" if job.get("job_state") == "F" else None


LAUNCHES = {  # test id -> (shipped profile, launcher)
    "slurm-mpirun": ("testbed-slurm", "mpirun"),
    "slurm-srun": ("testbed-slurm", "srun"),
    "pbs-mpirun": ("testbed-pbs", "mpirun"),
}


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_train_job_runs_one_rank_on_each_of_two_nodes(testbed, dataset, launch):
    shipped, launcher = LAUNCHES[launch]
    workdir = f"/home/semhpc/train-{launch}"
    cluster = shipped if launcher == "mpirun" else profile_variant(testbed, shipped, f"{shipped}-{launcher}",
                                                                   execution__launcher=launcher)
    config = write_config(testbed, workdir, epochs=6)
    out = testbed.semhpc(workdir, "submit", "--cluster", cluster, "--job", "train", "--nodes", "2", "--",
                         "--config", config)
    job_id = submitted_id(out.stdout)
    scheduler = "pbs" if shipped.endswith("pbs") else "slurm"
    ended = testbed.wait_for(lambda: job_ended(testbed, scheduler, job_id), 900, f"{launch} job {job_id}", every=3)
    log = testbed.read_text(out.stdout.split(" log ")[-1].strip())
    assert ended in ("COMPLETED", "exit 0"), log[-4000:]

    records = [json.loads(line) for line in testbed.read_text(f"{workdir}/run/metrics.jsonl").splitlines()]
    (start,) = [r for r in records if r["kind"] == "start"]
    assert start["ranks"] == 2 and sorted(start["hosts"]) == ["node1", "node2"], start
    result = json.loads(testbed.read_text(f"{workdir}/run/test_metrics.json"))
    fingerprints = result["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert result["accuracy"] > 3 / CLASSES, result  # chance is 1/10
    assert json.loads(testbed.read_text(f"{workdir}/run/status.json"))["state"] == "finished"
    assert f"semhpc job {job_id} on node1" in log  # the batch script ran on the first compute node


@pytest.mark.parametrize("shipped", ["testbed-slurm", "testbed-pbs"])
def test_jobs_lists_a_running_job_and_cancel_ends_it(testbed, dataset, shipped):
    workdir = f"/home/semhpc/cancel-{shipped}"
    config = write_config(testbed, workdir, epochs=500)
    job_id = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", shipped, "--job", "train", "--nodes",
                                         "2", "--", "--config", config).stdout)
    row = testbed.wait_for(lambda: (r := jobs_row(testbed, workdir, job_id)) and r[4] == "RUNNING" and r, 300,
                           f"`semhpc jobs` to show job {job_id} running", every=2)
    assert row[1:4] == [shipped, "train", "semhpc-train"]
    # PBS ids carry the server's name (12.head); the number alone is enough to cancel.
    typed = job_id.split(".")[0]
    if shipped == "testbed-pbs":
        assert job_id.endswith(".head") and typed != job_id
    assert testbed.semhpc(workdir, "cancel", typed).stdout.startswith(f"cancelled job {job_id}")
    scheduler = "pbs" if shipped.endswith("pbs") else "slurm"
    ended = testbed.wait_for(lambda: job_ended(testbed, scheduler, job_id), 120, f"job {job_id} to end")
    assert ended != "exit 0" and ended != "COMPLETED"
    if scheduler == "slurm":
        assert ended == "CANCELLED"
    assert not testbed.exists(f"{workdir}/run/test_metrics.json")


@pytest.mark.parametrize("shipped, change, refusal", [
    ("testbed-slurm", {"scheduler__cpu_queue": "tb_usr_nope"}, "Invalid partition name specified"),
    ("testbed-slurm", {"scheduler__qos": "tb_qos_nope"}, "Invalid qos specification"),
    ("testbed-pbs", {"scheduler__cpu_queue": "nope"}, "Unknown queue"),
])
def test_a_partition_or_qos_the_scheduler_lacks_is_refused_in_one_line(testbed, dataset, shipped, change, refusal):
    workdir = "/home/semhpc/refused"
    cluster = profile_variant(testbed, shipped, "refused", **change)
    config = write_config(testbed, workdir, epochs=1)
    out = testbed.semhpc(workdir, "submit", "--cluster", cluster, "--job", "train", "--nodes", "2", "--",
                         "--config", config, check=False)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and refusal in lines[0], out.stderr
