"""Paths as text for people and JSON.

Files are opened by `os.fsdecode(path)`, which keeps a non-UTF-8 name's bytes as surrogate
escapes so the file still opens; such a string cannot be printed or written as UTF-8. Every
message, CSV and JSON that names a user's file shows it through `display_path`.
"""

from __future__ import annotations

import os


def display_path(path) -> str:
    """`path` as printable text: bytes that are not UTF-8 appear as "\\xe9" instead of failing."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
