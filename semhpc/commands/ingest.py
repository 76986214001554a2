"""`semhpc ingest SRC OUT`: folder-per-category SEM images -> sharded TFRecords + manifest.json.

Runs as one process or under `mpirun -np N` (each rank writes whole shards); resumable after an
interruption. Exit codes: 0 all files ingested, 1 some were skipped (OUT/errors.csv), 2 user
error, 3 internal error. Details in semhpc/data/ingest.py and docs/ingest.md.
"""

from __future__ import annotations

from pathlib import Path

from semhpc.data.split import parse_fractions
from semhpc.ranks.world import mpi_world
from semhpc.utils import options

HELP = ("Convert SRC/<Category>/*.tif into sharded TFRecords with a stable 80/10/10 split "
        "(MPI-parallel, resumable); exit 1 if any file was skipped.")


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SRC", help="folder with one sub-folder per category")
    parser.add_argument("out", metavar="OUT", help="dataset folder to write (manifest.json, shards, errors.csv)")
    parser.add_argument("--size", type=options.image_size, metavar="WxH",
                        help="stored image size, e.g. 128x96 (default: keep each image's own size)")
    parser.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                        help="split fractions (default: 0.8,0.1,0.1); a file's split is a hash of its name")
    parser.add_argument("--shards-per-split", type=options.bounded_int(1, 10_000), metavar="K",
                        help="TFRecord shards per split (default: about 1000 images per shard)")
    parser.add_argument("--class-map", metavar="FILE.yaml",
                        help="folder -> class renames/merges and the class list (default: the ten "
                             "categories; Pillars, Forest and Cantilever_Tips merged)")


def main(args) -> int:
    from semhpc.data.class_map import load_class_map
    from semhpc.data.ingest import IngestSettings, ingest

    settings = IngestSettings(
        source=Path(args.source),
        out=Path(args.out),
        size=args.size,
        fractions=parse_fractions(args.split),
        shards_per_split=args.shards_per_split,
        class_map=load_class_map(args.class_map),
    )
    return ingest(settings, mpi_world())

