"""The `semhpc` command line: one entry point, one sub-command per mode.

Each sub-command lives in `semhpc/commands/<name>.py` and defines `HELP` (one line),
`add_arguments(parser)` and `main(args) -> int`. Command modules import TensorFlow, Horovod
and MPI lazily inside `main`, so `semhpc --help` and argument errors stay instant.
To add a command: write the module and add its name to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from semhpc import __version__
from semhpc.utils.errors import SemhpcError, write_failure_text

COMMANDS = (
    "doctor",
    "synth",
    "ingest",
    "data",
    "hdf5",
    "inspect",
    "models",
    "train",
    "eval",
    "launch",
    "demo",
    "jupyter",
    "kernel",
    "report",
    "submit",
    "jobs",
    "cancel",
    "export",
    "classify",
    "calibrate",
    "catalog",
    "bench",
    "profile",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (`semhpc CMD: error: argument --x: ...`) and
    exit status 2, like every other user error, instead of the usage text and a SystemExit."""

    def error(self, message):
        raise _CommandLineError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class _CommandLineError(Exception):
    pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (when `only` names a command) one that imports just that command."""
    parser = _Parser(
        prog="semhpc",
        description="Train, benchmark and deploy SEM image classifiers with Horovod on HPC clusters.",
    )
    parser.add_argument("--version", action="version", version=f"semhpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"semhpc.commands.{name.replace('-', '_')}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ INFO/WARNING lines drown the output; real errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        args = build_parser(only).parse_args(argv)
    except _CommandLineError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except SemhpcError as exc:
        # Expected failures (bad config, missing data, wrong stack): one line, no traceback.
        _close_progress_bars()
        print(f"semhpc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A full disk, a quota, a read-only or forbidden folder met by a write not made through
        # semhpc.utils.atomic (TensorFlow's checkpoint writer, an appended log): still one line.
        failure = write_failure_text(exc)
        if failure is None:
            raise
        _close_progress_bars()
        print(f"semhpc {args.command}: error: {failure}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"semhpc {args.command}: interrupted", file=sys.stderr)
        return 130


def _close_progress_bars() -> None:
    progress = sys.modules.get("semhpc.utils.progress")  # not imported: no bar was ever shown
    if progress is not None:
        progress.close_all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
