"""Fixtures shared by several test modules."""

import ctypes
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
    """The multi-node test cluster (hpc/testbed/): started once per pytest run, removed at its end.
    Its nodes see the Charliecloud conversions of tests/hpc_runtime.py at /images."""
    from hpc_runtime import cache_folder
    from testbed_cluster import Testbed

    bed = Testbed(f"semhpc-tb{os.getpid()}", images=cache_folder())
    try:
        yield bed.up()
    finally:
        bed.down()


@pytest.fixture(scope="session")
def testbed_data(testbed):
    """The testbed's training data on its shared /scratch (testbed_cluster.DATA)."""
    return testbed.ingested_dataset()


# What an Open MPI singleton adds to the process environment.
MPI_SINGLETON_PREFIXES = ("PMIX_", "OMPI_", "ORTE_", "IPATH_", "HFI_")


def c_environment_names():
    """Names in the C library's environment, which subprocesses inherit; os.environ is Python's
    copy from start-up and does not see what C code sets later."""
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    names, index = [], 0
    while environ[index]:
        names.append(environ[index].split(b"=", 1)[0].decode(errors="replace"))
        index += 1
    return names


@pytest.fixture(autouse=True)
def no_mpi_singleton_environment():
    """A test that runs training (Horovod) or MPI in the pytest process makes Open MPI a singleton,
    which sets PMIX_*/OMPI_* variables in the C environment: every `mpirun` a later test starts
    would take itself for part of that job and exit 1 without a word. They are dropped after each
    test (variables that were there at start-up, such as OMPI_ALLOW_RUN_AS_ROOT, stay)."""
    yield
    for name in c_environment_names():
        if name.startswith(MPI_SINGLETON_PREFIXES) and name not in os.environ:
            os.unsetenv(name)
