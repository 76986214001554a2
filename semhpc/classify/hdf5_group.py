"""The `classification` group of an image's NFFA HDF5 file (CONTRACTS.md "NFFA HDF5").

`semhpc hdf5 SRC OUT` creates one file per image with an empty `classification` group; after
classifying, the Aversa pipeline adds the top-5 labels and scores as metadata (docs/background.md: Data,
002 §5.1). This module only ever opens those files in append mode and touches nothing but
that group, so it cannot damage the image or its metadata.

Group layout: attributes `top1_label`, `top1_score`, `decision`, `model_version`, `classified_at`
(ISO 8601 UTC); datasets `top5_labels` (UTF-8 strings) and `top5_scores` (float32[5]). A rerun
replaces the group's content, so writing twice leaves the same result as writing once.

Which file belongs to an image: the image's path relative to the classified folder (for a list
input: the deepest folder holding every listed file), with the suffix replaced by `.h5`, below
the `--hdf5` folder -- the layout `semhpc hdf5` writes (`semhpc.data.hdf5.output_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from semhpc.classify.policy import TOP_K
from semhpc.utils.paths import display_path

GROUP = "classification"


class Hdf5WriteError(Exception):
    """The classification could not be stored; str() is the reason for errors.csv."""


def hdf5_path(image_path: str, input_root: str, hdf5_dir: str | os.PathLike) -> Path:
    from semhpc.data.hdf5 import output_path

    return output_path(Path(hdf5_dir), os.path.relpath(image_path, input_root), ".h5")


def input_root(source: str | os.PathLike, paths: list[str]) -> str:
    """The folder image paths are taken relative to (see the module docstring)."""
    if Path(source).is_dir():
        return os.path.abspath(source)
    return os.path.commonpath([os.path.dirname(path) for path in paths])


def write_classification(h5_file: Path, prediction: dict, classified_at: str) -> None:
    """Fill the `classification` group from one predictions row (see policy.prediction)."""
    import h5py

    if not h5_file.is_file():
        raise Hdf5WriteError(f"HDF5 file {display_path(h5_file)} not found (create it with `semhpc hdf5`)")
    ranked = [(prediction[f"top{k}_label"], prediction[f"top{k}_score"]) for k in range(1, TOP_K + 1)
              if prediction[f"top{k}_label"] is not None]
    try:
        with h5py.File(h5_file, "a") as h5:
            group = h5.require_group(GROUP)
            for name in list(group):
                del group[name]
            group.attrs["top1_label"] = prediction["top1_label"]
            group.attrs["top1_score"] = float(prediction["top1_score"])
            group.attrs["decision"] = prediction["decision"]
            group.attrs["model_version"] = prediction["model_version"]
            group.attrs["classified_at"] = classified_at
            group.create_dataset("top5_labels", data=[label for label, _ in ranked],
                                 dtype=h5py.string_dtype("utf-8"))
            group.create_dataset("top5_scores", data=np.array([score for _, score in ranked], np.float32))
    except (OSError, ValueError, TypeError) as exc:  # h5py's errors for unreadable or locked files
        raise Hdf5WriteError(f"HDF5 file {display_path(h5_file)}: cannot write the {GROUP} group: {exc}") from exc


def read_classification(h5_file: Path) -> dict:
    """The group as written by `write_classification` (attributes + the two datasets as lists)."""
    import h5py

    with h5py.File(h5_file, "r") as h5:
        group = h5[GROUP]
        result = {key: _python_value(value) for key, value in group.attrs.items()}
        if "top5_labels" in group:
            result["top5_labels"] = [label.decode() for label in group["top5_labels"][()]]
            result["top5_scores"] = group["top5_scores"][()].tolist()
        return result


def _python_value(value):
    return value.item() if isinstance(value, np.generic) else value
