"""`semhpc bench io PATH --readers 1,2,...`: read-and-decode throughput of the SEM TIFFs or the
TFRecord shards under PATH with N concurrent reader processes.

A sysadmin runs it on each candidate storage (local disk, NFS, Lustre) before placing a dataset:
the thesis found local disk best with few readers and Lustre best with 24 (docs/background.md: File-system study). The
work is what training and classification do to a file: a TIFF is read and decoded by
`read_sem_tiff`; a TFRecord shard is read and every record's PNG decoded by TensorFlow.
With several paths (copies of the same files on each storage) the paths take turns at every
reader count, so a busy spell of a shared node hits all of them alike, and the report gives each
path's images/sec relative to the first path's (docs/storage.md).

Each reader is its own process and gets every N-th file; all readers start together and the
point's time is the slowest reader's. Page cache: a file read once sits in memory, and reading it
again would measure memory, not storage. Each reader therefore asks the kernel to drop the file's
cached pages before reading it (posix_fadvise DONTNEED, no root needed). The kernel may keep pages
another process has dirty or mapped, so on a file set smaller than RAM treat the figures as upper
bounds.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from semhpc.utils.errors import SemhpcError

TIFF_SUFFIXES = (".tif", ".tiff")
TFRECORD_SUFFIX = ".tfrecord"


def find_files(path: str | Path) -> list[Path]:
    """The TIFFs, or (when there are any) the TFRecord shards, under `path`, sorted."""
    root = Path(path)
    if not root.exists():
        raise SemhpcError(f"{root}: no such file or folder")
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    shards = [p for p in candidates if p.suffix == TFRECORD_SUFFIX]
    files = shards or [p for p in candidates if p.suffix.lower() in TIFF_SUFFIXES]
    if not files:
        raise SemhpcError(f"{root}: no .tif/.tiff files or .tfrecord shards to read")
    return files


def io_sweep(files: list[Path], readers: list[int]) -> list[dict]:
    """One row per reader count: images, megabytes and seconds, with images/sec and MB/s."""
    return _with_speedup([_io_point(files, count) for count in readers])


def compare_paths(paths: list[str], readers: list[int]) -> list[dict]:
    """`io_document` of each path, the paths taking turns at each reader count."""
    files = {path: find_files(path) for path in paths}
    first, *others = paths
    for path in others:
        if _shape(files[path]) != _shape(files[first]):
            (count, size), (first_count, first_size) = _shape(files[path]), _shape(files[first])
            raise SemhpcError(f"{path} holds {count} file(s) of {size / 1e6:.1f} MB, {first} {first_count} of "
                              f"{first_size / 1e6:.1f} MB: compare copies of the same files")
    rows: dict[str, list[dict]] = {path: [] for path in paths}
    for count in readers:
        for path in paths:
            rows[path].append(_io_point(files[path], count))
    return [io_document(path, files[path], _with_speedup(rows[path])) for path in paths]


def _shape(files: list[Path]) -> tuple[int, int]:
    return len(files), sum(path.stat().st_size for path in files)


def _io_point(files: list[Path], count: int) -> dict:
    results = _run_readers(files, count)
    seconds = max(result["seconds"] for result in results)
    images = sum(result["images"] for result in results)
    megabytes = sum(result["bytes"] for result in results) / 1e6
    return {"readers": count, "files": len(files), "images": images, "megabytes": megabytes,
            "seconds": seconds, "images_per_sec": images / seconds, "mb_per_sec": megabytes / seconds}


def _with_speedup(rows: list[dict]) -> list[dict]:
    """Each row's images/sec against the first row's (fewest readers)."""
    for row in rows:
        row["speedup"] = row["images_per_sec"] / rows[0]["images_per_sec"]
    return rows


def _run_readers(files: list[Path], count: int) -> list[dict]:
    """Start `count` reader processes on interleaved shares of `files`; their results."""
    context = multiprocessing.get_context("spawn")  # no inherited TensorFlow state
    start_line = context.Barrier(count)
    results = context.Queue()
    readers = [context.Process(target=_reader, args=(files[i::count], start_line, results)) for i in range(count)]
    for reader in readers:
        reader.start()
    collected = [results.get() for _ in readers]
    for reader in readers:
        reader.join()
    failed = [result["error"] for result in collected if "error" in result]
    if failed:
        raise SemhpcError(f"a reader failed: {failed[0]}")
    return collected


def _reader(files: list[Path], start_line, results) -> None:
    """Read and decode `files` once all readers are ready; report images, bytes and seconds."""
    try:
        decode = _decoder(files)
        start_line.wait()
        started = time.perf_counter()
        images = size = 0
        for path in files:
            _drop_cached_pages(path)
            images += decode(path)
            size += path.stat().st_size
        results.put({"images": images, "bytes": size, "seconds": time.perf_counter() - started})
    except Exception as exc:  # reported by the parent as one line
        start_line.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def _decoder(files: list[Path]):
    """path -> images decoded, for this reader's kind of file (imports happen before the clock)."""
    if files and files[0].suffix == TFRECORD_SUFFIX:
        return _tfrecord_decoder()
    from semhpc.data.sem_tiff import read_sem_tiff

    def decode_tiff(path: Path) -> int:
        read_sem_tiff(path)
        return 1

    return decode_tiff


