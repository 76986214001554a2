"""What the two file conversions, `semhpc ingest` and `semhpc hdf5`, share: the checks of the
source and output folders before any work is dealt, and the CSV files naming failed inputs."""

from __future__ import annotations

import csv
from pathlib import Path

from semhpc.utils.atomic import atomic_path
from semhpc.utils.errors import SemhpcError
from semhpc.utils.paths import display_path


def check_source_and_output(source: Path, out: Path, expected_layout: str = "") -> None:
    """SOURCE is a folder, OUT is a folder or absent, and OUT is not inside SOURCE (a conversion
    would read its own output); `expected_layout` is added to the "not found" message."""
    if not source.is_dir():
        raise SemhpcError(f"{display_path(source)}: source folder not found{expected_layout}")
    if out.exists() and not out.is_dir():
        raise SemhpcError(f"{display_path(out)}: output exists and is not a folder")
    if out.resolve().is_relative_to(source.resolve()):
        raise SemhpcError(f"{display_path(out)}: the output folder must not be inside the source folder "
                          f"{display_path(source)}")


def write_csv(path, rows, header=("path", "reason")) -> None:
    """errors.csv (or warnings.csv) of a conversion, atomically; UTF-8, paths as display_path gives them."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
