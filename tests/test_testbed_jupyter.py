"""`semhpc submit --job jupyter` on the multi-node test cluster (hpc/testbed/), used as its printed
instructions say: the ssh tunnel line, run on this machine through the login (head) node, brings
JupyterLab on a compute node to a local port, where Chromium opens it with the token. The job
listens on the compute node's own address only and ends itself once idle for the profile's
jupyter.idle_minutes."""

import re
import shlex
import socket
import subprocess
import time

import pytest

from browser import VIEWPORT, launch
from lab_server import http_answer, stop_process
from test_testbed import profile_variant, submitted_id

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.browser]

WORKDIR = "/home/semhpc/jupyter"


def head_address(testbed) -> str:
    """The login node's address on the testbed's network, which this machine reaches directly."""
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          f"{testbed.prefix}-head"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def node_listens(testbed, node, port) -> list[str]:
    """The local addresses with a socket listening on `port` on `node`."""
    out = testbed.run("ss", "-ltnH", f"sport = :{port}", node=node).stdout
    return [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def tunnel(printed: str, key, head_ip: str) -> subprocess.Popen:
    """The job's `ssh -N -L ...` line as printed, with this machine's way to the login node: the
    user's key and the head node's address for its name."""
    words = shlex.split(printed)
    assert words[:3] == ["ssh", "-N", "-L"], printed
    options = ["-i", str(key), "-o", f"HostName={head_ip}", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes"]
    return subprocess.Popen([words[0], *options, *words[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_jupyter_job_through_the_tunnel_line_then_ends_when_idle(testbed, tmp_path):
    from playwright.sync_api import sync_playwright

    cluster = profile_variant(testbed, "testbed-slurm", "tb-jupyter", jupyter__idle_minutes=1)
    submitted = testbed.semhpc(WORKDIR, "submit", "--cluster", cluster, "--job", "jupyter").stdout
    job_id, log = submitted_id(submitted), re.search(r" log (\S+)", submitted).group(1)
    info = f"{WORKDIR}/jupyter-{job_id}.txt"
    text = testbed.wait_for(lambda: testbed.exists(info) and "then open" in (t := testbed.read_text(info)) and t,
                            240, f"{info}", every=2)
    node, port = re.search(r"on (\S+) port (\d+)", text).groups()
    printed = re.search(r"on your computer: (ssh .*)$", text, re.MULTILINE).group(1)
    assert printed == f"ssh -N -L {port}:{node}:{port} semhpc@head", printed
    url = re.search(r"then open: (\S+)", text).group(1)
    # One core of the node and no more, as the profile's jupyter section asks.
    job = testbed.run("scontrol", "show", "job", job_id, "--oneliner").stdout
    assert " NumNodes=1 " in job and " NumCPUs=1 " in job and node in {"node1", "node2"}, job
    # Where the tunnel arrives, and nowhere else: the node's address, not every interface nor loopback.
    node_ip = testbed.run("getent", "hosts", node).stdout.split()[0]
    testbed.wait_for(lambda: node_listens(testbed, node, port), 120, "JupyterLab to listen", every=2)
    assert node_listens(testbed, node, port) == [node_ip]

    key = tmp_path / "id_ed25519"
    key.write_text(testbed.read_text("/home/semhpc/.ssh/id_ed25519"))
    key.chmod(0o600)
    ssh = tunnel(printed, key, head_address(testbed))
    try:
        deadline = time.monotonic() + 60
        while not port_open(int(port)):
            assert ssh.poll() is None, ssh.stderr.read().decode()
            assert time.monotonic() < deadline, "the tunnel did not open"
            time.sleep(0.5)
        base = f"http://localhost:{port}"
        assert http_answer(f"{base}/api/contents")[0] == 403      # no token, no entry
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                page.wait_for_selector(".jp-DirListing-content", timeout=90_000)   # the file browser
                assert f"jupyter-{job_id}.txt" in page.locator(".jp-DirListing-content").inner_text()
            finally:
                browser.close()
    finally:
        stop_process(ssh)
    # Idle from now on: the server ends itself within two idle periods (60 s), and so does the job.
    state = testbed.wait_for(lambda: (s := testbed.slurm_state(job_id)) in {"COMPLETED", "FAILED", "CANCELLED",
                                                                              "TIMEOUT"} and s,
                             300, f"jupyter job {job_id} to end when idle", every=5)
    assert state == "COMPLETED", testbed.read_text(log)[-3000:]
