"""`semhpc submit / jobs / cancel` on a real one-node Slurm (tests/slurm_cluster.py): a 2-rank Horovod
training runs to completion through the local-slurm profile (host mpirun) and through a copy of it
whose ranks start with `srun --mpi=pmix`, and a JupyterLab job answers on the port it announces
with its token and refuses requests without it."""

import re
import stat
import time
import urllib.error
import urllib.request

import pytest
import yaml

from cli_runs import semhpc_ok, synth_and_ingest
from semhpc.hpc import SHIPPED_DIR
from semhpc.utils.metrics_log import read_metrics
from slurm_cluster import SlurmCluster, missing_binaries

pytestmark = pytest.mark.slow

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = missing_binaries()
    assert not missing, f"{', '.join(missing)} not found: scripts/bootstrap.sh --test installs slurm-wlm and munge"
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def semhpc(slurm, workdir, *args, timeout=600):
    """Run `semhpc ARGS` in `workdir` against the test cluster, with the job registry beside it."""
    return semhpc_ok(*args, cwd=workdir, timeout=timeout,
                     env={"SLURM_CONF": str(slurm.conf), "SEMHPC_HOME": str(workdir / "semhpc-home")})


def submitted_id(stdout):
    """The job id from `semhpc submit`'s line `job ID  KIND on CLUSTER: ...`."""
    match = re.match(r"job (\S+)  ", stdout)
    assert match, stdout
    return match.group(1)


def jobs_row(slurm, workdir, job_id):
    rows = [line.split() for line in semhpc(slurm, workdir, "jobs").splitlines()[1:]]
    return next((row for row in rows if row[0] == job_id), None)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A config for a one-epoch DenseNet-28 run on 80 synthetic 64x48 images (run dir: ./run)."""
    root = tmp_path_factory.mktemp("slurm-data")
    synth_and_ingest(root)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": str(root / "data"), "image_size": 32, "augment": False},
        "model": {"name": "densenet28"}, "train": {"epochs": 1, "batch_size": 4}}))
    return config


@pytest.fixture
def cluster_profile(request, tmp_path, monkeypatch):
    """local-slurm, or (param "srun") a copy of it whose ranks start with `srun --mpi=pmix`."""
    if request.param == "mpirun":
        return "local-slurm"
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / "local-slurm.yaml").read_text())
    data["execution"]["launcher"] = "srun"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "local-srun.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SEMHPC_CLUSTERS", str(tmp_path / "profiles"))
    return "local-srun"


@pytest.mark.mpi
@pytest.mark.parametrize("cluster_profile", ["mpirun", "srun"], indirect=True)
def test_train_job_runs_2_rank_horovod_training_to_completion(slurm, tiny_config, cluster_profile, tmp_path):
    job_id = submitted_id(semhpc(slurm, tmp_path, "submit", "--cluster", cluster_profile, "--job", "train", "--",
                                 "--config", str(tiny_config)))
    row = wait_for(lambda: (r := jobs_row(slurm, tmp_path, job_id)) and r[4] == "RUNNING" and r, 120,
                   "`semhpc jobs` to show the job running")
    assert row[1:4] == [cluster_profile, "train", "semhpc-train"]

    state = slurm.wait_for_state(job_id, ENDED, timeout=900)
    log = tmp_path / "semhpc-jobs" / f"semhpc-train-{job_id}.log"
    assert state == "COMPLETED", log.read_text()[-4000:]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")  # relative run.dir: the submit directory
    assert [r["ranks"] for r in records if r["kind"] == "start"] == [2]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
    assert f"semhpc job {job_id} on " in log.read_text()


def http_status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_jupyter_job_answers_with_its_token_and_refuses_without(slurm, tmp_path):
    job_id = submitted_id(semhpc(slurm, tmp_path, "submit", "--cluster", "local-slurm", "--job", "jupyter"))
    info = tmp_path / f"jupyter-{job_id}.txt"
    text = wait_for(lambda: info.is_file() and "then open" in info.read_text() and info.read_text(), 120,
                    f"{info} to be written")
    port, token = re.search(r"http://localhost:(\d+)/lab\?token=(\w+)", text).groups()
    assert re.search(rf"ssh -N -L {port}:\S+:{port} \S+@\S+", text)
    log = tmp_path / "semhpc-jobs" / f"semhpc-jupyter-{job_id}.log"
    assert text in log.read_text()  # the same instructions are in the job log
    assert [oct(stat.S_IMODE(path.stat().st_mode) & 0o077) for path in (info, log)] == ["0o0", "0o0"]  # private

    api = f"http://127.0.0.1:{port}/api/contents"
    wait_for(lambda: _answers(api), 120, "JupyterLab to listen")
    assert http_status(f"{api}?token={token}") == 200
    assert http_status(api, {"Authorization": f"token {token}"}) == 200
    assert http_status(api) == 403
    assert http_status(f"{api}?token=not-{token}") == 403
    assert jobs_row(slurm, tmp_path, job_id)[4] == "RUNNING"

    assert semhpc(slurm, tmp_path, "cancel", job_id).startswith(f"cancelled job {job_id}")
    assert slurm.wait_for_state(job_id, ENDED, timeout=60) == "CANCELLED"


def _answers(url):
    try:
        http_status(url)
        return True
    except OSError:  # not listening yet
        return False
