"""`semhpc report RUN_DIR`: a static HTML report of a run (the notebooks' figures as PNG files)."""

from __future__ import annotations

HELP = "Write a static HTML report of a run (training, evaluation; optionally scores, scaling, profile) with PNG figures."


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="run directory written by `semhpc train`")
    parser.add_argument("--out", help="output folder for index.html and the PNGs (default RUN_DIR/report)")
    parser.add_argument("--predictions", help="also review `semhpc classify` predictions of a labelled tree "
                                               "(predictions.csv or its folder)")
    parser.add_argument("--sweep", help="also show a `semhpc bench --sweep` result (sweep.json or its folder)")
    parser.add_argument("--profile", help="also show a `semhpc profile --out` folder")


def main(args) -> int:
    from semhpc.monitor.report import write_report

    page = write_report(args.run_dir, args.out, predictions=args.predictions, sweep=args.sweep, profile=args.profile)
    print(page)
    return 0
