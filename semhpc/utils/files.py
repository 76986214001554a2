"""Opening a file a user named without ever blocking on a special file.

`open()` on a FIFO waits for a writer, forever if there is none, and a character device such as
/dev/zero never ends. Every input file semhpc reads by name (images, configs, class maps, cluster
profiles, manifests, shards, input lists) is therefore opened non-blocking and checked with fstat
on the open handle (no race between the check and the open) before a byte is read; a Unix
socket, which cannot be opened at all, is named as such too. `read_input_text` turns each way an
input file can be unusable (missing, special, unreadable, not UTF-8) into one line naming it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from semhpc.utils.errors import SemhpcError

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
    try:
        handle = open(os.fsdecode(path), mode, opener=_open_nonblocking)
    except OSError as exc:  # a Unix socket cannot be opened at all: ENXIO, "no such device or address"
        if exc.errno == errno.ENXIO and stat.S_ISSOCK(os.stat(path).st_mode):
            raise NotRegularFile(path, "socket") from None
        raise
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


def read_input_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of the input file `path`, else one SemhpcError line: missing, not a regular
    file (a FIFO would block the read forever), unreadable, or a byte that is not UTF-8."""
    try:
        data = read_regular_bytes(path)
    except FileNotFoundError:
        raise SemhpcError(f"{path}: {what} not found") from None
    except NotRegularFile as exc:
        raise SemhpcError(f"{path}: {what} is not a regular file ({exc.kind}); not read") from None
    except OSError as exc:
        raise SemhpcError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SemhpcError(f"{path}: {what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                          f"(line {line})") from None
