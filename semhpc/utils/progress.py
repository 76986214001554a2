"""Progress bars on stderr for long work; shown by one process only (rank 0).

In a terminal the bar redraws in place; in a batch log (no TTY) it prints a line every 30 s,
so job logs stay readable.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, *, total=None, desc="", enabled=True, unit="it"):
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5 if interactive else 30, leave=interactive)


def close_all() -> None:
    """Close every bar still open, so an error message that ends the run starts its own line."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
