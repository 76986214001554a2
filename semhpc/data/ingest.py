"""`semhpc ingest SRC OUT`: a folder-per-category tree of SEM images -> sharded TFRecords + manifest.

Why TFRecords (docs/background.md: Data, De Nobili §2.4.3): a few large files instead of 150,000 small ones
spare the parallel file system's metadata servers, and records carry the label, the split and the
instrument metadata with the pixels.

Steps
  1. Rank 0 lists SRC: top-level folders are categories through the class map (class_map.py);
     `source_tree` finds the image files and reports everything it skips. Each file's split and
     shard come from the hash of its path inside the category folder (split.py), so adding files
     never moves existing ones and changes only the shards they land in.
  2. Rank 0 deals the shards that are not finished yet to the ranks (semhpc/ranks/jobs.py); each rank
     reads its files with the SEM reader (sem_tiff.py), resizes them to the stored size and writes
     whole shards.
  3. Rank 0 merges every shard's result into manifest.json, errors.csv and warnings.csv.

Resuming. Each shard is written to a temporary file and renamed when complete, then its result
(counts, failures, warnings, a fingerprint of its inputs) is saved as OUT/.ingest/<shard>.json.
A shard counts as finished when that file exists, its fingerprint matches the shard's current
inputs (paths, sizes, modification times, stored size, classes) and the shard file has the
recorded length. A rerun after kill -9 at any point therefore writes only the shards that are
missing or whose inputs changed; finished shards are never rewritten. Leftover temporary files
are removed at the start, shard files the current plan no longer names at the end.

Exit codes: 0 every file ingested, 1 some files or folders were skipped (OUT/errors.csv lists
path and reason), 2 a user error (one line), 3 an internal error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semhpc import __version__
from semhpc.data import tfrecord
from semhpc.data.class_map import ClassMap, default_class_map
from semhpc.data.conversion import check_source_and_output, write_csv
from semhpc.data.sem_tiff import SemReadError, read_sem_tiff
from semhpc.data.source_tree import ImageFinder
from semhpc.data.split import DEFAULT_FRACTIONS, SPLITS, shard_of, split_of
from semhpc.ranks import jobs
from semhpc.ranks.world import World
from semhpc.utils import atomic
from semhpc.utils.errors import WRITE_FAILURES, SemhpcError
from semhpc.utils.paths import display_path

MANIFEST_FORMAT = 1
RECORD_VERSION = 1  # part of every shard fingerprint: bump when the record content changes
SHARD_TARGET_IMAGES = 1000  # images per shard when --shards-per-split is not given
STATE_DIR = ".ingest"
SHARD_NAME = re.compile(r"^(?:train|validation|test)-\d{5}-of-\d{5}\.tfrecord$")


@dataclass(frozen=True)
class IngestSettings:
    source: Path
    out: Path
    size: tuple[int, int] | None = None  # stored (width, height); None keeps each image's own size
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    shards_per_split: int | None = None  # None: about SHARD_TARGET_IMAGES images per shard
    class_map: ClassMap = field(default_factory=default_class_map)


@dataclass(frozen=True)
class SourceImage:
    path: str  # relative to SRC: <category folder>/<path in category>
    label: int
    split: str
    size_bytes: int
    mtime_ns: int

    @property
    def path_in_category(self) -> str:
        return self.path.split(os.sep, 1)[1]


@dataclass(frozen=True)
class Shard:
    split: str
    index: int
    count: int
    images: tuple[SourceImage, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.tfrecord"

    def fingerprint(self, settings: IngestSettings) -> str:
        """Hash of everything the shard's bytes depend on (see the module docstring)."""
        inputs = {"record_version": RECORD_VERSION, "size": settings.size, "classes": settings.class_map.classes,
                  "images": [(image.path, image.label, image.size_bytes, image.mtime_ns) for image in self.images]}
        return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    shards: tuple[Shard, ...]
    skipped: tuple[tuple[str, str], ...]  # (path relative to SRC, reason) found while listing
    assignment: tuple[tuple[int, ...], ...]  # per rank: indices into `shards` it must write
    empty_classes: tuple[str, ...]

    @property
    def pending_images(self) -> int:
        return sum(len(self.shards[index].images) for share in self.assignment for index in share)


def ingest(settings: IngestSettings, world: World) -> int:
    """Run the ingest on every rank of `world`; returns the exit code (the same on all ranks)."""

    def write_my_shards(plan: Plan, mine, advance) -> dict[str, dict]:
        return {plan.shards[index].name: write_shard(plan.shards[index], settings, advance) for index in mine}

    def merge(plan: Plan, per_rank: dict[int, dict]) -> int:
        this_run = {name: result for results in per_rank.values() for name, result in results.items()}
        return finish(settings, plan, this_run)

    return jobs.run_jobs(world, "ingest", lambda: make_plan(settings, world.size), write_my_shards, merge)


