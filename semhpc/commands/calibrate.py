"""`semhpc calibrate --model BUNDLE --data DATASET_DIR --split test`: trust in the top score.

Writes OUT/calibration-<split>.json and .png (see semhpc/classify/calibration.py) and prints the
0.5 crossings of P(top-1 correct) and P(top two correct) with 95% intervals, and the `--auto` /
`--suggest` thresholds for `semhpc classify` they and the precision targets propose.
"""

from __future__ import annotations

from pathlib import Path

from semhpc.utils import atomic, options
from semhpc.utils.errors import SemhpcError

HELP = "Calibrate the auto/suggest/manual thresholds of a bundle on a labelled split (JSON + PNG)."


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="BUNDLE", help="bundle folder from `semhpc export`")
    parser.add_argument("--data", metavar="DATASET_DIR",
                        help="ingested dataset (default: data.dir of the bundle's training config)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--out", help="folder for calibration-<split>.json/.png (default: BUNDLE/calibration)")
    parser.add_argument("--target-precision", type=options.bounded_float(0.0, 1.0), default=0.95,
                        help="wanted share of correct labels among `auto` decisions (default 0.95)")
    parser.add_argument("--suggest-precision", type=options.bounded_float(0.0, 1.0), default=0.8,
                        help="wanted share of `suggest` decisions with the right label in the top two (default 0.8)")
    parser.add_argument("--auto", type=options.bounded_float(0.0, 1.0),
                        default=0.9, help="current auto threshold, for comparison")
    parser.add_argument("--suggest", type=options.bounded_float(0.0, 1.0),
                        default=0.35, help="current suggest threshold, for comparison")
    parser.add_argument("--batch-size", type=options.bounded_int(1, options.MAX_BATCH), default=32)


def main(args) -> int:
    from semhpc.classify.bundle import read_bundle
    from semhpc.classify.calibration import analyse, plot, score_split
    from semhpc.classify.policy import Thresholds
    from semhpc.config import load_config

    for name in ("target_precision", "suggest_precision"):
        if not 0.0 < getattr(args, name) <= 1.0:
            raise SemhpcError(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(args, name)}")
    current = Thresholds(auto=args.auto, suggest=args.suggest)
    bundle = read_bundle(args.model)
    data_dir = args.data or load_config(bundle.path / "config.yaml").data.dir
    probabilities, labels = score_split(bundle, data_dir, args.split, args.batch_size)
    report = analyse(probabilities, labels, current, args.target_precision, args.suggest_precision)
    report.update(model_version=bundle.model_version, data=str(data_dir), split=args.split)

    out = Path(args.out) if args.out else bundle.path / "calibration"
    json_path, png_path = out / f"calibration-{args.split}.json", out / f"calibration-{args.split}.png"
    atomic.write_json(json_path, report)
    plot(report, png_path, f"{bundle.model_version} on {args.split} ({report['images']} images)")
    print(_summary(report))
    print(f"-> {json_path}, {png_path}")
    return 0


def _summary(report: dict) -> str:
    suggested = report["suggested_thresholds"]
    second = report["second_correct_when_top_wrong"]
    lines = [
        f"{report['images']} images: top-1 accuracy {report['top1_accuracy']:.3f}, "
        f"top-2 {report['top2_accuracy']:.3f}"
        + (f"; when top-1 is wrong, the second is right in {second:.0%}" if second is not None else ""),
    ]
    for key, label in (("top1", "P(top-1 correct)"), ("top2", "P(top-1 or top-2 correct)")):
        crossing = report["crossings"][key]
        if crossing["score"] is None:
            lines.append(f"{label} does not cross 0.5 on this split")
            continue
        interval = crossing["ci95"]
        lines.append(f"{label} crosses 0.5 at score {crossing['score']:.2f}, 95% interval "
                     f"[{interval[0]:.2f}, {interval[1]:.2f}] (crosses in {crossing['resamples_crossing']:.0%} "
                     "of bootstrap resamples)")
    if suggested["auto"] is None:
        lines.append(f"no threshold reaches auto precision {report['target_precision']:g} on this split")
    else:
        lines.append(f"suggested: --auto {suggested['auto']:.3f} --suggest {suggested['suggest']:.3f} "
                     f"(auto precision >= {report['target_precision']:g}, "
                     f"suggest top-2 rate >= {report['suggest_precision']:g})")
        if suggested["suggest"] == suggested["auto"]:
            lines.append("  no score band below auto reaches the suggest target: everything below auto is manual")
    by_crossing = report["crossing_thresholds"]
    if by_crossing["suggest"] is not None:
        lines.append(f"by crossing (the thesis' derivation): --auto {by_crossing['auto']:.3f} "
                     f"--suggest {by_crossing['suggest']:.3f} (suggest = the top-two crossing)")
    for name, policy in report["policy"].items():
        if policy is None:
            continue
        share = ", ".join(f"{decision} {fraction:.0%}" for decision, fraction in policy["share"].items())
        precision = policy["auto_precision"]
        lines.append(f"{name:>9} --auto {policy['auto']:.3f} --suggest {policy['suggest']:.3f}: {share}; "
                     f"auto precision {'-' if precision is None else f'{precision:.3f}'}")
    return "\n".join(lines)
