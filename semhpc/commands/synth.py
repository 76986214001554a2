"""`semhpc synth OUT --per-class N`: a synthetic SEM archive, folder per category, FEI/Zeiss TIFFs."""

from __future__ import annotations

from semhpc.utils import options

HELP = "Draw synthetic SEM TIFFs (FEI/Zeiss metadata, data bars, annotations) into OUT/<Category>/."


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder; one sub-folder per category is created")
    parser.add_argument("--per-class", type=options.bounded_int(1, 100_000), required=True, metavar="N",
                        help="images per category (with --imbalance: for the largest category)")
    parser.add_argument("--size", type=options.image_size, default="1024x768", metavar="WxH",
                        help="image area in pixels, as in the NFFA archive by default (default: %(default)s)")
    parser.add_argument("--seed", type=options.bounded_int(0, 2**31 - 1), default=0,
                        help="the same seed gives byte-identical files (default: 0)")
    parser.add_argument("--imbalance", action="store_true",
                        help="scale category sizes to the labelled archive's proportions (docs/background.md: Data)")


def main(args) -> int:
    from semhpc.data import synth

    size = args.size  # (width, height), range-checked by options.image_size
    counts = synth.generate(args.out, args.per_class, size, seed=args.seed, imbalance=args.imbalance)
    per_category = ", ".join(f"{category} {count}" for category, count in counts.items())
    print(f"wrote {sum(counts.values())} SEM TIFFs ({size[0]}x{size[1]}) to {args.out}: {per_category}")
    return 0

