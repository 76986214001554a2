"""`semhpc submit / jobs / cancel` on the multi-node test cluster (hpc/testbed/): real Slurm with
accounting and real OpenPBS, a head node and two one-core compute nodes in Docker containers.

A DenseNet-28 training runs on two nodes, one rank each, through the testbed-slurm profile
(host mpirun, and `srun --mpi=pmix`) and the testbed-pbs profile (mpirun over ssh on the hosts
of $PBS_NODEFILE): the ranks ran on two different hosts, ended with identical replicas and
learned; the same again in container mode, each rank in the semhpc image through Charliecloud's
ch-run, under Slurm and under PBS. `semhpc jobs` shows a running job of each scheduler and
`semhpc cancel` ends it; a partition or QOS the scheduler does not have is refused in one line by
`semhpc submit`. With every shipped site profile's partitions, QOS, accounts and PBS queues added to
the testbed, sbatch --test-only and qsub -h accept every job kind of every shipped profile, scaled
to a node.
Everything runs as the non-root user on the login (head) node.
"""

import json
import os
import re
import time

import pytest
import yaml

from semhpc.hpc import SHIPPED_DIR
from testbed_cluster import CATEGORIES, DATA

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.mpi]

# A dead node ends its job within Slurm's SlurmdTimeout (30 s) plus KillWait, or Horovod's stall
# shutdown (120 s, semhpc.runtime.launcher.FAILURE_ENV), whichever comes first; with margin.
STALL_WINDOW = 240
PROFILES = "/home/semhpc/profiles"


