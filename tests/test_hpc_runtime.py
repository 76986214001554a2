"""The cpu image under an unprivileged HPC container runtime, for real: Charliecloud as a non-root user.

The image is built with containers/build.sh (warm after tests/test_containers.py), converted once
per image id with ch-convert (tests/hpc_runtime.py), and run as the user `semhpc-ch` with the
words of hpc/runtimes.yaml: `semhpc doctor` inside, the host's mpirun starting 2 ranks in the image
(the hybrid model Apptainer sites use) for the doctor's MPI pairing and for training, and the
module's `semhpc` wrapper in container mode (ansible/roles/semhpc_module).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_runs import apply_roles, changed_tasks
from hpc_runtime import as_user, charliecloud_image, json_of, runtime_user, user_workdir
from semhpc.hpc.runtimes import container_runtime
from semhpc.runtime.launcher import mpirun_command
from semhpc.runtime.stack import mpirun_version, pmix_version
from semhpc.utils.metrics_log import read_metrics

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHARLIECLOUD = container_runtime("charliecloud")


@pytest.fixture(scope="module")
def image(docker_daemon, tmp_path_factory):
    """The Charliecloud image folder of the cpu image containers/build.sh makes."""
    assert shutil.which("ch-run") and shutil.which("ch-convert"), "Charliecloud not found: apt-get install charliecloud"
    site_ca = ["--site-ca", "/etc/ssl/certs/ca-certificates.crt"] if Path("/etc/ssl/certs/ca-certificates.crt").exists() else []
    out = tmp_path_factory.mktemp("build")
    build = subprocess.run([str(ROOT / "containers" / "build.sh"), "--flavor", "cpu", "--local-base", *site_ca,
                            "--no-archive", "--out", str(out)], capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stderr[-5000:]
    folder, _ = charliecloud_image(build.stdout.strip().splitlines()[-1])
    return folder


@pytest.fixture(scope="module")
def user():
    return runtime_user()


def in_image(image, *command):
    """ch-run with the table's words (no binds: ch-run shares the host's /tmp) and `command`."""
    return [CHARLIECLOUD.program, *CHARLIECLOUD.options([], gpus=False), str(image), "--", *command]


def test_the_image_environment_is_the_dockerfiles(image):
    """ch-convert saved the Docker ENV that --set-env applies: the venv first on PATH, the defaults."""
    env = dict(line.split("=", 1) for line in (image / "ch" / "environment").read_text().splitlines() if line)
    assert env["PATH"].startswith("/opt/semhpc/venv/bin:") and env["VIRTUAL_ENV"] == "/opt/semhpc/venv"
    assert (env["PYTHONNOUSERSITE"], env["HOROVOD_CYCLE_TIME"]) == ("1", "5")


def test_doctor_in_charliecloud_as_a_user(image, user):
    workdir = user_workdir(user, "doctor")
    out = as_user(user, ["bash", "-c", 'cd "$1" && exec "${@:2}"', "-", str(workdir),
                         *[word.replace("${PWD}", str(workdir)) for word in in_image(image, "semhpc", "doctor", "--json")]],
                  cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json_of(out)
    assert report["ok"] is True and report["container"] == "charliecloud"
    assert report["horovod_mpi"] and re.fullmatch(r"\d+\.\d+\.\d+\w*", report["pmix"])
    assert report["mpi_pairing"] == "not started by a host MPI launcher" and report["warnings"] == []
    shutil.rmtree(workdir)


def host_mpirun(image, ranks, semhpc_args, workdir, exports=()):
    """The launcher's tuned mpirun line (semhpc.runtime.launcher) with ch-run as each rank's Python."""
    cmd = mpirun_command(ranks, semhpc_args, python="\0python")
    at = cmd.index("\0python")
    words = [word.replace("${PWD}", str(workdir)) for word in CHARLIECLOUD.command(str(image), [], gpus=False)]
    return [*cmd[:at], *[w for name in exports for w in ("-x", name)], *words, *cmd[at + 1:]]


@pytest.mark.mpi
@pytest.mark.parametrize("host_version, verdict", [(None, "match"), ("mpirun (Open MPI) 4.0.7", "MISMATCH")])
def test_doctor_as_ranks_of_the_host_mpirun_reports_the_pairing(image, user, host_version, verdict):
    """The host's mpirun starts 2 ranks in the image; each reports the host's Open MPI and PMIx
    beside its own. A host of another release series (4.0.x) is a MISMATCH with its reason."""
    workdir = user_workdir(user, "pairing")
    host_version = host_version or mpirun_version()
    out = as_user(user, host_mpirun(image, 2, ["doctor", "--json"], workdir, ["SEMHPC_HOST_MPI_VERSION"]),
                  cwd=workdir, env={"SEMHPC_HOST_MPI_VERSION": host_version})
    reports = [json.loads(part) for part in re.findall(r"^\{.*?^\}", out.stdout, re.M | re.S)]
    assert len(reports) == 2, out.stdout[-3000:] + out.stderr[-3000:]
    host = re.search(r"\d+(\.\d+)+", host_version).group(0)
    image_mpi = re.search(r"\d+(\.\d+)+", reports[0]["mpirun"]).group(0)
    for report in reports:
        assert report["container"] == "charliecloud" and report["host_pmix"] == pmix_version()
        assert report["mpi_pairing"] == (f"host Open MPI {host} / PMIx {pmix_version()} with Open MPI {image_mpi} / "
                                         f"PMIx {report['pmix']} here: {verdict}")
    if verdict == "MISMATCH":
        assert len(reports[0]["warnings"]) == 1 and "different release series (4.0.x vs 4.1.x)" in reports[0]["warnings"][0]
    else:
        assert out.returncode == 0 and reports[0]["warnings"] == []
    shutil.rmtree(workdir)


PREPARE = """set -euo pipefail
semhpc synth data/tiffs --per-class 6 --size 64x48 --seed 3
semhpc ingest data/tiffs data/dataset --size 64x48 --shards-per-split 2
"""


@pytest.mark.mpi
def test_two_ranks_train_in_charliecloud_under_the_host_mpirun(image, user):
    """The hybrid model: the host's mpirun, one ch-run per rank, Horovod over the image's Open MPI;
    both replicas end with the same weights."""
    workdir = user_workdir(user, "train")
    prepare = as_user(user, [w.replace("${PWD}", str(workdir)) for w in in_image(image, "bash", "-c", PREPARE)],
                      cwd=workdir)
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    train = ["train", "--config", "/opt/semhpc/configs/demo.yaml", "--set", "run.dir=run", "--set",
             "data.dir=data/dataset", "--set", "data.image_size=32", "--set", "model.name=densenet28", "--set",
             "train.epochs=1", "--set", "train.batch_size=4", "--set", "train.log_every=1"]
    out = as_user(user, host_mpirun(image, 2, train, workdir), cwd=workdir, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = read_metrics(workdir / "run" / "metrics.jsonl")
    assert next(r for r in records if r["kind"] == "start")["ranks"] == 2
    assert any(r["kind"] == "test" for r in records)
    fingerprints = json.loads((workdir / "run" / "test_metrics.json").read_text())["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    shutil.rmtree(workdir)


# --- container mode on a login node: the module's wrapper (ansible/roles/semhpc_module) --------------

@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    from slurm_cluster import SlurmCluster, missing_binaries

    assert not missing_binaries(), "Slurm not found: scripts/bootstrap.sh --test installs slurm-wlm and munge"
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def charliecloud_deployment(shared, image):
    """The inventory of a container-mode deployment with Charliecloud on `shared` storage."""
    return {"semhpc_version": "0.1.0", "semhpc_mode": "container", "semhpc_root": str(shared),
            "semhpc_current_image": str(image), "semhpc_module_runtime": "charliecloud",
            "semhpc_module_host_python": "/usr/bin/python3"}


def apply_module_role(tmp_path, variables, *more_roles):
    """semhpc_module (and `more_roles`) against this machine; how many tasks changed something."""
    result = apply_roles(tmp_path, variables, "semhpc_module", *more_roles)
    assert result.returncode == 0, result.stdout[-5000:]
    return changed_tasks(result)


@pytest.mark.mpi
def test_container_mode_module_submits_on_the_host_and_trains_in_the_image(image, slurm, tmp_path):
    """The wrapper the module puts on PATH, with Charliecloud: `doctor`, `synth` and `ingest` run in
    the image, `submit` and `jobs` on this host against a real Slurm; the job's 2 ranks run in the
    image under the host's mpirun and train to completion. The role converges, then changes nothing."""
    shared = tmp_path / "shared"
    variables = charliecloud_deployment(shared, image)
    assert apply_module_role(tmp_path, variables) > 0
    assert apply_module_role(tmp_path, variables) == 0
    wrapper = shared / "bin" / "0.1.0" / "semhpc"
    assert (shared / "host" / "0.1.0" / "hpc" / "templates" / "execution" / "container.sh").is_file()

    workdir = Path("/tmp") / f"semhpc-module-{os.getpid()}"  # ch-run shares the host's /tmp
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "profiles").mkdir(parents=True)
    (workdir / "profiles" / "local-charliecloud.yaml").write_text(yaml.safe_dump({
        "scheduler": {"type": "slurm", "default_walltime": "00:20:00"}, "node": {"cores": 2, "cpu_ranks": 2},
        "execution": {"mode": "container", "runtime": "charliecloud", "image": str(image), "launcher": "mpirun"}}))
    (workdir / "tiny.yaml").write_text(yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": str(workdir / "data"), "image_size": 32, "augment": False},
        "model": {"name": "densenet28"}, "train": {"epochs": 1, "batch_size": 4}}))
    env = {key: value for key, value in slurm.env.items() if key != "PYTHONPATH"}
    env.update(USER="root", SEMHPC_CLUSTERS=str(workdir / "profiles"), SEMHPC_HOME=str(workdir / "semhpc-home"))

    def semhpc(*args, timeout=600):
        out = subprocess.run([str(wrapper), *args], cwd=workdir, env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    assert json_of(subprocess.CompletedProcess([], 0, semhpc("doctor", "--json")))["container"] == "charliecloud"
    semhpc("synth", "tiffs", "--per-class", "6", "--size", "64x48", "--seed", "3")
    semhpc("ingest", "tiffs", "data", "--size", "64x48", "--shards-per-split", "2")
    submitted = semhpc("submit", "--cluster", "local-charliecloud", "--job", "train", "--", "--config", "tiny.yaml")
    job_id = re.match(r"job (\S+)  ", submitted).group(1)
    assert any(line.split()[0] == job_id for line in semhpc("jobs").splitlines()[1:])
    state = slurm.wait_for_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=900)
    log = next((workdir / "semhpc-jobs").glob(f"*{job_id}*.log")).read_text()
    assert state == "COMPLETED", log[-4000:]
    assert "ch-run" in (next((workdir / "semhpc-jobs").glob("*.sh")).read_text())
    records = read_metrics(workdir / "run" / "metrics.jsonl")
    assert [r["ranks"] for r in records if r["kind"] == "start"] == [2]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
    shutil.rmtree(workdir)


