"""JupyterHub as a centre deploys it, on the one-node Slurm test cluster (tests/slurm_cluster.py):
the semhpc_jupyter role writes the batchspawner settings, JupyterHub loads them behind
configurable-http-proxy (the npm package pinned in the role's files/proxy), a person logs in with
Chromium, the hub starts JupyterLab as a Slurm job and proxies it, notebook 01 runs there, and
stopping the server from the hub ends the job."""

import getpass
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from browser import (
    VIEWPORT,
    hub_login,
    lab_environment,
    launch,
    open_notebook,
    run_all_cells,
    screenshot,
    wait_until_all_ran,
)
from hub_settings import ROLES, jupyterhub_config, write_batchspawner_settings
from lab_server import http_answer, stop_process
from notebook_runner import FIGURE_TAG_PREFIX, inject_parameters
from semhpc.hpc import SHIPPED_DIR
from semhpc.monitor.notebooks import NOTEBOOKS_DIR
from slurm_cluster import SlurmCluster, _free_port, missing_binaries
from test_notebooks import parameters

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
PROXY_DIR = ROLES / "semhpc_jupyter" / "files" / "proxy"
PROXY = PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "hub-test-password"
SPAWN_TIMEOUT = 240
NOTEBOOK = "01_monitor_training.ipynb"


def install_proxy() -> Path:
    """configurable-http-proxy from the committed package-lock.json, into files/proxy/node_modules."""
    if not PROXY.exists():
        out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PROXY_DIR, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    return PROXY


@pytest.fixture
def hub(tmp_path, artifacts):
    """(hub URL, Slurm cluster, user's home): JupyterHub on 127.0.0.1 spawning into Slurm."""
    missing = missing_binaries()
    assert not missing, f"{', '.join(missing)} not found: scripts/bootstrap.sh --test installs slurm-wlm and munge"
    proxy = install_proxy()
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    notebook = inject_parameters(nbformat.read(NOTEBOOKS_DIR / NOTEBOOK, as_version=4),
                                 parameters(NOTEBOOK, artifacts))
    nbformat.write(notebook, str(home / "notebooks" / NOTEBOOK))
    venv_bin = Path(sys.executable).parent
    settings = write_batchspawner_settings(tmp_path, {
        "semhpc_version": "0.1.0", "semhpc_root": str(tmp_path / "semhpc"),
        # Scheduler, queue, account and QOS from the cluster's profile, as a centre sets them.
        "semhpc_jupyter_profile": yaml.safe_load((SHIPPED_DIR / "clusters" / "local-slurm.yaml").read_text()),
        # What the single-user server in the job dials back to (the login node's address on a cluster).
        "semhpc_jupyter_hub_connect_ip": "127.0.0.1",
        "semhpc_jupyter_walltime": "00:15:00", "semhpc_jupyter_cores": 1,
        # The test node declares no memory (Slurm counts 1 MB): ask for what it has.
        "semhpc_jupyter_memory": "1M",
        # Stands in for `module load semhpc/VERSION`: the venv with jupyterhub and batchspawner.
        "semhpc_jupyter_prologue": f"export PATH={venv_bin}:$PATH",
    })
    cluster = SlurmCluster(tmp_path / "slurm").start()
    port, hub_port, api_port = _free_port(), _free_port(), _free_port()
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(jupyterhub_config(
        bind_url=f"http://127.0.0.1:{port}", hub_ip="127.0.0.1", hub_port=hub_port, proxy_api_port=api_port,
        state_dir=str(tmp_path), proxy=str(proxy), user=getpass.getuser(), password=PASSWORD, settings=str(settings),
        notebook_dir=str(home), allow_root=os.geteuid() == 0,
        # The checkout under test for the kernel (a centre's `module load semhpc` sets the same up).
        environment={"SLURM_CONF": str(cluster.conf), "PYTHONPATH": str(ROOT), **lab_environment(tmp_path)}))
    started = time.time()
    log = open(tmp_path / "jupyterhub.log", "w")
    env = {**os.environ, "SLURM_CONF": str(cluster.conf),
           "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(venv_bin / "jupyterhub"), "-f", str(config)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while http_answer(f"http://127.0.0.1:{port}/hub/login")[0] != 200:
            assert proc.poll() is None, (tmp_path / "jupyterhub.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterHub did not answer"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", cluster, home, tmp_path / "jupyterhub.log"
    finally:
        stop_process(proc)
        log.close()
        cluster.stop()
        # batchspawner's job script writes its log into the user's home: move this test's here.
        for job_log in Path.home().glob("jupyterhub_slurmspawner_*.log"):
            if job_log.stat().st_mtime >= started:
                shutil.move(job_log, tmp_path / job_log.name)


def server_jobs(cluster) -> list[tuple[str, str, str]]:
    """(job id, name, state) of every job in the test cluster's queue."""
    out = cluster.run("squeue", "--noheader", "--format=%i %j %T").stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def test_hub_spawns_jupyterlab_as_a_slurm_job_and_stopping_it_ends_the_job(hub):
    base, cluster, home, log = hub
    user = getpass.getuser()
    from playwright.sync_api import sync_playwright

    # Nothing of the user's server is reachable through the hub without logging in.
    status, location = http_answer(f"{base}/user/{user}/lab")
    assert status == 302 and "/hub/" in location
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        try:
            hub_login(page, base, user, PASSWORD, SPAWN_TIMEOUT)
            jobs = server_jobs(cluster)
            assert [(name, state) for _, name, state in jobs] == [("spawner-jupyterhub", "RUNNING")], jobs
            job_id = jobs[0][0]
            open_notebook(page, f"{base}/user/{user}/lab/tree/notebooks/{NOTEBOOK}")
            run_all_cells(page)
            try:
                cells = wait_until_all_ran(page, 300)
            except AssertionError:
                screenshot(page, log.parent / "failed.png")
                raise
            assert [cell["stderr"] for cell in cells if cell["stderr"]] == []
            stored = nbformat.read(home / "notebooks" / NOTEBOOK, as_version=4).cells
            figures = [i for i, cell in enumerate(stored)
                       if any(t.startswith(FIGURE_TAG_PREFIX) for t in cell.metadata.get("tags", []))]
            assert figures and all(len(cells[i]["images"]) == 2 for i in figures)
            assert cells[figures[0]]["text"].startswith("finished: step ")
            page.goto(f"{base}/hub/home")
            page.click("#stop")
            page.locator("#stop").wait_for(state="hidden", timeout=120_000)  # the hub has stopped it
        finally:
            browser.close()
    assert cluster.wait_for_state(job_id, {"CANCELLED", "COMPLETED"}, timeout=60) in {"CANCELLED", "COMPLETED"}
    assert server_jobs(cluster) == []
