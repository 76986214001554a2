"""`semhpc data report OUT`: classes per split, sizes, instruments, metadata coverage, duplicates and
leakage of an ingested dataset; a table on stdout plus OUT/report.json and OUT/report.png."""

from __future__ import annotations

import json
from pathlib import Path

from semhpc.utils import atomic

HELP = "Inspect an ingested dataset: `semhpc data report OUT` (classes per split, instruments, duplicates, leakage)."


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = actions.add_parser("report", help="table + OUT/report.json + OUT/report.png; exit 1 on leakage",
                                description="Images per class and split, image sizes and dtypes, instruments, "
                                            "metadata coverage, exact duplicates and duplicates across splits.")
    report.add_argument("data_dir", metavar="OUT", help="dataset folder written by `semhpc ingest`")
    report.add_argument("--json", action="store_true", help="print report.json instead of the table")


def main(args) -> int:
    from semhpc.data.report import build_report, format_report, save_chart

    report = build_report(args.data_dir)
    atomic.write_json(Path(args.data_dir) / "report.json", report)
    save_chart(report, Path(args.data_dir) / "report.png")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"\nsaved {Path(args.data_dir) / 'report.json'} and {Path(args.data_dir) / 'report.png'}")
    return 1 if report["leaking_groups"] else 0
