"""Catalog rows from the three places semhpc writes image facts (see store.py for the columns).

* an ingested dataset (`semhpc ingest`): class, split and instrument metadata of every record;
* NFFA HDF5 files (`semhpc hdf5`, `semhpc classify --hdf5`): metadata, user and sample fields and
  the classification group, found recursively below a folder;
* a predictions.csv (`semhpc classify`): the top-5 and the decision. Its paths are made relative
  to `root` (default: the deepest folder holding every listed image, as `classify --hdf5` does),
  so they meet the dataset's and the HDF5 files' paths.

A file that cannot be read is skipped with a reason; the rest is indexed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from semhpc.catalog.store import METADATA_COLUMNS, PREDICTION_COLUMNS
from semhpc.classify.hdf5_group import GROUP as CLASSIFICATION_GROUP
from semhpc.classify.policy import PREDICTION_FIELDS, TOP_K
from semhpc.data.nffa_context import FIELDS, normalised_path
from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import read_input_text


def dataset_rows(data_dir: str | Path) -> list[dict]:
    """One row per record of an ingested dataset: path, class, split and the metadata columns."""
    from semhpc.monitor.dataset import image_table

    table = image_table(data_dir)
    rows = []
    for record in table.to_dict("records"):
        row = {"path": normalised_path(record["path"]), "class": record["class"], "split": record["split"],
               "dataset": str(Path(data_dir).resolve())}
        row.update({column: _plain(record.get(column)) for column in METADATA_COLUMNS})
        rows.append(row)
    return rows


def hdf5_rows(hdf5_dir: str | Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows, [(file, reason)]) of every .h5 below `hdf5_dir`."""
    import h5py

    rows, failed = [], []
    for path in sorted(Path(hdf5_dir).rglob("*.h5")):
        try:
            with h5py.File(path, "r") as h5:
                source = h5.attrs.get("source_file")
                if source is None or "metadata" not in h5:
                    failed.append((str(path), "not an NFFA HDF5 file of `semhpc hdf5` (no source_file)"))
                    continue
                row = {"path": normalised_path(str(source)), "hdf5_file": str(path.resolve())}
                metadata = h5["metadata"].attrs
                row.update({column: _plain(metadata.get(column)) for column in METADATA_COLUMNS
                            if column != "pixel_sha256"})
                row["pixel_sha256"] = _plain(h5.attrs.get("pixel_sha256"))
                for group, fields in FIELDS.items():
                    attributes = h5[group].attrs if group in h5 else {}
                    row.update({f"{group}_{field}": _plain(attributes.get(field)) for field in fields})
                classification = h5.get(CLASSIFICATION_GROUP)
                if classification is not None and "top1_label" in classification.attrs:
                    row.update(_classification_columns(classification))
                rows.append(row)
        except (OSError, KeyError) as exc:
            failed.append((str(path), f"unreadable HDF5 file ({exc})"))
    return rows, failed


def _classification_columns(group) -> dict:
    labels = [_plain(label) for label in group["top5_labels"][()]] if "top5_labels" in group else []
    scores = [float(score) for score in group["top5_scores"][()]] if "top5_scores" in group else []
    row = {f"top{k + 1}_label": labels[k] if k < len(labels) and labels[k] else None for k in range(TOP_K)}
    row.update({f"top{k + 1}_score": scores[k] if k < len(labels) and labels[k] else None for k in range(TOP_K)})
    row.update(decision=_plain(group.attrs.get("decision")), model_version=_plain(group.attrs.get("model_version")))
    return row


def prediction_rows(csv_path: str | Path, root: str | Path | None = None) -> list[dict]:
    """One row per line of a predictions.csv (or its folder), paths relative to `root`."""
    csv_path = Path(csv_path) / "predictions.csv" if Path(csv_path).is_dir() else Path(csv_path)
    if not csv_path.exists():
        raise SemhpcError(f"{csv_path}: predictions file not found (run `semhpc classify ... --out DIR`)")
    with io.StringIO(read_input_text(csv_path, "predictions file"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [field for field in PREDICTION_FIELDS if field not in (reader.fieldnames or [])]
        if missing:
            raise SemhpcError(f"{csv_path}: not a predictions.csv of `semhpc classify` (no {', '.join(missing)})")
        lines = list(reader)
    if not lines:
        return []
    paths = [line["path"] for line in lines]
    base = os.path.abspath(root) if root is not None else os.path.commonpath([os.path.dirname(p) for p in paths])
    rows = []
    for line in lines:
        relative = normalised_path(os.path.relpath(line["path"], base))
        if relative is None:
            raise SemhpcError(f"{csv_path}: {line['path']} is not below --predictions-root {base}")
        row = {"path": relative, "predictions_file": str(csv_path.resolve())}
        for column in PREDICTION_COLUMNS:
            value = line.get(column) or None
            row[column] = float(value) if value is not None and column.endswith("_score") else value
        rows.append(row)
    return rows


def _plain(value):
    """A value SQLite stores: bytes decoded, numpy scalars as Python numbers, NaN as None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