def write_config(testbed, workdir, epochs):
    """A DenseNet-28 run on the testbed's dataset (testbed_data) at 32 px (run dir: ./run in the submit directory)."""
    config = f"{workdir}/train.yaml"
    testbed.write_text(config, yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": DATA, "image_size": 32, "augment": False},
        "model": {"name": "densenet28"},
        "train": {"epochs": epochs, "batch_size": 8, "optimizer": "adam", "lr": 0.002, "lr_decay": 0.8,
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


def train_on_two_nodes(testbed, cluster, scheduler, workdir):
    """Submit a 10-epoch training on 2 nodes with `cluster`, wait for it, and check that it ran one
    rank on each node, ended with identical replicas and learned; the job script's text."""
    config = write_config(testbed, workdir, epochs=10)
    out = testbed.semhpc(workdir, "submit", "--cluster", cluster, "--job", "train", "--nodes", "2", "--",
                         "--config", config)
    job_id = submitted_id(out.stdout)
    ended = testbed.wait_for(lambda: job_ended(testbed, scheduler, job_id), 900, f"{cluster} job {job_id}", every=3)
    log = testbed.read_text(out.stdout.split(" log ")[-1].strip())
    assert ended in ("COMPLETED", "exit 0"), log[-4000:]

    records = [json.loads(line) for line in testbed.read_text(f"{workdir}/run/metrics.jsonl").splitlines()]
    (start,) = [r for r in records if r["kind"] == "start"]
    assert start["ranks"] == 2 and sorted(start["hosts"]) == ["node1", "node2"], start
    result = json.loads(testbed.read_text(f"{workdir}/run/test_metrics.json"))
    fingerprints = result["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert result["accuracy"] >= 2 / len(CATEGORIES), result  # twice chance
    assert json.loads(testbed.read_text(f"{workdir}/run/status.json"))["state"] == "finished"
    assert f"semhpc job {job_id} on node1" in log  # the batch script ran on the first compute node
    return testbed.run("sh", "-c", f"cat {workdir}/semhpc-jobs/*.sh").stdout  # the one job of `workdir`


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_train_job_runs_one_rank_on_each_of_two_nodes(testbed, testbed_data, launch):
    shipped, launcher = LAUNCHES[launch]
    cluster = shipped if launcher == "mpirun" else profile_variant(testbed, shipped, f"{shipped}-{launcher}",
                                                                   execution__launcher=launcher)
    train_on_two_nodes(testbed, cluster, "pbs" if shipped.endswith("pbs") else "slurm", f"/home/semhpc/train-{launch}")


@pytest.fixture(scope="module")
def image_on_nodes(testbed):
    """The semhpc image the nodes are built on, converted for Charliecloud, as the nodes see it
    (tests/hpc_runtime.py converts it once per image id into the folder mounted at /images)."""
    from hpc_runtime import charliecloud_image

    folder, _ = charliecloud_image(os.environ.get("SEMHPC_TESTBED_BASE", "semhpc:cpu"))
    return f"/images/{folder.name}"


# Under PBS the ranks join mpirun's session folder because container jobs move TMPDIR to /tmp
# (hpc/runtimes.yaml `tmpdir`): PBS's per-job /var/tmp/pbs.JOBID is not in the image.
@pytest.mark.parametrize("shipped", ["testbed-slurm", "testbed-pbs"])
def test_train_job_ranks_run_in_the_image_through_charliecloud(testbed, testbed_data, image_on_nodes, shipped):
    """Container mode on two nodes: the host's mpirun starts each rank as `ch-run IMAGE -- python`
    (the hybrid model), as the user, with the scratch volume bound into the image."""
    cluster = profile_variant(testbed, shipped, f"{shipped}-charliecloud", execution__mode="container",
                              execution__runtime="charliecloud", execution__image=image_on_nodes,
                              paths__data="", paths__scratch="/scratch")
    script = train_on_two_nodes(testbed, cluster, "pbs" if shipped.endswith("pbs") else "slurm",
                                f"/home/semhpc/train-{shipped}-charliecloud")
    assert "SEMHPC_RUNTIME=ch-run" in script and f"SEMHPC_IMAGE={image_on_nodes}" in script
    assert "--bind=/scratch" in script


@pytest.mark.parametrize("shipped", ["testbed-slurm", "testbed-pbs"])
def test_jobs_lists_a_running_job_and_cancel_ends_it(testbed, testbed_data, shipped):
    workdir = f"/home/semhpc/cancel-{shipped}"
    config = write_config(testbed, workdir, epochs=500)
    job_id = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", shipped, "--job", "train", "--nodes",
                                         "2", "--", "--config", config).stdout)
    row = testbed.wait_for(lambda: (r := jobs_row(testbed, workdir, job_id)) and r[4] == "RUNNING" and r, 300,
                           f"`semhpc jobs` to show job {job_id} running", every=2)
    assert row[1:4] == [shipped, "train", "semhpc-train"]
    # PBS ids carry the server's name (12.head); the number alone is enough to cancel (with
    # --cluster: a Slurm job of the same number would otherwise be the one meant).
    typed = job_id.split(".")[0]
    if shipped == "testbed-pbs":
        assert job_id.endswith(".head") and typed != job_id
    out = testbed.semhpc(workdir, "cancel", "--cluster", shipped, typed).stdout
    assert out.startswith(f"cancelled job {job_id} ")
    scheduler = "pbs" if shipped.endswith("pbs") else "slurm"
    ended = testbed.wait_for(lambda: job_ended(testbed, scheduler, job_id), 120, f"job {job_id} to end")
    assert ended != "exit 0" and ended != "COMPLETED"
    if scheduler == "slurm":
        assert ended == "CANCELLED"
    assert not testbed.exists(f"{workdir}/run/test_metrics.json")


@pytest.mark.parametrize("shipped, change, refusal", [
    ("testbed-slurm", {"scheduler__cpu_queue": "tb_usr_nope"}, "Invalid partition name specified"),
    # A site profile (scaled to a testbed node) whose partition has a typo: the site's other names exist.
    ("leonardo-dcgp", {"scheduler__cpu_queue": "dcgp_usr_prd", "node__cores": 1, "node__cpu_ranks": 1,
                       "node__memory_gb_per_core": 1}, "Invalid partition name specified"),
    ("testbed-slurm", {"scheduler__qos": "tb_qos_nope"}, "Invalid qos specification"),
    ("testbed-pbs", {"scheduler__cpu_queue": "nope"}, "Unknown queue"),
])
def test_a_partition_or_qos_the_scheduler_lacks_is_refused_in_one_line(testbed, testbed_data, site_profiles, shipped,
                                                                       change, refusal):
    workdir = "/home/semhpc/refused"
    cluster = profile_variant(testbed, shipped, "refused", **change)
    config = write_config(testbed, workdir, epochs=1)
    out = testbed.semhpc(workdir, "submit", "--cluster", cluster, "--job", "train", "--nodes", "2", "--",
                         "--config", config, check=False)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and refusal in lines[0], out.stderr


# What a compute node of the testbed has (hpc/testbed/slurm.conf: 1 CPU, RealMemory 2 GB, one
# declared GPU): a site profile is scaled to it before its jobs are rendered.
TESTBED_NODE = {"cores": 1, "gpus": 1, "memory_gb": 1}


def shipped_profiles():
    """Every profile in hpc/clusters/, the historical ones included (loaded by path)."""
    from semhpc.hpc.profiles import load_profile

    return [load_profile(str(path)) for path in sorted((SHIPPED_DIR / "clusters").rglob("*.yaml"))]


def scaled_to_the_testbed(profile):
    """`profile` with its nodes shrunk to a testbed node: one core and one rank, one GPU if it has
    usable ones, 1 GB per GPU, per core or per node; a jupyter job at most one core and 1 GB.
    Everything the scheduler checks by name (partitions, QOS, account, walltimes, directives)
    stays the site's."""
    import dataclasses
    from types import SimpleNamespace

    node = vars(profile.node)
    small = {"cores": TESTBED_NODE["cores"], "cpu_ranks": 1, "gpus": min(node["gpus"], TESTBED_NODE["gpus"])}
    for key in ("memory_gb", "memory_gb_per_gpu", "memory_gb_per_core"):
        small[key] = min(node[key], TESTBED_NODE["memory_gb"])
    jupyter = {"cores": min(profile.jupyter.cores, TESTBED_NODE["cores"]),
               "memory_gb": min(profile.jupyter.memory_gb, TESTBED_NODE["memory_gb"])}
    return dataclasses.replace(profile, node=SimpleNamespace(**{**node, **small}),
                               jupyter=SimpleNamespace(**{**vars(profile.jupyter), **jupyter}))


@pytest.fixture(scope="module")
def site_profiles(testbed):
    """The shipped profiles, with their partitions, QOS and accounts (Slurm) and queues (PBS)
    added to the testbed on its two nodes, each with the longest walltime a profile allows."""
    from semhpc.hpc.resources import parse_walltime

    profiles = shipped_profiles()
    partitions, queues, qos, accounts = {}, {}, {"normal"}, set()
    for profile in profiles:
        sched = profile.scheduler
        names = partitions if sched.type == "slurm" else queues
        walltime = sched.max_walltime or "24:00:00"
        seconds = parse_walltime(walltime, f"{profile.name}: scheduler.max_walltime")
        for queue in {sched.cpu_queue, sched.gpu_queue} - {""}:
            if queue not in names or seconds > parse_walltime(names[queue], queue):
                names[queue] = walltime
        qos |= {sched.qos} - {""}
        accounts |= {sched.account} - {""}
    testbed.add_slurm_names(partitions, qos, accounts)
    testbed.add_pbs_queues(queues)
    return profiles


def test_every_job_kind_of_every_shipped_profile_is_accepted_by_its_scheduler(testbed, site_profiles):
    """Scaled to the testbed's nodes, every job kind of every shipped profile (on its GPU
    partition too, when its GPUs are usable) is accepted: sbatch --test-only (Slurm), or qsub -h
    then qdel (PBS), against the site's own partition, QOS, account and queue names."""
    from semhpc.hpc.render import render_job
    from semhpc.hpc.resources import JOB_KINDS, plan_resources

    names = {p.name for p in site_profiles}
    assert {"leonardo-booster", "leonardo-dcgp", "galileo100", "c3hpc", "galileo", "marconi-a2",
            "testbed-slurm", "testbed-pbs"} <= names
    workdir = "/home/semhpc/accepted"
    asked_for_gpus = set()
    for profile in map(scaled_to_the_testbed, site_profiles):
        for kind in JOB_KINDS:
            nodes = 1 if JOB_KINDS[kind].single_process else 2
            plan = plan_resources(profile, kind, nodes=nodes)
            script = f"{workdir}/{profile.name}-{kind}.sh"
            testbed.write_text(script, render_job(profile, kind, plan, name=f"accept-{kind}", args=[],
                                                  log=f"{workdir}/{kind}.log"))
            what = f"{profile.name} {kind} on {plan.queue or 'the default queue'}"
            if plan.gpus_per_node:
                asked_for_gpus.add(profile.name)
            if profile.scheduler.type == "slurm":
                out = testbed.run("sbatch", "--test-only", script, workdir=workdir, check=False)
                assert out.returncode == 0 and "to start at" in out.stderr, f"{what}: {out.stderr}"
            else:
                job_id = testbed.run("qsub", "-h", script, workdir=workdir).stdout.strip()
                assert testbed.pbs_job(job_id)["job_state"] == "H", what
                testbed.run("qdel", job_id)
    # The profiles whose GPUs the image can use had their GPU jobs checked (--gres on the GPU partition).
    assert asked_for_gpus == {"leonardo-booster", "galileo100", "generic-slurm"}


def test_a_dead_node_fails_the_job_in_bounded_time_and_resume_finishes_the_run(testbed, testbed_data):
    """node2 is `docker kill`ed mid-run: the job ends within the stall window, status.json says
    failed; with node2 back, `--resume` finishes with every step logged exactly once."""
    workdir = "/home/semhpc/dead-node"
    config = f"{workdir}/train.yaml"
    testbed.write_text(config, yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": DATA, "image_size": 32, "augment": False},
        "model": {"name": "densenet28"},
        "train": {"epochs": 3, "batch_size": 8, "log_every": 1, "checkpoint_every": 2}}))
    job_id = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", "train",
                                         "--nodes", "2", "--", "--config", config).stdout)

    def steps():
        path = f"{workdir}/run/metrics.jsonl"
        lines = testbed.read_text(path).splitlines() if testbed.exists(path) else []
        return [json.loads(line) for line in lines if line.strip()]

    start = testbed.wait_for(lambda: next((r for r in steps() if r["kind"] == "start"), None), 600, "the start")
    per_epoch = start["steps_per_epoch"]
    testbed.wait_for(lambda: sum(r["kind"] == "step" for r in steps()) >= per_epoch + 3, 600,
                     "mid-epoch 2, past a checkpoint")
    killed = time.monotonic()
    testbed.kill("node2")
    ended = testbed.wait_for(lambda: job_ended(testbed, "slurm", job_id), STALL_WINDOW, "the job to end")
    ended_after = time.monotonic() - killed
    assert ended in ("FAILED", "NODE_FAIL", "CANCELLED"), ended
    status = json.loads(testbed.read_text(f"{workdir}/run/status.json"))
    assert status["state"] == "failed", status
    print(f"node2 killed: job {ended} after {ended_after:.0f} s")  # shown with -s; benchmarks/multinode.py measures it

    testbed.start("node2")
    resumed = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", "train",
                                          "--nodes", "2", "--", "--resume", "run").stdout)
    ended = testbed.wait_for(lambda: job_ended(testbed, "slurm", resumed), 900, f"resumed job {resumed}", every=3)
    assert ended == "COMPLETED", testbed.read_text(f"{workdir}/semhpc-jobs/semhpc-train-{resumed}.log")[-4000:]
    records = steps()
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 3 * per_epoch + 1))
    assert [r["kind"] for r in records].count("resume") == 1
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    assert json.loads(testbed.read_text(f"{workdir}/run/status.json"))["state"] == "finished"


