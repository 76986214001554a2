"""`semhpc classify --model BUNDLE --input DIR_OR_LIST --out OUT`: label images, top-5 + decision.

Runs as one process or as every rank of `mpirun -np N` / `srun` (ranks share the files
dynamically; see semhpc/classify/work.py and docs/classify.md). Rerunning the same command after
a crash resumes: finished chunks are kept, the rest is classified.
Exit status: 0 all classified, 1 some files in OUT/errors.csv (the rest classified), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path

from semhpc.utils import options

HELP = "Classify SEM images with an exported model (top-5, auto/suggest/manual); resumable, MPI-parallel."


def add_arguments(parser) -> None:
    parser.epilog = ("exit status: 0 every input classified; 1 some files could not be classified (listed in "
                     "OUT/errors.csv, all others classified); 2 usage error. Rerun the same command to resume.")
    parser.add_argument("--model", required=True, metavar="BUNDLE", help="bundle folder from `semhpc export`")
    parser.add_argument("--input", required=True, metavar="DIR_OR_LIST",
                        help="folder of images (searched recursively) or a text file with one path per line")
    parser.add_argument("--out", required=True, help="output folder: predictions.csv/.jsonl, errors.csv, ...")
    parser.add_argument("--hdf5", metavar="DIR",
                        help="also store the result in each image's NFFA HDF5 file below DIR (from `semhpc hdf5`)")
    parser.add_argument("--batch-size", type=options.bounded_int(1, options.MAX_BATCH),
                        default=32, help="images per forward pass (default 32)")
    parser.add_argument("--chunk-size", type=options.bounded_int(1, 1_000_000),
                        help="files per work unit handed to a rank and committed at once (default 2 batches)")
    parser.add_argument("--auto", type=options.bounded_float(0.0, 1.0), default=0.9,
                        help="top-1 score from which the label is assigned automatically "
                             "(default 0.9; see `semhpc calibrate`)")
    parser.add_argument("--suggest", type=options.bounded_float(0.0, 1.0), default=0.35,
                        help="top-1 score from which the top two are suggested; below: manual (default 0.35)")


def main(args) -> int:
    from semhpc.classify.policy import Thresholds
    from semhpc.classify.runner import ClassifySettings, classify

    settings = ClassifySettings(
        bundle=Path(args.model), source=Path(args.input), out=Path(args.out),
        hdf5_dir=Path(args.hdf5) if args.hdf5 else None, batch_size=args.batch_size,
        chunk_size=args.chunk_size, thresholds=Thresholds(auto=args.auto, suggest=args.suggest))
    return classify(settings)
