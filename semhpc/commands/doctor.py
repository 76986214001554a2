"""`semhpc doctor`: is this machine (or container) ready to train with Horovod?"""

from __future__ import annotations

import json

from semhpc.runtime.stack import stack_report

HELP = "Check Python, TensorFlow, Horovod (MPI/Gloo/NCCL), MPI, CPUs and GPUs; non-zero exit on problems."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args) -> int:
    report = stack_report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if key not in ("problems", "warnings", "ok"):
                print(f"{key:>18}: {value}")
        for warning in report["warnings"]:
            print(f"WARNING: {warning}")
        for problem in report["problems"]:
            print(f"PROBLEM: {problem}")
        print("ok" if report["ok"] else f"{len(report['problems'])} problem(s)")
    return 0 if report["ok"] else 1