# ---------------------------------------------------------------------------------------------
# 1. The plan (rank 0)


def make_plan(settings: IngestSettings, ranks: int) -> Plan:
    _check_folders(settings)
    images, skipped, empty_classes = list_sources(settings.source, settings.class_map, settings.fractions)
    if not images:
        first = f"; first problem: {display_path(skipped[0][0])}: {skipped[0][1]}" if skipped else ""
        raise SemhpcError(f"{display_path(settings.source)}: no images to ingest (expected "
                          f"SRC/<Category>/*.tif with categories {', '.join(settings.class_map.classes)}){first}")
    shards = make_shards(images, settings.shards_per_split)
    _remove_temporary_files(settings.out)
    missing = [index for index, shard in enumerate(shards) if not _is_finished(settings, shard)]
    weights = [sum(image.size_bytes for image in shards[index].images) for index in missing]
    assignment = tuple(tuple(missing[job] for job in share) for share in jobs.deal_by_weight(weights, ranks))
    return Plan(tuple(shards), tuple(skipped), assignment, tuple(empty_classes))


def list_sources(source: Path, class_map: ClassMap, fractions) -> tuple[list[SourceImage], list, list[str]]:
    """(images, skipped (path, reason), classes without any image) of a folder-per-category tree."""
    entries = _top_level_entries(source)
    categories = {entry.name: class_map.class_of(entry.name) for entry in entries if entry.is_dir()}
    finder = ImageFinder(roots=[entry.path for entry in entries if categories.get(entry.name)], tree=source)
    images, skipped, found_classes = [], [], set()
    for entry in entries:
        category = categories.get(entry.name)
        if entry.name not in categories:
            skipped.append((entry.name, "not inside a category folder; skipped"))
            continue
        if category is None:
            skipped.append((entry.name, class_map.unknown_folder_reason(entry.name)))
            continue
        files, left_out = finder.find(entry.path)
        skipped += [(os.path.join(entry.name, item.path) if item.path else entry.name, item.reason)
                    for item in left_out]
        if not files and not left_out:
            skipped.append((entry.name, f"category folder holds no image files (class {category})"))
        if files:
            found_classes.add(category)
        label = class_map.classes.index(category)
        images += [SourceImage(os.path.join(entry.name, found.path), label, split_of(found.path, fractions),
                               found.size, found.mtime_ns) for found in files]
    return images, skipped, [name for name in class_map.classes if name not in found_classes]


def _top_level_entries(source: Path) -> list[os.DirEntry]:
    """Non-hidden entries of SRC: real folders first, then symlinks (so an alias such as
    Forest -> Nanowires is the path reported as a second way in, not the real folder), by name."""
    try:
        entries = sorted(os.scandir(os.fsdecode(source)), key=lambda entry: (entry.is_symlink(), entry.name))
    except OSError as exc:
        raise SemhpcError(f"{display_path(source)}: cannot list the source folder: {exc.strerror or exc}") from exc
    return [entry for entry in entries if not entry.name.startswith(".")]


def make_shards(images: list[SourceImage], shards_per_split: int | None) -> list[Shard]:
    """Every split's shards (empty splits get none); files are spread over a split's shards by
    hash (split.shard_of) and ordered by hash inside each, so every shard mixes the classes."""
    shards = []
    for split in SPLITS:
        members = [image for image in images if image.split == split]
        if not members:
            continue
        count = shards_per_split or max(1, math.ceil(len(members) / SHARD_TARGET_IMAGES))
        by_shard: list[list[SourceImage]] = [[] for _ in range(count)]
        for image in members:
            by_shard[shard_of(image.path_in_category, count)].append(image)
        shards += [Shard(split, index, count, tuple(sorted(chosen, key=_hash_order)))
                   for index, chosen in enumerate(by_shard)]
    return shards


def _hash_order(image: SourceImage) -> bytes:
    return hashlib.sha256(os.fsencode(image.path)).digest()


def _check_folders(settings: IngestSettings) -> None:
    source, out = Path(settings.source), Path(settings.out)
    check_source_and_output(source, out, " (expected SRC/<Category>/*.tif)")
    _refuse_foreign_data(out)
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = WRITE_FAILURES.get(exc.errno) or exc.strerror or exc
        raise SemhpcError(f"{display_path(out)}: cannot create the output folder: {reason}") from exc


