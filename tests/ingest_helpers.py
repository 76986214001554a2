"""Small folder-per-category SEM trees and ways to run and read `semhpc ingest` on them.

Shared by the ingest, pipeline, HDF5 and data-report tests. Images are tiny and every one has its
own pixels (a seeded random gradient), so a test can tell them apart after a round trip.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sem_fixtures import gradient, write_fei_tiff, write_generic_tiff, write_zeiss_tiff
from semhpc.data.categories import CATEGORIES


def write_image(path: Path, pixels: np.ndarray, vendor: str = "generic") -> None:
    """One SEM TIFF as `vendor` ("fei", "zeiss" or "generic") writes it; FEI gets a data bar below."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if vendor == "fei":
        write_fei_tiff(path, pixels)
    elif vendor == "zeiss":
        write_zeiss_tiff(path, pixels)
    else:
        write_generic_tiff(path, pixels)


def write_tree(root: Path, per_class: int = 2, size=(32, 24), classes=CATEGORIES) -> dict[str, np.ndarray]:
    """root/<class>/<class>_<i>.tif for each class, vendors alternating; returns {relative path: pixels}."""
    width, height = size
    vendors = ("fei", "zeiss", "generic")
    written = {}
    for class_index, name in enumerate(classes):
        for index in range(per_class):
            pixels = gradient(height, width, seed=class_index * 100 + index)
            relative = f"{name}/{name.lower()}_{index:03d}.tif"
            write_image(root / relative, pixels, vendors[(class_index + index) % len(vendors)])
            written[relative] = pixels
    return written


def read_errors(out: Path) -> dict[str, str]:
    """errors.csv as {path: reason}."""
    with open(out / "errors.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row["reason"] for row in csv.DictReader(handle)}


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def read_records(out: Path) -> list[dict]:
    """Every record of every shard in the manifest, decoded (tfrecord.decode_example)."""
    from semhpc.data import tfrecord

    manifest = read_manifest(out)
    return [tfrecord.decode_example(record) for split in manifest["shards"]
            for shard in manifest["shards"][split] for record in tfrecord.read_records(out / shard)]