def _tfrecord_decoder():
    """Decode every record's PNG like the training pipeline, on one thread (one reader = one core)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    features = {"image": tf.io.FixedLenFeature([], tf.string)}

    def decode(record):
        return tf.io.decode_png(tf.io.parse_single_example(record, features)["image"])

    def decode_shard(path: Path) -> int:
        dataset = tf.data.TFRecordDataset(str(path)).map(decode)
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        return sum(1 for _ in dataset.with_options(options))

    return decode_shard


def _drop_cached_pages(path: Path) -> None:
    with open(path, "rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def io_document(path: str | Path, files: list[Path], rows: list[dict]) -> dict:
    kind = "tfrecord" if files[0].suffix == TFRECORD_SUFFIX else "tiff"
    return {"format": 1, "kind": "bench_io", "path": str(path), "file_kind": kind, "files": len(files),
            "megabytes": sum(p.stat().st_size for p in files) / 1e6, "rows": rows}


def comparison_document(documents: list[dict]) -> dict:
    """Several paths' documents and, per reader count, each path's images/sec relative to the first path."""
    first = documents[0]["rows"]
    relative = [{"readers": row["readers"],
                 "images_per_sec_vs_first": {doc["path"]: doc["rows"][i]["images_per_sec"] / row["images_per_sec"]
                                             for doc in documents}}
                for i, row in enumerate(first)]
    return {"format": 1, "kind": "bench_io_compare", "paths": documents, "relative": relative}


def format_comparison(document: dict) -> str:
    lines = [format_io(doc) for doc in document["paths"]]
    first = document["paths"][0]["path"]
    lines.append(f"images/s relative to {first} (paths took turns at each reader count):")
    for row in document["relative"]:
        ratios = ", ".join(f"{path} {ratio:.2f}x" for path, ratio in row["images_per_sec_vs_first"].items()
                           if path != first)
        lines.append(f"{row['readers']:>7} reader(s): {ratios}")
    return "\n".join(lines)


def format_io(document: dict) -> str:
    lines = [f"{document['path']}: {document['files']} {document['file_kind']} file(s), "
             f"{document['megabytes']:.1f} MB read and decoded per point",
             f"{'readers':>7} {'seconds':>9} {'images/s':>10} {'MB/s':>9} {'speedup':>8}"]
    for row in document["rows"]:
        lines.append(f"{row['readers']:>7} {row['seconds']:>9.3f} {row['images_per_sec']:>10.1f} "
                     f"{row['mb_per_sec']:>9.1f} {row['speedup']:>8.2f}")
    return "\n".join(lines)