def test_the_semhpc_kernel_runs_in_the_image_through_the_module_wrapper(image, tmp_path):
    """Container mode's Jupyter kernel (ansible/roles/semhpc_jupyter) starts `semhpc kernel` through
    the module's wrapper, so it enters the image with the module's runtime (Charliecloud here): a
    kernel started from the spec as Jupyter starts it runs code in the image's Python, with Horovod."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    shared = tmp_path / "shared"
    apply_module_role(tmp_path, charliecloud_deployment(shared, image), "semhpc_jupyter")
    specs = KernelSpecManager(kernel_dirs=[str(shared / "share" / "jupyter" / "kernels")])
    assert specs.get_kernel_spec("semhpc-0.1.0").argv[:2] == [str(shared / "bin" / "0.1.0" / "semhpc"), "kernel"]

    runtime = Path("/tmp") / f"semhpc-kernel-{os.getpid()}"  # ch-run shares the host's /tmp
    runtime.mkdir()
    kernel = KernelManager(kernel_name="semhpc-0.1.0", kernel_spec_manager=specs,
                           connection_file=str(runtime / "kernel.json"))
    kernel.start_kernel(cwd=str(runtime), env={**os.environ, "USER": "root"})
    try:
        client = kernel.client()
        client.start_channels()
        client.wait_for_ready(timeout=180)
        printed = []
        reply = client.execute_interactive(
            "import os, sys, horovod.tensorflow; print(sys.executable, os.path.isfile('/ch/environment'))",
            timeout=180, output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(printed).split() == ["/opt/semhpc/venv/bin/python", "True"]
        client.stop_channels()
    finally:
        kernel.shutdown_kernel(now=True)
        shutil.rmtree(runtime, ignore_errors=True)
