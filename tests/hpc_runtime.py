"""The cpu image under an HPC container runtime, for the slow tests: Charliecloud as a non-root user.

Apptainer cannot be installed on the development machine; Charliecloud (Debian `charliecloud`)
runs the same hybrid model unprivileged: the host's `mpirun` starts one `ch-run` per rank.

`charliecloud_image(tag)` converts the Docker image with `ch-convert -i docker -o dir` once per
image id, into /var/tmp/semhpc-cache/charliecloud/<id> (root's ~/.cache is not readable by the
test user), with the mount points of the test sites' shared storage (MOUNT_POINTS: ch-run binds
a host folder only onto a folder the read-only image has); `runtime_user()` is an unprivileged
user to run it as. The testbed mounts the cache folder read-only at /images on its nodes.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("SEMHPC_RUNTIME_CACHE", "/var/tmp/semhpc-cache")) / "charliecloud"
USER = "semhpc-ch"
# /scratch: the testbed's scratch volume; /shared: the molecule scenarios' shared storage.
MOUNT_POINTS = ("scratch", "shared")


def cache_folder() -> Path:
    """The conversions' folder, created readable by every user (the testbed mounts it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for parent in [CACHE, *CACHE.parents][:2]:
        parent.chmod(0o755)
    return CACHE


def docker_image_id(tag: str) -> str:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().split(":")[-1][:16]


def charliecloud_image(tag: str) -> tuple[Path, float | None]:
    """The image folder ch-convert made from `tag`, and the conversion's seconds (None: cached).

    Older conversions are removed (2 GB each); the folder is renamed into place only when complete."""
    folder = cache_folder() / docker_image_id(tag)
    if (folder / "ch" / "environment").is_file():
        return folder, None
    for old in CACHE.iterdir():
        shutil.rmtree(old, ignore_errors=True)
    partial = folder.with_name(folder.name + ".partial")
    start = time.monotonic()
    out = subprocess.run(["ch-convert", "-i", "docker", "-o", "dir", tag, str(partial)], capture_output=True,
                         text=True, timeout=3600, env={**os.environ, "USER": os.environ.get("USER", "root")})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    seconds = time.monotonic() - start
    for mount_point in MOUNT_POINTS:
        (partial / mount_point).mkdir(mode=0o755, exist_ok=True)
    partial.rename(folder)
    return folder, seconds


def runtime_user() -> pwd.struct_passwd:
    """An unprivileged user with a home folder (created the first time)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", USER], check=True)
        return pwd.getpwnam(USER)


def as_user(user: pwd.struct_passwd, argv: list[str], cwd: Path, timeout: float = 900,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`argv` as `user` with a login-like environment (ch-run needs $USER), in `cwd`."""
    base = {"USER": user.pw_name, "LOGNAME": user.pw_name, "HOME": user.pw_dir, "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8"}
    return subprocess.run(["runuser", "-u", user.pw_name, "--", "env", "-i",
                           *[f"{k}={v}" for k, v in {**base, **(env or {})}.items()], *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def user_workdir(user: pwd.struct_passwd, name: str) -> Path:
    """A fresh folder under /tmp owned by `user` (ch-run binds the host's /tmp at /tmp)."""
    folder = Path("/tmp") / f"semhpc-{name}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.chown(folder, user.pw_uid, user.pw_gid)
    return folder


def json_of(out: subprocess.CompletedProcess) -> dict:
    """The JSON object a command printed (after any log lines)."""
    text = out.stdout
    return json.loads(text[text.index("{"):])
