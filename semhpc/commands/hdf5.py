"""`semhpc hdf5 SRC OUT [--previews]`: every SEM image below SRC -> OUT/<relative path>.h5 (NFFA layout).

Runs as one process or under `mpirun -np N`; resumable (existing .h5 files are never rewritten).
Exit codes: 0 all converted, 1 some files failed (OUT/errors.csv), 2 user error, 3 internal error.
Layout in semhpc/data/hdf5.py and docs/ingest.md.
"""

from __future__ import annotations

from pathlib import Path

from semhpc.ranks.world import mpi_world

HELP = ("Pack each SEM image below SRC with its metadata into OUT/<path>.h5 (NFFA HDF5; MPI-parallel, "
        "resumable); exit 1 if any file failed.")


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SRC", help="folder of SEM images (any layout; searched recursively)")
    parser.add_argument("out", metavar="OUT", help="folder for the .h5 files (mirrors SRC) and errors.csv")
    parser.add_argument("--previews", action="store_true", help="also write OUT/<path>.jpg previews (tif -> jpg)")
    parser.add_argument("--facility-metadata", metavar="FILE",
                        help="CSV or YAML export of user and sample fields per image (path below SRC); they go "
                             "to /user and /sample, over the instrument's own tags (docs/ingest.md)")


def main(args) -> int:
    from semhpc.data.hdf5 import Hdf5Settings, convert_tree

    facility = Path(args.facility_metadata) if args.facility_metadata else None
    return convert_tree(Hdf5Settings(Path(args.source), Path(args.out), args.previews, facility), mpi_world())
