"""`semhpc submit --job jupyter` on the multi-node test cluster (hpc/testbed/): JupyterLab starts
as a Slurm job on a compute node, announces its port and token, answers the login node with the
token and refuses requests without it, and `semhpc cancel` ends it (tests/test_slurm.py did this on
a one-node Slurm of its own; the testbed's session fixture saves that cluster's start)."""

import re

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.testbed]

WORKDIR = "/home/semhpc/jupyter"


def http_status_from_login_node(testbed, url, token_header=None):
    """The HTTP status of GET `url` from the head node (the testbed's network is internal), or
    None while nothing listens there."""
    probe = ("import sys, urllib.error, urllib.request\n"
             "headers = {'Authorization': 'token ' + sys.argv[2]} if len(sys.argv) > 2 else {}\n"
             "try:\n"
             "    print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), timeout=10).status)\n"
             "except urllib.error.HTTPError as refused:\n"
             "    print(refused.code)\n"
             "except OSError:\n"
             "    print('none')\n")
    out = testbed.run("python3", "-c", probe, url, *([token_header] if token_header else [])).stdout.strip()
    return None if out == "none" else int(out)


def test_jupyter_job_answers_with_its_token_and_refuses_without(testbed):
    out = testbed.semhpc(WORKDIR, "submit", "--cluster", "testbed-slurm", "--job", "jupyter").stdout
    job_id = re.match(r"job (\S+)  ", out).group(1)
    info = f"{WORKDIR}/jupyter-{job_id}.txt"
    text = testbed.wait_for(lambda: testbed.exists(info) and "then open" in (t := testbed.read_text(info)) and t,
                            300, f"{info} to be written", every=2)
    node, port = re.search(r"\(job \S+\) on (\S+) port (\d+)", text).groups()
    token = re.search(r"http://localhost:\d+/lab\?token=(\w+)", text).group(1)
    assert node in ("node1", "node2")
    assert f"ssh -N -L {port}:{node}:{port} semhpc@head" in text  # the login node is where sbatch ran
    log = testbed.read_text(f"{WORKDIR}/semhpc-jobs/semhpc-jupyter-{job_id}.log")
    assert text in log  # the same instructions are in the job log
    modes = testbed.run("stat", "-c", "%a", info, f"{WORKDIR}/semhpc-jobs/semhpc-jupyter-{job_id}.log").stdout.split()
    assert [mode[-2:] for mode in modes] == ["00", "00"]  # the token is a password: for the user's eyes only

    api = f"http://{node}:{port}/api/contents"
    testbed.wait_for(lambda: http_status_from_login_node(testbed, api) is not None, 300, "JupyterLab to listen",
                     every=2)
    assert http_status_from_login_node(testbed, f"{api}?token={token}") == 200
    assert http_status_from_login_node(testbed, api, token) == 200
    assert http_status_from_login_node(testbed, api) == 403
    assert http_status_from_login_node(testbed, f"{api}?token=not-{token}") == 403
    assert testbed.slurm_state(job_id) == "RUNNING"

    # --cluster: a PBS job of the same number (other tests submit both) must not be the one meant.
    out = testbed.semhpc(WORKDIR, "cancel", "--cluster", "testbed-slurm", job_id).stdout
    assert out.startswith(f"cancelled job {job_id}")
    ended = testbed.wait_for(lambda: (s := testbed.slurm_state(job_id)) in ("CANCELLED", "COMPLETED", "FAILED") and s,
                             120, "the job to end")
    assert ended == "CANCELLED"
