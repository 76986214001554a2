"""A rank blocked in C code (as in a Horovod collective) still runs its SIGTERM callback and exits 143."""

import os
import signal
import subprocess
import sys
import time

CHILD = """
import os, sys
from semhpc.runtime.termination import on_termination
on_termination(lambda: open(sys.argv[1], "w").write("first"))
on_termination(lambda: open(sys.argv[1], "w").write("recorded"))  # a later call replaces the callback
print("ready", flush=True)
read_fd, _ = os.pipe()
os.read(read_fd, 1)  # blocks in C for good: a Python-level signal handler alone would never run
"""


def test_sigterm_runs_the_callback_while_the_main_thread_is_blocked(tmp_path):
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout.readline() == "ready\n"
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=20) == 128 + signal.SIGTERM
    assert marker.read_text() == "recorded"
