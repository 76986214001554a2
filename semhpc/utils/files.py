"""Opening a file a user named without ever blocking on a special file.

`open()` on a FIFO waits for a writer, forever if there is none, and a character device such as
/dev/zero never ends. Every input file semhpc reads by name (images, configs, class maps, cluster
profiles, manifests, shards, input lists) is therefore opened non-blocking and checked with fstat
on the open handle (no race between the check and the open) before a byte is read.
"""

from __future__ import annotations

import os
import stat

_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


class NotRegularFile(OSError):
    """The path exists but is a folder, FIFO, socket or device; `kind` says which ("FIFO")."""

    def __init__(self, path, kind: str):
        super().__init__(f"not a regular file ({kind}); not read")
        self.filename, self.kind = os.fsdecode(path), kind
        self.strerror = self.args[0]

    def __str__(self) -> str:
        return self.strerror


def kind_of(mode: int) -> str:
    """"FIFO", "socket", ... for an st_mode that is not a regular file's ("special file" else)."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def open_regular(path, mode: str = "rb"):
    """`open(path, mode)` for reading, or NotRegularFile (an OSError) when `path` is not a regular
    file; other failures are the usual OSError (missing file, no permission)."""
    handle = open(os.fsdecode(path), mode, opener=_open_nonblocking)
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise NotRegularFile(path, kind_of(info.st_mode))
    return handle


def read_regular_bytes(path) -> bytes:
    with open_regular(path) as handle:
        return handle.read()


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)