def _refuse_foreign_data(out: Path) -> None:
    """OUT must be new, empty, or an earlier ingest's output in which every shard-named file has a
    journal entry (OUT/.ingest/<shard>.json, written before the shard): ingest overwrites and
    deletes shard files, so it must never meet one it did not write."""
    if not out.is_dir():
        return
    entries = sorted(entry.name for entry in os.scandir(out))
    if STATE_DIR not in entries:
        if entries:
            raise SemhpcError(f"{display_path(out)}: the output folder holds files semhpc ingest did not write "
                              f"({', '.join(display_path(name) for name in entries[:3])}"
                              f"{', ...' if len(entries) > 3 else ''}); choose a new or empty folder")
        return
    foreign = [name for name in entries if SHARD_NAME.match(name) and not _state_file(out, name).is_file()]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise SemhpcError(f"{display_path(out / foreign[0])}: looks like a shard, but this dataset's journal "
                          f"({STATE_DIR}/) has no entry for it{more}; ingest would overwrite or delete it: move it "
                          "away or choose a new folder")


def _remove_temporary_files(out: Path) -> None:
    """Half-written files of a killed run (atomic writes leave `.NAME.XXXX.tmp`)."""
    for folder in (out, out / STATE_DIR):
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def _state_file(out: Path, shard_name: str) -> Path:
    return out / STATE_DIR / f"{shard_name}.json"


def _is_finished(settings: IngestSettings, shard: Shard) -> bool:
    result = _read_result(settings.out, shard.name)
    shard_file = settings.out / shard.name
    return (isinstance(result, dict) and result.get("fingerprint") == shard.fingerprint(settings)
            and shard_file.is_file() and shard_file.stat().st_size == result.get("bytes"))


def recorded_shard_bytes(out, shard_name: str) -> int | None:
    """The length of OUT/<shard_name> as this ingest wrote it (None when its result is gone)."""
    result = _read_result(Path(out), shard_name)
    return result.get("bytes") if isinstance(result, dict) and isinstance(result.get("bytes"), int) else None


def _read_result(out: Path, shard_name: str) -> dict | None:
    try:
        return json.loads(_state_file(out, shard_name).read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# 2. Writing one shard (any rank)


def write_shard(shard: Shard, settings: IngestSettings, on_image) -> dict:
    """Convert the shard's images into OUT/<shard name> atomically; returns and saves its result."""
    import tensorflow as tf

    classes = settings.class_map.classes
    counts, failed, warnings, stored_sizes = Counter(), [], [], set()
    target = settings.out / shard.name
    try:
        with atomic.atomic_path(target) as tmp:
            with tfrecord.shard_writer(tmp) as writer:
                for image in shard.images:
                    source_path = os.path.join(os.fsdecode(settings.source), image.path)
                    try:
                        record, stored_size, image_warnings = _record(source_path, image, settings.size)
                    except SemReadError as exc:
                        failed.append((exc.path, exc.reason))
                    except Exception as exc:  # noqa: BLE001 -- one odd file must not end a 150,000-file run
                        failed.append((display_path(source_path), f"internal error reading the file "
                                                                  f"({type(exc).__name__}: {exc}); please report it"))
                    else:
                        writer.write(record)
                        counts[classes[image.label]] += 1
                        stored_sizes.add(stored_size)
                        warnings += [(display_path(source_path), warning) for warning in image_warnings]
                    on_image()
            result = {"shard": shard.name, "fingerprint": shard.fingerprint(settings), "bytes": tmp.stat().st_size,
                      "counts": dict(counts), "failed": failed, "warnings": warnings,
                      "stored_sizes": sorted(stored_sizes), "host": socket.gethostname()}  # host: which node wrote it
            # The journal entry before the shard: every shard file in OUT has one (see _check_folders).
            atomic.write_json(_state_file(settings.out, shard.name), result)
    except OSError as exc:
        raise SemhpcError(f"{display_path(target)}: cannot write the shard: {exc.strerror or exc}") from exc
    except tf.errors.OpError as exc:  # TensorFlow's writer reports a full disk as its own error
        raise SemhpcError(f"{display_path(target)}: cannot write the shard: {tfrecord.write_error_reason(exc)}") from None
    return result


def _record(source_path: str, image: SourceImage, size) -> tuple[bytes, tuple[int, int], list[str]]:
    """(serialized record, stored (width, height), reader warnings) of one source file."""
    sem = read_sem_tiff(source_path)
    stored = _resize(sem.pixels, size)
    record = tfrecord.encode_example(stored, label=image.label, path=image.path, split=image.split,
                                     meta=sem.meta, source_sha256=tfrecord.pixel_sha256(sem.pixels))
    return record, (stored.shape[1], stored.shape[0]), sem.warnings


def _resize(pixels: np.ndarray, size) -> np.ndarray:
    """`pixels` at `size` (width, height), bilinear with antialiasing (Pillow widens the filter
    when shrinking), as the classifier's preprocessing does; unchanged when `size` is None."""
    if size is None or (pixels.shape[1], pixels.shape[0]) == tuple(size):
        return pixels
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize(tuple(size), Image.Resampling.BILINEAR))