def test_ingest_and_classify_jobs_share_the_images_between_ranks_on_both_nodes(testbed, testbed_data):
    """Two ranks on two hosts; every image converted / classified exactly once."""
    workdir = "/home/semhpc/convert"
    tiffs = "/scratch/semhpc/tiffs"
    images = int(testbed.run("sh", "-c", f"find {tiffs} -name '*.tif*' | wc -l").stdout)

    def run_job(kind, *args):
        job_id = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", kind,
                                             "--nodes", "2", "--", *args).stdout)
        ended = testbed.wait_for(lambda: job_ended(testbed, "slurm", job_id), 900, f"{kind} job {job_id}", every=2)
        assert ended == "COMPLETED", testbed.read_text(f"{workdir}/semhpc-jobs/semhpc-{kind}-{job_id}.log")[-4000:]

    run_job("ingest", tiffs, f"{workdir}/data", "--size", "64x48", "--shards-per-split", "4")
    manifest = json.loads(testbed.read_text(f"{workdir}/data/manifest.json"))
    assert sum(sum(counts.values()) for counts in manifest["counts"].values()) == images
    shards = [json.loads(testbed.read_text(path)) for path in
              testbed.run("sh", "-c", f"ls {workdir}/data/.ingest/*.json").stdout.split()]
    assert {shard["host"] for shard in shards} == {"node1", "node2"}
    assert sum(sum(shard["counts"].values()) for shard in shards) == images

    # A model to classify with: one epoch on the login node is enough for the bookkeeping.
    testbed.semhpc(workdir, "train", "--set", f"data.dir={DATA}", "--set", "run.dir=model-run", "--set",
                   "model.name=densenet28", "--set", "data.image_size=32", "--set", "train.epochs=1", timeout=900)
    testbed.semhpc(workdir, "export", "model-run", "bundle")
    run_job("classify", "--model", "bundle", "--input", tiffs, "--out", "classified", "--batch-size", "8")
    throughput = json.loads(testbed.read_text(f"{workdir}/classified/throughput.json"))
    assert sorted(rank["host"] for rank in throughput["per_rank"]) == ["node1", "node2"]
    assert all(rank["images"] > 0 for rank in throughput["per_rank"])
    assert sum(rank["images"] for rank in throughput["per_rank"]) == images
    rows = testbed.read_text(f"{workdir}/classified/predictions.csv").splitlines()[1:]
    assert len(rows) == len({row.split(",")[0] for row in rows}) == images
