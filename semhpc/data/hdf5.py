"""`semhpc hdf5 SRC OUT [--previews] [--facility-metadata FILE]`: one NFFA HDF5 file per SEM image
(Aversa 2018, §5.1).

The NFFA repository packs each image with its user, sample and instrument metadata into one HDF5
file, so a search engine can find images by who measured what with which settings and, after
`semhpc classify --hdf5`, by category.
Every image file below SRC (any folder layout) becomes OUT/<same relative path>.h5:

    /                 attributes: schema_version (SCHEMA_VERSION), source_file (path relative to
                      SRC), pixel_sha256 (of the pixels below), created_by ("semhpc X.Y")
    /image            uint8 [height, width] as the SEM reader returns it (data bar cut, 16-bit
                      mapped to 8-bit, see sem_tiff.py); chunked CHUNK_SIDE x CHUNK_SIDE, gzip;
                      HDF5 image attributes (CLASS=IMAGE, IMAGE_SUBCLASS=IMAGE_GRAYSCALE) so
                      HDFView shows it as a picture
    /metadata         one attribute per normalised field that has a value (vendor, model,
                      pixel_size_m, magnification, hv_volts, working_distance_m, detector,
                      acquired_at, width, height, dtype, format, ...; an unknown field has no
                      attribute), `raw` (the vendor blocks as a JSON string) and `warnings`
                      (the reader's warnings as a JSON list)
    /user, /sample    one string attribute per field that has a value, from the facility sidecar
                      (--facility-metadata) or else the instrument's tags, and `sources` (JSON:
                      field -> "facility" | "instrument"); fields in semhpc/data/nffa_context.py
    /classification   empty; `semhpc classify --hdf5` fills it (semhpc/classify/hdf5_group.py)

With `--previews`, OUT/<relative path>.jpg holds a JPEG of the same pixels (the thesis's tif -> jpg
step, for web galleries).

Runs as one process or under `mpirun -np N` like `semhpc ingest`: rank 0 lists SRC and deals the
files to the ranks by size. Each output is written to a temporary file and renamed, and an existing
.h5 is never rewritten (it may already hold a classification), so a rerun after an interruption
converts only what is missing. Exit codes: 0 all converted, 1 some files failed (OUT/errors.csv),
2 user error, 3 internal error.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semhpc import __version__
from semhpc.data.conversion import check_source_and_output, write_csv
from semhpc.data.nffa_context import instrument_context, load_facility_metadata, merge, normalised_path, write_groups
from semhpc.data.sem_tiff import SemImage, SemReadError, read_sem_tiff
from semhpc.data.source_tree import FoundFile, find_images
from semhpc.data.tfrecord import pixel_sha256
from semhpc.ranks import jobs
from semhpc.ranks.world import World
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError
from semhpc.utils.paths import display_path

SCHEMA_VERSION = 2  # 2: /user and /sample groups
CHUNK_SIDE = 256
GZIP_LEVEL = 4
PREVIEW_QUALITY = 90


@dataclass(frozen=True)
class Hdf5Settings:
    source: Path
    out: Path
    previews: bool = False
    facility_metadata: Path | None = None  # sidecar CSV/YAML of user and sample fields per image


@dataclass(frozen=True)
class Hdf5Plan:
    files: tuple[FoundFile, ...]  # every image with a missing output
    failed: tuple[tuple[str, str], ...]  # (path relative to SRC, reason) found while listing
    assignment: tuple[tuple[int, ...], ...]  # per rank: indices into `files`
    already_done: int
    facility: dict = None  # {path below SRC: user/sample context} for the files to convert
    facility_unmatched: int = 0  # sidecar rows naming no image below SRC

    @property
    def pending_images(self) -> int:
        return len(self.files)


def convert_tree(settings: Hdf5Settings, world: World) -> int:
    """Convert every image below SRC on the ranks of `world`; returns the exit code."""

    def convert_mine(plan: Hdf5Plan, mine, advance) -> list[tuple[str, str]]:
        failed = []
        for index in mine:
            relative = plan.files[index].path
            failed += convert_file(settings, relative, (plan.facility or {}).get(normalised_path(relative)))
            advance()
        return failed

    def merge(plan: Hdf5Plan, per_rank: dict[int, list]) -> int:
        return finish(settings, plan, [tuple(row) for rows in per_rank.values() for row in rows])

    return jobs.run_jobs(world, "hdf5", lambda: make_plan(settings, world.size), convert_mine, merge)


def output_path(out: Path, relative: str, suffix: str) -> Path:
    """OUT/<relative path with `suffix`>: the layout `semhpc classify --hdf5` looks up."""
    return Path(out) / Path(relative).with_suffix(suffix)


def make_plan(settings: Hdf5Settings, ranks: int) -> Hdf5Plan:
    source, out = Path(settings.source), Path(settings.out)
    check_source_and_output(source, out)
    found, skipped = find_images(source)
    if not found and not skipped:
        raise SemhpcError(f"{display_path(source)}: no image files found (.tif, .tiff, .png, .jpg, .jpeg)")
    failed = [(item.path, item.reason) for item in skipped]
    unique = []
    for files in _by_output_name(found).values():
        unique.append(files[0])
        failed += [(other.path, f"same output name as {display_path(files[0].path)}; skipped") for other in files[1:]]
    todo = [item for item in sorted(unique, key=lambda item: item.path) if _missing_outputs(settings, item.path)]
    assignment = jobs.deal_by_weight([item.size for item in todo], ranks)
    facility, unmatched = {}, 0
    if settings.facility_metadata is not None:
        rows = load_facility_metadata(settings.facility_metadata)
        images = {normalised_path(item.path) for item in unique}
        unmatched = len(set(rows) - images)
        facility = {path: rows[path] for path in (normalised_path(item.path) for item in todo) if path in rows}
    return Hdf5Plan(tuple(todo), tuple(failed), tuple(map(tuple, assignment)), len(unique) - len(todo),
                    facility, unmatched)


def _by_output_name(found: list[FoundFile]) -> dict[Path, list[FoundFile]]:
    groups = defaultdict(list)
    for item in found:
        groups[Path(item.path).with_suffix("")].append(item)
    return groups


def _missing_outputs(settings: Hdf5Settings, relative: str) -> list[str]:
    suffixes = (".h5", ".jpg") if settings.previews else (".h5",)
    return [suffix for suffix in suffixes if not output_path(settings.out, relative, suffix).exists()]


def convert_file(settings: Hdf5Settings, relative: str, facility: dict | None = None) -> list[tuple[str, str]]:
    """Write the missing outputs of one image (`facility`: its sidecar user/sample fields);
    returns [(path, reason)] if it cannot be read."""
    source_path = os.path.join(os.fsdecode(settings.source), relative)
    try:
        image = read_sem_tiff(source_path)
    except SemReadError as exc:
        return [(exc.path, exc.reason)]
    for suffix in _missing_outputs(settings, relative):
        target = output_path(settings.out, relative, suffix)
        try:
            if suffix == ".h5":
                write_hdf5(image, target, display_path(relative), facility)
            else:
                write_preview(image, target)
        except OSError as exc:
            raise SemhpcError(f"{display_path(target)}: cannot write: {exc.strerror or exc}") from exc
    return []


def write_hdf5(image: SemImage, target: Path, source_file: str, facility: dict | None = None) -> None:
    """The NFFA HDF5 file of one image (layout in the module docstring), written atomically;
    `facility` holds its sidecar user/sample fields, which win over the instrument's tags."""
    import h5py

    height, width = image.pixels.shape
    # Built in memory, then written as bytes: h5py meeting a full disk while closing a file leaves
    # HDF5's state broken (a segfault at exit); a plain write fails cleanly (atomic_path: one line).
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["source_file"] = source_file
        h5.attrs["pixel_sha256"] = pixel_sha256(image.pixels)
        h5.attrs["created_by"] = f"semhpc {__version__}"
        dataset = h5.create_dataset("image", data=image.pixels, dtype=np.uint8,
                                    chunks=(min(height, CHUNK_SIDE), min(width, CHUNK_SIDE)),
                                    compression="gzip", compression_opts=GZIP_LEVEL)
        dataset.attrs["CLASS"] = np.bytes_("IMAGE")
        dataset.attrs["IMAGE_VERSION"] = np.bytes_("1.2")
        dataset.attrs["IMAGE_SUBCLASS"] = np.bytes_("IMAGE_GRAYSCALE")
        dataset.attrs["IMAGE_WHITE_IS_ZERO"] = np.uint8(0)
        metadata = h5.create_group("metadata")
        for field, value in image.meta.items():
            if value is not None:
                metadata.attrs[field] = value
        metadata.attrs["raw"] = json.dumps(image.raw, ensure_ascii=False)
        metadata.attrs["warnings"] = json.dumps(image.warnings, ensure_ascii=False)
        write_groups(h5, *merge(instrument_context(image.raw), facility))
        h5.create_group("classification")
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_preview(image: SemImage, target: Path) -> None:
    from PIL import Image

    with atomic.atomic_path(target) as tmp:
        Image.fromarray(image.pixels).save(tmp, format="JPEG", quality=PREVIEW_QUALITY)


def finish(settings: Hdf5Settings, plan: Hdf5Plan, read_failures: list[tuple[str, str]]) -> int:
    source = os.fsdecode(settings.source)
    failed = sorted([(display_path(os.path.join(source, path)), reason) for path, reason in plan.failed]
                    + read_failures)
    write_csv(Path(settings.out) / "errors.csv", failed)
    written = len(plan.files) - len(read_failures)
    reasons = f" (reasons in {display_path(settings.out)}/errors.csv)" if failed else ""
    print(f"hdf5: {written} image(s) converted, {plan.already_done} already present, {len(failed)} failed "
          f"-> {display_path(settings.out)}{reasons}")
    if settings.facility_metadata is not None:
        print(f"hdf5: facility metadata for {len(plan.facility)} of the converted image(s); "
              f"{plan.facility_unmatched} row(s) of {display_path(settings.facility_metadata)} name no image below "
              f"{display_path(settings.source)}")
    return jobs.EXIT_FILES_FAILED if failed else jobs.EXIT_OK
