"""`semhpc eval RUN_DIR [--split test]`: score a trained run, as one process or under mpirun."""

from __future__ import annotations

import json
from pathlib import Path

from semhpc.utils import options

HELP = "Evaluate a trained run: top-1/top-5, per-class precision/recall/F1, confusion matrix -> RUN_DIR/eval.json."


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="run directory written by `semhpc train`")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--data", help="dataset folder (default: data.dir of the run's config)")
    parser.add_argument("--batch-size", type=options.bounded_int(1, options.MAX_BATCH),
                        default=32, help="images per rank per batch")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def main(args) -> int:
    from semhpc.runtime.run_evaluation import evaluate_run

    result = evaluate_run(Path(args.run_dir), args.split, data_dir=args.data, batch_size=args.batch_size)
    if result is not None:  # rank 0
        print(json.dumps(result, indent=2) if args.json else _table(result), flush=True)
    return 0


def _table(result: dict) -> str:
    from semhpc.runtime.evaluation import format_report

    last = result["last_evaluations"]
    line = (f"{last['split']} accuracy over the last {last['count']} epoch-end evaluations "
            f"(train.eval_split): {last['mean']:.3f} ± {last['std']:.3f}"
            if last["count"] else "no epoch evaluations in metrics.jsonl")
    return f"{result['split']} split of {result['run_dir']}\n{format_report(result)}\n{line}"
