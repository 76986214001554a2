"""`semhpc jupyter`: a real JupyterLab on 127.0.0.1 that serves the notebooks only with the token."""

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from semhpc.monitor.notebooks import NOTEBOOKS

TOKEN = "test-token-0123456789abcdef"


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet


@pytest.fixture
def server():
    proc = subprocess.Popen([sys.executable, "-m", "semhpc", "jupyter", "--port", "0", "--token", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first_line = proc.stdout.readline()
        match = re.fullmatch(r"JupyterLab: (http://127\.0\.0\.1:(\d+))/lab/tree/notebooks\?token=(\S+)\n", first_line)
        assert match, first_line
        base = match.group(1)
        assert match.group(3) == TOKEN
        deadline = time.time() + 90
        while http_status(f"{base}/api/status?token={TOKEN}") != 200:
            assert proc.poll() is None, "jupyter exited"
            assert time.time() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.5)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_notebooks_are_served_with_the_token_and_refused_without(server):
    with urllib.request.urlopen(f"{server}/api/contents/notebooks?token={TOKEN}", timeout=10) as response:
        assert response.status == 200
        listing = json.load(response)
    assert set(NOTEBOOKS) <= {item["name"] for item in listing["content"]}
    assert http_status(f"{server}/api/contents/notebooks") == 403
    assert http_status(f"{server}/api/contents/notebooks?token=wrong-token") == 403
