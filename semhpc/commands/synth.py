"""`semhpc synth OUT --per-class N`: a synthetic SEM archive, folder per category, FEI/Zeiss TIFFs."""

from __future__ import annotations

import re

from semhpc.utils.errors import SemhpcError

HELP = "Draw synthetic SEM TIFFs (FEI/Zeiss metadata, data bars, annotations) into OUT/<Category>/."

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder; one sub-folder per category is created")
    parser.add_argument("--per-class", type=int, required=True, metavar="N",
                        help="images per category (with --imbalance: for the largest category)")
    parser.add_argument("--size", default="1024x768", metavar="WxH",
                        help="image area in pixels, as in the NFFA archive by default (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files (default: 0)")
    parser.add_argument("--imbalance", action="store_true",
                        help="scale category sizes to the labelled archive's proportions (REFERENCE §1)")


def main(args) -> int:
    from semhpc.data import synth

    size = parse_size(args.size)
    counts = synth.generate(args.out, args.per_class, size, seed=args.seed, imbalance=args.imbalance)
    per_category = ", ".join(f"{category} {count}" for category, count in counts.items())
    print(f"wrote {sum(counts.values())} SEM TIFFs ({size[0]}x{size[1]}) to {args.out}: {per_category}")
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """"1024x768" -> (1024, 768): width then height, as image sizes are spoken."""
    match = _SIZE.match(text)
    if match is None:
        raise SemhpcError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1024x768")
    return int(match.group(1)), int(match.group(2))
