"""JupyterHub as a centre deploys it, on the multi-node test cluster (hpc/testbed/): the hub and
its configurable-http-proxy on the login (head) node, the semhpc_jupyter role's batchspawner
settings taken from the cluster profile (scheduler, queue, account, QOS) with the hub's address
as the compute nodes reach it. A person logs in with Chromium on this machine and the hub starts
JupyterLab as a Slurm job (and as a PBS job) on a compute node and proxies it. Through the hub,
notebook 01 follows a 2-node training of the cluster live while it trains; the hub's Stop ends
the server's job."""

import json
import subprocess

import nbformat
import pytest
import yaml

from browser import (
    LAB_SETTINGS,
    VIEWPORT,
    assert_followed_live,
    follow_dashboard,
    hub_login,
    launch,
    open_notebook,
    run_all_cells,
    wait_until_all_ran,
)
from hub_settings import jupyterhub_config, write_batchspawner_settings
from lab_server import http_answer
from notebook_runner import FIGURE_TAG_PREFIX, inject_parameters
from semhpc.hpc import SHIPPED_DIR
from semhpc.monitor.notebooks import NOTEBOOKS_DIR
from test_testbed import job_ended, submitted_id, write_config
from test_testbed_jupyter import head_address

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.browser]

HUB_DIR = "/home/semhpc/hub"
PROXY = "/opt/semhpc/hub-proxy/node_modules/.bin/configurable-http-proxy"
USER = "semhpc"
PASSWORD = "hub-test-password"
SPAWN_TIMEOUT = 300
NOTEBOOK = "01_monitor_training.ipynb"
SERVER_LOGS = [".jupyterhub.pbs.err", ".jupyterhub.pbs.out"]  # PBSSpawner's; PBS copies them at the end
SCHEDULERS = {"slurm": ("testbed-slurm", "1M"), "pbs": ("testbed-pbs", "256M")}  # profile, server memory
# The run followed live: 2 nodes, one rank each, 8 steps an epoch; long enough (1-2 s an epoch on
# the one-core nodes, one of which the notebook's server shares) to be seen training for a while.
LIVE_EPOCHS = 80
LIVE_TIMEOUT = 900


@pytest.fixture(params=list(SCHEDULERS))
def hub(request, testbed, tmp_path):
    """(hub URL, scheduler): JupyterHub on the head node, spawning into `scheduler`."""
    scheduler = request.param
    profile, memory = SCHEDULERS[scheduler]
    folder = f"{HUB_DIR}/{scheduler}"
    settings = write_batchspawner_settings(tmp_path, {
        "semhpc_version": "0.1.0", "semhpc_root": "/opt/semhpc",
        "semhpc_jupyter_profile": yaml.safe_load((SHIPPED_DIR / "clusters" / f"{profile}.yaml").read_text()),
        "semhpc_jupyter_hub_connect_ip": "head",
        "semhpc_jupyter_walltime": "00:20:00", "semhpc_jupyter_cores": 1, "semhpc_jupyter_memory": memory,
        # The nodes' image has the venv on PATH: nothing to load.
        "semhpc_jupyter_prologue": "export PATH=/opt/semhpc/venv/bin:$PATH",
    })
    testbed.write_text(f"{folder}/semhpc_batchspawner.py", settings.read_text())
    testbed.write_text(f"{folder}/jupyterhub_config.py", jupyterhub_config(
        # The API listens where the compute nodes reach it (semhpc_jupyter_hub_connect_ip names it for them).
        bind_url="http://0.0.0.0:8000", hub_ip="0.0.0.0", hub_port=8081, proxy_api_port=8001, state_dir=folder,
        proxy=PROXY, user=USER, password=PASSWORD, settings=f"{folder}/semhpc_batchspawner.py",
        notebook_dir=HUB_DIR, environment={"JUPYTERLAB_SETTINGS_DIR": f"{HUB_DIR}/lab-settings",
                                           "JUPYTERLAB_WORKSPACES_DIR": f"{folder}/lab-workspaces"}))
    for name, values in LAB_SETTINGS.items():
        testbed.write_text(f"{HUB_DIR}/lab-settings/{name}", json.dumps(values))
    subprocess.run(["docker", "exec", "-d", "-u", USER, "-w", folder, f"{testbed.prefix}-head", "sh", "-c",
                    "exec jupyterhub -f jupyterhub_config.py > hub.log 2>&1"], check=True)
    base = f"http://{head_address(testbed)}:8000"
    try:
        testbed.wait_for(lambda: http_answer(f"{base}/hub/login")[0] == 200, 120, "JupyterHub to answer", every=1)
        yield base, scheduler
    finally:
        # The hub stops its servers (their jobs) and its proxy as it ends.
        testbed.run("pkill", "-u", USER, "-f", "jupyterhub -f jupyterhub_config.py", check=False)
        testbed.wait_for(lambda: testbed.run("pgrep", "-u", USER, "-f", "jupyterhub|configurable-http-proxy",
                                             check=False).returncode != 0, 60, "the hub to end", every=1)
        (tmp_path / "hub.log").write_text(testbed.read_text(f"{folder}/hub.log"))
        for log in SERVER_LOGS:  # the single-user server's output, where the spawners put it
            if testbed.exists(f"/home/{USER}/{log}"):
                (tmp_path / log.lstrip(".")).write_text(testbed.read_text(f"/home/{USER}/{log}"))


