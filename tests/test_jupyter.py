"""`semhpc jupyter`: a real JupyterLab on 127.0.0.1 that serves the notebooks only with the token."""

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from lab_server import http_status, listening_addresses, refused, running_jupyter
from semhpc.monitor.notebooks import NOTEBOOKS

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def server():
    with running_jupyter(TOKEN) as lab:
        assert lab.folder == "notebooks"
        yield lab.base


def test_notebooks_are_served_with_the_token_and_refused_without(server):
    with urllib.request.urlopen(f"{server}/api/contents/notebooks?token={TOKEN}", timeout=10) as response:
        assert response.status == 200
        listing = json.load(response)
    assert set(NOTEBOOKS) <= {item["name"] for item in listing["content"]}
    assert http_status(f"{server}/api/contents/notebooks") == 403
    assert http_status(f"{server}/api/contents/notebooks?token=wrong-token") == 403


# What a token holder reaches: pages, the REST API (files, kernels, terminals, sessions, settings),
# raw files and exports. Without the token each must answer 403 or redirect to the login form.
PROTECTED_PATHS = [
    "/", "/lab", "/lab/tree", "/lab/tree/notebooks/01_monitor_training.ipynb", "/lab/workspaces/other",
    "/api/status", "/api/contents", "/api/contents/notebooks/01_monitor_training.ipynb", "/api/kernels",
    "/api/sessions", "/api/terminals", "/api/kernelspecs", "/api/config/notebook", "/api/me", "/api/nbconvert",
    "/api/spec.yaml", "/api/events/subscribe", "/files/notebooks/README.md", "/view/notebooks/README.md",
    "/nbconvert/html/notebooks/02_scaling.ipynb", "/kernelspecs/python3/logo-64x64.png",
    "/lab/api/settings", "/lab/api/workspaces", "/lab/api/listings", "/lab/api/plugins", "/lab/api/extensions",
    "/lab/api/translations", "/lsp/status",
]
# Requests that change something: refused without the token (and nothing changes).
PROTECTED_WRITES = [("POST", "/api/contents/notebooks"), ("PUT", "/api/contents/notebooks/planted.txt"),
                    ("DELETE", "/api/contents/notebooks/README.md"), ("POST", "/api/kernels"),
                    ("POST", "/api/sessions"), ("POST", "/api/terminals"), ("POST", "/api/shutdown")]


def test_without_the_token_every_page_and_api_path_is_refused(server):
    token = {"Authorization": f"token {TOKEN}"}
    for path in PROTECTED_PATHS:
        assert refused(server, path), path
        assert refused(server, path, headers={"Authorization": "token wrong-token"}), path
        assert not refused(server, path, headers=token), f"{path} is refused even with the token"
    for method, path in PROTECTED_WRITES:
        assert refused(server, path, method), (method, path)
    with urllib.request.urlopen(urllib.request.Request(f"{server}/api/contents/notebooks", headers=token),
                                timeout=10) as response:
        names = {item["name"] for item in json.load(response)["content"]}
    assert "README.md" in names and "planted.txt" not in names


AS_OTHER_USER = """
import json, sys, urllib.error, urllib.request
def read(path):
    try:
        return open(path, "rb").read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
paths, url = json.loads(sys.argv[1])
print(json.dumps({"files": {p: read(p) for p in paths}, "http": get(url)}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_another_user_can_neither_read_the_token_nor_use_the_server():
    # A home-like folder others may traverse (as many clusters' homes are); Jupyter creates its
    # runtime folder inside, where it writes the server's URL with the token.
    home = Path(tempfile.mkdtemp(prefix="semhpc-home-"))
    home.chmod(0o755)
    runtime = home / "runtime"
    try:
        with running_jupyter(TOKEN, env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as lab:
            port = int(lab.base.rsplit(":", 1)[1])
            token_files = sorted(runtime.glob(f"jpserver-{lab.pid}*"))
            assert [f.name for f in token_files] == [f"jpserver-{lab.pid}-open.html", f"jpserver-{lab.pid}.json"]
            assert all(TOKEN in f.read_text() for f in token_files)
            # The folder guards both files (Jupyter writes the -open.html with the umask's mode).
            assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
            assert stat.S_IMODE(token_files[1].stat().st_mode) == 0o600
            # Only loopback: nothing on the cluster network reaches the server.
            assert listening_addresses(port) == {"127.0.0.1"}
            proc = Path(f"/proc/{lab.pid}")
            probe = [*map(str, token_files), str(proc / "environ"), str(proc / "cmdline")]
            nobody = pwd.getpwnam("nobody")
            out = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                                  "/usr/bin/python3", "-c", AS_OTHER_USER,
                                  json.dumps([probe, f"{lab.base}/api/contents/notebooks"])],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            seen = json.loads(out.stdout)
    finally:
        shutil.rmtree(home)
    files = seen["files"]
    assert [files[str(f)] for f in token_files] == ["PermissionError", "PermissionError"]
    assert files[str(proc / "environ")] == "PermissionError"  # JUPYTER_TOKEN travels in the environment
    assert "jupyterlab" in files[str(proc / "cmdline")] and TOKEN not in files[str(proc / "cmdline")]
    # Loopback is shared by every user of the node: they connect, and are refused without the token.
    assert seen["http"] == 403


def test_a_runtime_folder_open_to_others_is_refused(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    out = subprocess.run([sys.executable, "-m", "semhpc", "jupyter", "--port", "0"], capture_output=True, text=True,
                         env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}, timeout=120)
    assert out.returncode != 0 and out.stdout == ""
    assert f"{runtime}: Jupyter's runtime folder (JUPYTER_RUNTIME_DIR) is open to other users (mode 755)" in out.stderr
    assert list(runtime.iterdir()) == []
