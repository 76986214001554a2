"""`semhpc launch -np N -- train --config C`: run a semhpc command on N Horovod ranks via mpirun."""

from __future__ import annotations

import os

from semhpc.runtime.launcher import format_command, mpirun_command
from semhpc.utils import options
from semhpc.utils.errors import SemhpcError

HELP = "Run a semhpc command (e.g. train) on N MPI ranks with fast CPU defaults; prints the mpirun line."


def add_arguments(parser) -> None:
    parser.add_argument("-np", "--np", type=options.bounded_int(1, options.MAX_RANKS),
                        default=2, help="number of ranks (default 2)")
    parser.add_argument("--cores-per-rank", type=options.bounded_int(1, options.MAX_CORES),
                        default=1, help="cores (intra-op threads) per rank")
    parser.add_argument("-H", "--hosts", help="mpirun host list, e.g. node1:2,node2:2")
    parser.add_argument("--plain", action="store_true",
                        help="plain `mpirun --bind-to core` with the libraries' own cycle and polling, not the tuned "
                             "defaults (for comparison)")
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    parser.add_argument("command", nargs="+", help="semhpc command and its arguments, after --")


def main(args) -> int:
    if args.np < 1 or args.cores_per_rank < 1:
        raise SemhpcError("-np and --cores-per-rank must be >= 1")
    cmd = mpirun_command(args.np, args.command, cores_per_rank=args.cores_per_rank, hosts=args.hosts,
                         tuned=not args.plain)
    print(format_command(cmd), flush=True)
    if args.dry_run:
        return 0
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover  (execvp does not return)
