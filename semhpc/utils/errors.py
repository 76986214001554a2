"""The one exception type that reaches the user as a single line (no traceback).

Raise `SemhpcError` for anything the user can fix: a bad config key, a missing folder, an
unsupported TensorFlow. The message must name the file or key and say what is wrong.
"""

import errno
import os


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
