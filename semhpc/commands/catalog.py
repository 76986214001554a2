"""`semhpc catalog build DB --dataset D --hdf5 H --predictions P` and `semhpc catalog query DB ...`:
a searchable SQLite index of the archive (semhpc/catalog/store.py), built and refreshed in place."""

from __future__ import annotations

import json
import time
from datetime import datetime

from semhpc.utils.errors import SemhpcError
from semhpc.utils.options import bounded_int

# A query answers a person or a notebook: a million rows is already more than either reads.
MAX_ROWS = 1_000_000

HELP = ("Index the ingested dataset, the NFFA HDF5 files and classify predictions into a searchable "
        "database (`catalog build`), and search it (`catalog query`).")


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="index sources into DB (created, or updated in place)",
                               description="Insert or update one row per image (key: its path below the archive "
                                           "folder); indexing a source again updates its rows, never duplicates them.")
    build.add_argument("db", metavar="DB", help="catalog file (SQLite) or postgresql:// URL, created when missing")
    build.add_argument("--dataset", action="append", default=[], metavar="DIR",
                       help="ingested dataset (`semhpc ingest` OUT): class, split, metadata (repeatable)")
    build.add_argument("--hdf5", action="append", default=[], metavar="DIR",
                       help="folder of NFFA HDF5 files (`semhpc hdf5`): metadata, user, sample, "
                            "classification (repeatable)")
    build.add_argument("--predictions", action="append", default=[], metavar="CSV",
                       help="predictions.csv of `semhpc classify` or its folder (repeatable)")
    build.add_argument("--predictions-root", metavar="DIR",
                       help="the folder classify was given (default: the deepest folder holding every listed "
                            "image); prediction paths are taken relative to it")

    query = actions.add_parser("query", help="search DB; a table, or JSON with --json",
                               description="Every condition given must hold; ranges are MIN..MAX, either side "
                                           "may be left out (0.9.. = at least 0.9).")
    query.add_argument("db", metavar="DB", help="catalog file or postgresql:// URL built by `semhpc catalog build`")
    query.add_argument("--class", dest="image_class", metavar="NAME", help="ingested category (the true label)")
    query.add_argument("--label", metavar="NAME", help="top-1 predicted category")
    query.add_argument("--confidence", metavar="MIN..MAX", help="top-1 score range, e.g. 0.9..")
    query.add_argument("--decision", choices=("auto", "suggest", "manual"))
    query.add_argument("--instrument", metavar="NAME", help="vendor or model, e.g. FEI, Zeiss, 'Helios NanoLab 660'")
    query.add_argument("--magnification", metavar="MIN..MAX", help="e.g. 1000..50000")
    query.add_argument("--pixel-size", metavar="MIN..MAX", help="metres per pixel, e.g. 1e-9..5e-9")
    query.add_argument("--date", metavar="FROM..TO", help="acquisition date range, ISO: 2016-06-01..2016-06-30")
    query.add_argument("--text", metavar="WORDS", help="free text: every word must start a word of the path, "
                                                       "class, labels, instrument, user or sample fields")
    query.add_argument("--limit", type=bounded_int(1, MAX_ROWS), default=100,
                       help=f"at most this many rows, 1 to {MAX_ROWS:,} (default 100)")
    query.add_argument("--json", action="store_true", help="print the rows as JSON")


def main(args) -> int:
    from semhpc.catalog import store

    if args.action == "build":
        return _build(args, store)
    return _query(args, store)


def _build(args, store) -> int:
    from semhpc.catalog import sources

    if not (args.dataset or args.hdf5 or args.predictions):
        raise SemhpcError("catalog build: give at least one --dataset, --hdf5 or --predictions")
    started = time.perf_counter()
    read_sources = []  # every source read before the catalog is opened: a bad one leaves no catalog behind
    failed = []
    for name, items, read in (("dataset", args.dataset, sources.dataset_rows),
                              ("hdf5", args.hdf5, sources.hdf5_rows),
                              ("predictions", args.predictions,
                               lambda path: sources.prediction_rows(path, args.predictions_root))):
        for item in items:
            result = read(item)
            rows, problems = result if isinstance(result, tuple) else (result, [])
            failed += problems
            read_sources.append((name, item, rows))
    db = store.open_catalog(args.db)
    before = store.count_rows(db)
    for name, item, rows in read_sources:
        print(f"catalog: {store.upsert(db, rows)} row(s) from {name} {item}", flush=True)
    after = store.count_rows(db)
    print(f"catalog: {after} image(s) in {args.db} ({after - before} new) in {time.perf_counter() - started:.1f} s")
    for path, reason in failed:
        print(f"catalog: skipped {path}: {reason}")
    return 1 if failed else 0


def _query(args, store) -> int:
    query = store.Query(image_class=args.image_class, label=args.label, decision=args.decision,
                        instrument=args.instrument, text=args.text, limit=args.limit,
                        confidence=_range(args.confidence, "--confidence", float),
                        magnification=_range(args.magnification, "--magnification", float),
                        pixel_size_m=_range(args.pixel_size, "--pixel-size", float),
                        date=_range(args.date, "--date", _iso_date))
    rows = store.run_query(store.open_catalog(args.db, create=False), query)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    widths = {column: max([len(column), *(len(_cell(row[column])) for row in rows)]) for column in store.TABLE_COLUMNS}
    print("  ".join(column.ljust(widths[column]) for column in store.TABLE_COLUMNS))
    for row in rows:
        print("  ".join(_cell(row[column]).ljust(widths[column]) for column in store.TABLE_COLUMNS))
    print(f"{len(rows)} row(s)" + (f" (--limit {query.limit})" if len(rows) == query.limit else ""))
    return 0


def _range(text: str | None, option: str, convert):
    """MIN..MAX -> (min, max) with None for an open side; None -> (None, None)."""

    if text is None:
        return None, None
    if ".." not in text:
        raise SemhpcError(f"{option} {text!r}: give a range MIN..MAX (either side may be empty)")
    low, high = (part.strip() for part in text.split("..", 1))
    try:
        return (convert(low) if low else None), (convert(high) if high else None)
    except ValueError as exc:
        raise SemhpcError(f"{option} {text!r}: {exc}") from None


def _iso_date(text: str) -> str:
    datetime.fromisoformat(text)  # raises ValueError naming the text
    return text



def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