def server_jobs(testbed, scheduler) -> list[tuple[str, str]]:
    """(job id, node) of the user's running or queued single-user server jobs."""
    if scheduler == "slurm":
        out = testbed.run("squeue", "--noheader", "--name=spawner-jupyterhub", "--format=%i %N").stdout
        return [tuple((line.split() + [""])[:2]) for line in out.splitlines() if line.strip()]
    out = testbed.run("qstat", "-f", "-F", "json", check=False).stdout
    jobs = json.loads(out or "{}").get("Jobs", {})
    return [(job_id, job.get("exec_host", "").split("/")[0]) for job_id, job in jobs.items()
            if job.get("Job_Name") == "jupyterhub-singleuser" and job.get("job_state") in ("Q", "R")]


def server_ended(testbed, scheduler, job_id) -> bool:
    if scheduler == "slurm":
        return testbed.slurm_state(job_id) in {"CANCELLED", "COMPLETED", "UNKNOWN"}
    return testbed.pbs_job(job_id).get("job_state") in {"F", None}


def start_live_run(testbed, workdir) -> tuple[str, str]:
    """(PBS job id, run dir) of a 2-node training submitted through `semhpc submit`, once its
    first step is recorded. It goes to PBS, which does not count the Slurm job of the notebook's
    server: on one-core nodes the two then share a core, as a login-node-less site's would not."""
    config = write_config(testbed, workdir, epochs=LIVE_EPOCHS)
    job_id = submitted_id(testbed.semhpc(workdir, "submit", "--cluster", "testbed-pbs", "--job", "train",
                                         "--nodes", "2", "--", "--config", config).stdout)
    metrics = f"{workdir}/run/metrics.jsonl"

    def stepping() -> bool:
        ended = job_ended(testbed, "pbs", job_id)
        assert not ended, f"training job {job_id} ended ({ended}) before its first step"
        return testbed.exists(metrics) and '"kind": "step"' in testbed.read_text(metrics)

    testbed.wait_for(stepping, LIVE_TIMEOUT, f"job {job_id}'s first step", every=2)
    return job_id, f"{workdir}/run"


def follow_the_live_run(page, testbed, base, tmp_path):
    """Notebook 01, in the server the hub started, follows a 2-node training while it trains."""
    job_id, run = start_live_run(testbed, f"{HUB_DIR}/live")
    notebook = inject_parameters(nbformat.read(NOTEBOOKS_DIR / NOTEBOOK, as_version=4),
                                 {"run_dir": run, "refresh_seconds": 2})
    testbed.write_text(f"{HUB_DIR}/{NOTEBOOK}", nbformat.writes(notebook))
    dashboard = next(i for i, cell in enumerate(notebook.cells)
                     if f"{FIGURE_TAG_PREFIX}training_curves" in cell.metadata.get("tags", []))
    open_notebook(page, f"{base}/user/{USER}/lab/tree/{NOTEBOOK}")
    run_all_cells(page)
    samples = follow_dashboard(page, dashboard, LIVE_TIMEOUT, tmp_path / "hub-01-live.png")
    cells = wait_until_all_ran(page, 300)
    assert testbed.wait_for(lambda: job_ended(testbed, "pbs", job_id), 120, f"training job {job_id} to end") \
        == "exit 0"
    start = next(json.loads(line) for line in testbed.read_text(f"{run}/metrics.jsonl").splitlines()
                 if json.loads(line)["kind"] == "start")
    assert start["ranks"] == 2 and sorted(start["hosts"]) == ["node1", "node2"], start
    assert_followed_live(samples, LIVE_EPOCHS * start["steps_per_epoch"])
    assert [cell["stderr"] for cell in cells if cell["stderr"]] == []
    assert len(cells[dashboard]["images"]) == 2


def test_hub_on_the_login_node_spawns_jupyterlab_as_a_batch_job_on_a_compute_node(hub, testbed, testbed_data,
                                                                                    tmp_path):
    from playwright.sync_api import sync_playwright

    base, scheduler = hub
    status, location = http_answer(f"{base}/user/{USER}/lab")
    assert status == 302 and "/hub/" in location     # nothing of the server without logging in
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        try:
            hub_login(page, base, USER, PASSWORD, SPAWN_TIMEOUT)
            jobs = server_jobs(testbed, scheduler)
            assert len(jobs) == 1 and jobs[0][1] in {"node1", "node2"}, jobs
            job_id = jobs[0][0]
            if scheduler == "slurm":  # the job went where the profile sends jobs
                job = testbed.run("scontrol", "show", "job", job_id, "--oneliner").stdout
                assert {"Partition=tb_usr_prod", "Account=tb_semhpc", "QOS=tb_qos_dbg"} <= set(job.split()), job
                follow_the_live_run(page, testbed, base, tmp_path)
            else:  # PBS: JupyterLab's file browser shows the user's folder
                page.wait_for_selector(".jp-DirListing-content", timeout=90_000)
                assert "lab-settings" in page.locator(".jp-DirListing-content").inner_text()
            page.goto(f"{base}/hub/home")
            page.click("#stop")
            page.locator("#stop").wait_for(state="hidden", timeout=120_000)  # the hub has stopped it
        finally:
            browser.close()
    testbed.wait_for(lambda: server_ended(testbed, scheduler, job_id), 120, f"server job {job_id} to end", every=2)
    assert server_jobs(testbed, scheduler) == []
