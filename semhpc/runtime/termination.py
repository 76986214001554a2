"""A rank told to stop still records that its run failed.

Schedulers end jobs with SIGTERM (scancel, qdel, the walltime, a job torn down because one of
its nodes died) and SIGKILL a few seconds later. Python runs signal handlers in the main thread
between bytecodes, but a rank waiting in a Horovod collective is inside C++ and would never get
there, so its status.json would say "running" forever. Here the signal only wakes a thread
(`signal.set_wakeup_fd`: the interpreter's C-level handler writes the signal number to a pipe
at once), which runs the callback and exits with 128 + SIGTERM, as the default action would.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

_callback: list[Callable[[], None]] = []  # the current one; the watcher thread starts once


def on_termination(callback: Callable[[], None]) -> None:
    """On SIGTERM, call `callback()` and exit (143), even while the main thread is blocked in C++.

    A later call replaces the callback (a process may train several times). Outside the main
    thread, where signals cannot be handled, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if not _callback:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # a Python handler arms the wakeup fd
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=_watch, args=(read_fd,), name="sigterm-watch", daemon=True).start()
    _callback[:] = [callback]


def _watch(read_fd: int) -> None:
    while True:
        if signal.SIGTERM in os.read(read_fd, 64):
            try:
                _callback[0]()
            finally:
                os._exit(128 + signal.SIGTERM)
