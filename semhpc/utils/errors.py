"""The one exception type that reaches the user as a single line (no traceback).

Raise `SemhpcError` for anything the user can fix: a bad config key, a missing folder, an
unsupported TensorFlow. The message must name the file or key and say what is wrong.
"""


class SemhpcError(Exception):
    """A user-facing error; `semhpc` prints `semhpc CMD: error: MESSAGE` and exits 2."""
