"""A real `semhpc jupyter` for the tests: started as a subprocess, waited for until its API
answers with the token, and stopped with SIGTERM (as a job's end or Ctrl-C would)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

START_TIMEOUT = 90


def http_answer(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int | None, str | None]:
    """(HTTP status, Location header) of one request, redirects not followed; (None, None) when
    nothing listens yet."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}, method=method), timeout=5) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location")
    except (urllib.error.URLError, ConnectionError):
        return None, None


def http_status(url: str) -> int | None:
    """The HTTP status of a GET without following redirects; None when nothing listens yet."""
    return http_answer(url)[0]


def refused(base: str, path: str, method: str = "GET", headers: dict | None = None) -> bool:
    """403, or redirects that end at the login form (never at content)."""
    for _ in range(3):
        status, location = http_answer(base + path, headers, method)
        if status != 302:
            return status == 403
        path = location.removeprefix(base)
        if path.startswith("/login"):
            return True
    return False


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a server's clean shutdown), then SIGKILL if it is still there after `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def shutdown_kernels(base: str, token: str) -> None:
    """Stop every kernel of the server (a closed browser tab leaves its kernel running)."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/kernels", headers=headers), timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", headers=headers, method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


class LabServer(NamedTuple):
    base: str     # http://127.0.0.1:PORT
    folder: str   # the notebooks folder's name, as in /lab/tree/FOLDER
    pid: int      # the server process (`semhpc jupyter` execs into JupyterLab)


@contextlib.contextmanager
def running_jupyter(token: str, notebooks: Path | None = None, env: dict | None = None):
    """Yield the LabServer of `semhpc jupyter --port 0 --token TOKEN [--notebooks DIR]`."""
    command = [sys.executable, "-m", "semhpc", "jupyter", "--port", "0", "--token", token]
    if notebooks is not None:
        command += ["--notebooks", str(notebooks)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    try:
        first_line = proc.stdout.readline()
        match = re.fullmatch(r"JupyterLab: (http://127\.0\.0\.1:\d+)/lab/tree/(\S+)\?token=(\S+)\n", first_line)
        assert match, first_line
        base, folder = match.group(1), match.group(2)
        assert match.group(3) == token
        deadline = time.time() + START_TIMEOUT
        while http_status(f"{base}/api/status?token={token}") != 200:
            assert proc.poll() is None, "jupyter exited"
            assert time.time() < deadline, f"JupyterLab did not answer within {START_TIMEOUT} s"
            time.sleep(0.5)
        yield LabServer(base, folder, proc.pid)
    finally:
        stop_process(proc)


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a TCP socket listening on `port` on this host (from /proc/net)."""
    import ipaddress

    addresses = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                # /proc prints each 32-bit word of the address in host (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8))
                addresses.add(str(ipaddress.ip_address(raw[:width])))
    return addresses
