"""An ingested dataset folder (`semhpc ingest SRC OUT`) as tables: class balance per split from
manifest.json, and per-image metadata and sample pixels from the TFRecord shards themselves
(CONTRACTS "Data on disk"), so what is shown is what the trainer reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from semhpc.data import tfrecord
from semhpc.utils.errors import SemhpcError

SPLITS = ("train", "validation", "test")


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise SemhpcError(f"{path}: not found (is {data_dir} a folder written by `semhpc ingest`?)")
    return json.loads(path.read_text())


def class_balance(data_dir: str | Path) -> pd.DataFrame:
    """Images per class (rows, in label order) and split (columns)."""
    manifest = load_manifest(data_dir)
    counts = manifest["counts"]
    return pd.DataFrame({split: [counts.get(split, {}).get(c, 0) for c in manifest["classes"]]
                         for split in SPLITS}, index=pd.Index(manifest["classes"], name="class"))


def image_table(data_dir: str | Path, splits=SPLITS) -> pd.DataFrame:
    """One row per stored image: split, label, class, path, height, width, pixel_sha256 and every
    `meta/<field>` as a column named after the field (vendor, magnification, hv_volts, ...)."""
    rows = [{k: v for k, v in example.items() if k != "image"} for example in _examples(data_dir, splits)]
    return pd.DataFrame(rows)


def sample_images(data_dir: str | Path, per_class: int = 4, split: str = "train") -> dict[str, list[np.ndarray]]:
    """Up to `per_class` decoded images (uint8 HxW) per class, in stored order."""
    classes = load_manifest(data_dir)["classes"]
    samples: dict[str, list[np.ndarray]] = {name: [] for name in classes}
    for example in _examples(data_dir, (split,)):
        chosen = samples[example["class"]]
        if len(chosen) < per_class:
            chosen.append(tfrecord.png_pixels(example["image"]))
        if all(len(images) == per_class for images in samples.values()):
            break
    return samples


def _examples(data_dir: str | Path, splits) -> Iterator[dict]:
    """The records of the splits' shards, shard by shard, flattened for tables: the metadata
    fields become top-level keys and `class` names the label."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ INFO lines
    manifest = load_manifest(data_dir)
    for split in splits:
        for shard in manifest["shards"].get(split, []):
            for serialized in tfrecord.read_records(Path(data_dir) / shard):
                record = tfrecord.decode_example(serialized)
                meta = record.pop("meta")
                yield {**record, "class": manifest["classes"][record["label"]],
                       "path": record["path"].decode("utf-8", "replace"), **meta}
