"""Fixtures shared by several test modules."""

import os
import shutil
import subprocess
import time

import pytest

# Session fixtures that live in their own modules: `artifacts` (real runs for the monitor,
# notebook and browser tests).
pytest_plugins = ["artifacts"]


def docker_answers():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory):
    """A running Docker daemon: the one already there, or one started here and stopped afterwards."""
    if docker_answers():
        yield
        return
    assert shutil.which("dockerd"), "dockerd not found: scripts/bootstrap.sh --test installs docker.io"
    assert os.geteuid() == 0, "no Docker daemon runs and only root can start one"
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "w") as fh:
        daemon = subprocess.Popen(["dockerd"], stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not docker_answers():
        assert daemon.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    yield
    daemon.terminate()
    daemon.wait(timeout=60)


@pytest.fixture(scope="session")
def testbed(docker_daemon):
    """The multi-node test cluster (hpc/testbed/): started once per pytest run, removed at its end."""
    from testbed_cluster import Testbed

    bed = Testbed(f"semhpc-tb{os.getpid()}")
    try:
        yield bed.up()
    finally:
        bed.down()
