"""A throwaway PostgreSQL server (Debian's `postgresql` package) for the catalog tests.

The server runs from a fresh data folder, listens on a Unix socket only (no TCP port) and is
stopped afterwards; as root it runs as the `postgres` user, which the server requires.
`new_database()` gives each test its own database URL.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

PORT = 54321


def server_binaries() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server not found: `apt-get install postgresql` (scripts/bootstrap.sh --test)"
    return os.path.dirname(found[-1])


class PostgresServer:
    def __init__(self, root: str):
        self.root = root
        self.socket_dir = os.path.join(root, "socket")
        self._names = itertools.count()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def new_database(self) -> str:
        import psycopg

        name = f"catalog_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server():
    pytest.importorskip("psycopg", reason="psycopg is needed for PostgreSQL catalogs")
    binaries = server_binaries()
    root = tempfile.mkdtemp(prefix="semhpc-postgres-")
    server = PostgresServer(root)
    os.makedirs(server.socket_dir)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, server.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
    data = os.path.join(root, "data")
    subprocess.run(_as_server_user([f"{binaries}/initdb", "-D", data, "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    options = f"-k {server.socket_dir} -p {PORT} -c listen_addresses=''"
    subprocess.run(_as_server_user([f"{binaries}/pg_ctl", "-D", data, "-o", options, "-l",
                                    os.path.join(root, "server.log"), "-w", "start"]), check=True, capture_output=True)
    try:
        yield server
    finally:
        subprocess.run(_as_server_user([f"{binaries}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
