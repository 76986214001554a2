"""`semhpc inspect FILE...`: what the SEM reader sees in each file (vendor, size, SI metadata).

It reads every file exactly as ingest will (pixels included), so "inspect says OK" means "ingest
can use it". Failures print one line each on stderr and make the exit code 1.
"""

from __future__ import annotations

import json
import math
import sys

from semhpc.utils.paths import display_path

HELP = "Show the normalised metadata of SEM images (vendor, size, pixel size, HV, WD, ...); exit 1 if any fails."

_SI_PREFIXES = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M"}


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="SEM images: TIFF (FEI, Zeiss or generic); PNG/JPEG are read without vendor metadata")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list, one object per file; failures as {\"path\", \"error\"}")
    parser.add_argument("--raw", action="store_true", help="with --json, also include the raw vendor blocks")


def main(args) -> int:
    records = [_inspect_one(path, include_raw=args.raw) for path in args.files]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        if hasattr(sys.stdout, "reconfigure"):  # a vendor string must not crash a non-UTF-8 terminal
            sys.stdout.reconfigure(errors="backslashreplace")
        print("\n\n".join(_describe(record) for record in records if "error" not in record))
    return 1 if any("error" in record for record in records) else 0


def _inspect_one(path: str, include_raw: bool) -> dict:
    """The file's normalised record, or {"path", "error"} after printing the error on stderr."""
    from semhpc.data.sem_tiff import SemReadError, read_sem_tiff

    try:
        image = read_sem_tiff(path)
    except SemReadError as exc:
        print(f"semhpc inspect: {exc}", file=sys.stderr)
        return {"path": exc.path, "error": exc.reason}
    record = {"path": display_path(path), **image.meta, "warnings": image.warnings}
    if include_raw:
        record["raw"] = image.raw
    return record


def _describe(record: dict) -> str:
    """A readable block: the path, then one "label  value" line per field, "-" when unknown."""
    size = f"{record['width']} x {record['height']} px"
    if record["source_height"] is not None:
        size += f" (data bar cut; the page has {record['source_height']} rows)"
    magnification = record["magnification"]
    rows = [
        ("vendor", record["vendor"] or "unknown"),
        ("model", record["model"]),
        ("format", f"{record['format']}, {record['dtype']}"),
        ("size", size),
        ("pixel size", _with_prefix(record["pixel_size_m"], "m")),
        ("magnification", None if magnification is None else f"{magnification:.4g} x"),
        ("high voltage", _with_prefix(record["hv_volts"], "V")),
        ("working distance", _with_prefix(record["working_distance_m"], "m")),
        ("detector", record["detector"]),
        ("acquired at", record["acquired_at"]),
    ]
    rows += [("warning", warning) for warning in record["warnings"]]
    return "\n".join([record["path"]] + [f"  {label:<17} {'-' if value is None else value}" for label, value in rows])


def _with_prefix(value: float | None, unit: str) -> str | None:
    """2e-08, "m" -> "20 nm"; None stays None. Values are positive (the reader guarantees it)."""
    if value is None:
        return None
    exponent = min(max(3 * math.floor(math.log10(value) / 3), -12), 6)
    return f"{value / 10 ** exponent:.4g} {_SI_PREFIXES[exponent]}{unit}"
