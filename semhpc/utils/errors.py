"""The one exception type that reaches the user as a single line (no traceback).

Raise `SemhpcError` for anything the user can fix: a bad config key, a missing folder, an
unsupported TensorFlow. The message must name the file or key and say what is wrong.
"""

from __future__ import annotations

import errno
import os
import re


class SemhpcError(Exception):
    """A user-facing error; `semhpc` prints `semhpc CMD: error: MESSAGE` and exits 2."""


# Why a write failed, for the errors a user fixes outside semhpc (free space, quota, permissions).
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_failure(path, exc: OSError) -> SemhpcError:
    """The one line for a failed write of `path`: what happened and that finished outputs are kept
    (every semhpc output is written to a temporary file and renamed, so a failed write leaves no
    half file and a rerun after freeing space completes)."""
    reason = WRITE_FAILURES.get(exc.errno) or exc.strerror or str(exc)
    return SemhpcError(f"{os.fsdecode(path)}: cannot write: {reason}")


def write_failure_text(exc: BaseException) -> str | None:
    """"PATH: no space left on device" when `exc` is a write failure the user must fix, else None.

    An OSError carries its errno (and usually the file); TensorFlow's errors (its checkpoint and
    summary writers) only a message "PATH; No space left on device"."""
    if isinstance(exc, OSError):
        if exc.errno not in WRITE_FAILURES:
            return None
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        return where + WRITE_FAILURES[exc.errno]
    message = getattr(exc, "message", None)
    if not type(exc).__module__.startswith("tensorflow") or not isinstance(message, str) or not message.strip():
        return None
    found = _TF_WRITE_FAILURE.fullmatch(message.strip().splitlines()[0])
    if found is None or found["reason"].lower() not in WRITE_FAILURES.values():
        return None
    reason = found["reason"].lower()
    return f"{found['path']}: {reason}" if found["path"] else reason


# TensorFlow's text: "[{{function_node ...}} ]PATH; No space left on device[ [Op:SaveV2]]".
_TF_WRITE_FAILURE = re.compile(r"(?:\{\{[^}]*\}\}\s*)?(?:(?P<path>.*); )?(?P<reason>[^;\[]*?)(?:\s*\[Op:\w+\])?")