# ---------------------------------------------------------------------------------------------
# 3. Merging (rank 0)


def finish(settings: IngestSettings, plan: Plan, this_run: dict[str, dict]) -> int:
    """Write manifest.json, errors.csv and warnings.csv from every shard's result; print a summary."""
    results = [this_run.get(shard.name) or _read_result(settings.out, shard.name) for shard in plan.shards]
    if any(result is None for result in results):  # a shard result vanished while we ran
        raise SemhpcError(f"{display_path(settings.out / STATE_DIR)}: shard results are missing; run the ingest again")
    source = os.fsdecode(settings.source)
    failed = sorted([(display_path(os.path.join(source, path)), reason) for path, reason in plan.skipped]
                    + [tuple(row) for result in results for row in result["failed"]])
    warnings = sorted(tuple(row) for result in results for row in result["warnings"])
    manifest = make_manifest(settings, plan, results)
    atomic.write_json(settings.out / "manifest.json", manifest)
    write_csv(settings.out / "errors.csv", failed)
    write_csv(settings.out / "warnings.csv", warnings, header=("path", "warning"))
    _remove_stale_shards(settings.out, {shard.name for shard in plan.shards})
    _print_summary(settings, plan, manifest, len(failed), len(this_run))
    return jobs.EXIT_FILES_FAILED if failed else jobs.EXIT_OK


def make_manifest(settings: IngestSettings, plan: Plan, results: list[dict]) -> dict:
    classes = list(settings.class_map.classes)
    counts = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    shards = {split: [] for split in SPLITS}
    for shard, result in zip(plan.shards, results):
        shards[shard.split].append(shard.name)
        for name, count in result["counts"].items():
            counts[shard.split][name] += count
    stored_sizes = {tuple(size) for result in results for size in result["stored_sizes"]}
    if settings.size:
        image_size = list(settings.size)
    else:  # each image kept its own size: one common size, or null
        image_size = list(stored_sizes.pop()) if len(stored_sizes) == 1 else None
    return {
        "format": MANIFEST_FORMAT,
        "classes": classes,
        "image_size": image_size,  # [width, height]; null when images keep their own, differing sizes
        "counts": counts,
        "shards": shards,
        "split": list(settings.fractions),
        "images": sum(sum(per_class.values()) for per_class in counts.values()),
        "failed": sum(len(result["failed"]) for result in results) + len(plan.skipped),
        "class_map": settings.class_map.folders,
        "source": display_path(os.path.abspath(settings.source)),
        "semhpc_version": __version__,
    }


def _remove_stale_shards(out: Path, planned: set[str]) -> None:
    """Shards (and their journal entries) of an earlier plan, e.g. with another --shards-per-split.
    Only files the journal names are deleted: what this dataset's ingest wrote, nothing else."""
    for entry in (out / STATE_DIR).glob("*.tfrecord.json"):
        name = entry.name[: -len(".json")]
        if SHARD_NAME.match(name) and name not in planned:
            (out / name).unlink(missing_ok=True)
            entry.unlink()


def _print_summary(settings: IngestSettings, plan: Plan, manifest: dict, failed: int, written_now: int) -> None:
    per_split = ", ".join(f"{split} {sum(manifest['counts'][split].values())}" for split in SPLITS)
    kept = len(plan.shards) - written_now
    print(f"ingest: {manifest['images']} images in {len(plan.shards)} shards ({per_split}) -> "
          f"{display_path(settings.out)}/manifest.json"
          + (f"; {kept} finished shard(s) kept from an earlier run" if kept else ""))
    if plan.empty_classes:
        print(f"semhpc ingest: warning: no images for class(es) {', '.join(plan.empty_classes)}", file=sys.stderr)
    if failed:
        print(f"semhpc ingest: {failed} file(s) or folder(s) skipped; path and reason in "
              f"{display_path(settings.out)}/errors.csv", file=sys.stderr)
