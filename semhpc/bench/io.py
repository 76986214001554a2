"""`semhpc bench io PATH --readers 1,2,...`: read-and-decode throughput of the SEM TIFFs or the
TFRecord shards under PATH with N concurrent reader processes.

A sysadmin runs it on each candidate storage (local disk, NFS, Lustre) before placing a dataset:
the thesis found local disk best with few readers and Lustre best with 24 (docs/background.md: File-system study). The
work is what training and classification do to a file: a TIFF is read and decoded by
`read_sem_tiff`; a TFRecord shard is read and every record's PNG decoded by TensorFlow.

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
    rows = []
    for count in readers:
        results = _run_readers(files, count)
        seconds = max(result["seconds"] for result in results)
        images = sum(result["images"] for result in results)
        megabytes = sum(result["bytes"] for result in results) / 1e6
        rows.append({"readers": count, "files": len(files), "images": images, "megabytes": megabytes,
                     "seconds": seconds, "images_per_sec": images / seconds, "mb_per_sec": megabytes / seconds})
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


def format_io(document: dict) -> str:
    lines = [f"{document['path']}: {document['files']} {document['file_kind']} file(s), "
             f"{document['megabytes']:.1f} MB read and decoded per point",
             f"{'readers':>7} {'seconds':>9} {'images/s':>10} {'MB/s':>9} {'speedup':>8}"]
    for row in document["rows"]:
        lines.append(f"{row['readers']:>7} {row['seconds']:>9.3f} {row['images_per_sec']:>10.1f} "
                     f"{row['mb_per_sec']:>9.1f} {row['speedup']:>8.2f}")
    return "\n".join(lines)
