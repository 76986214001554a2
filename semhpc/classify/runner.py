"""`semhpc classify`: the pipeline every rank runs, plus rank 0's planning, merging and report.

Every rank (one process, or each rank under mpirun/srun):
  reader thread  takes a chunk (work.py), reads and prepares its files a batch at a time
                 (preprocess.py) into a queue of PREFETCH_BATCHES, so reading and decoding the
                 next batch overlaps the inference of the current one;
  main thread    batched forward pass, top-5 and decision of each image (policy.py); when a
                 chunk's last batch is done: its HDF5 groups (hdf5_group.py), then its part file
                 (writer.py) -- the commit that makes the chunk count as done.
Rank 0 also: before, lists the inputs, drops those an earlier run committed (resume) and cuts the
rest into chunks; during, serves chunks to the other ranks (work.Dispatcher) and shows the
progress bar; after, merges the parts into predictions.csv/.jsonl and errors.csv and writes the
throughput report (throughput.py).

Exit status (as `semhpc ingest`, semhpc.ranks.jobs): 0 every input classified; 1 some inputs
are listed in OUT/errors.csv (all others are classified: a bad file never stops the run); 2 a
usage error (one SemhpcError line, printed once); 3 an internal error (traceback). Under MPI any
rank's exception ends the whole job (comm.Abort): no rank waits forever for a dead one.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semhpc.classify import hdf5_group, writer
from semhpc.classify.bundle import Bundle, read_bundle
from semhpc.classify.policy import Thresholds, prediction
from semhpc.classify.preprocess import scale_fn
from semhpc.classify.throughput import RankStats, format_report, summarize
from semhpc.classify.work import Chunk, Dispatcher, LocalWork, RemoteWork, discover_inputs, make_chunks, output_key
from semhpc.data.sem_tiff import SemReadError, read_sem_tiff
from semhpc.ranks.jobs import EXIT_FILES_FAILED, EXIT_OK, abort_on_failure, root_decides
from semhpc.ranks.world import World, mpi_world, quiet_barrier
from semhpc.utils import atomic
from semhpc.utils.progress import progress

PREFETCH_BATCHES = 4
CHUNK_BATCHES = 2  # default chunk = 2 batches: fine-grained enough to balance ranks, few part files
THROUGHPUT_JSON = "throughput.json"


@dataclass(frozen=True)
class ClassifySettings:
    bundle: Path
    source: Path  # a folder of images or a list file
    out: Path
    hdf5_dir: Path | None = None
    batch_size: int = 32
    chunk_size: int | None = None  # None: CHUNK_BATCHES * batch_size
    thresholds: Thresholds = Thresholds()

    @property
    def files_per_chunk(self) -> int:
        return self.chunk_size or CHUNK_BATCHES * self.batch_size


@dataclass
class _Plan:
    """Rank 0's view of the work; only `input_root` is shared with the other ranks."""

    input_keys: list[str]
    listing_errors: list[dict]  # folder entries that could not be taken as inputs
    chunks: list[Chunk]
    already_done: int
    input_root: str


@dataclass
class _Batch:
    chunk: Chunk
    paths: list[str]  # the readable files, in the order of `images`
    images: np.ndarray | None  # [B, S, S, 3] in [0, 1]; None when no file of the batch was readable
    errors: list[dict]
    last_of_chunk: bool


_END = object()  # the reader thread's "no more chunks"


def classify(settings: ClassifySettings) -> int:
    """Classify as this rank of the job; rank 0 returns the exit status, the others 0."""
    started = time.perf_counter()
    world = mpi_world()
    with abort_on_failure(world, "classify"):
        return _classify(world, settings, started)


def _classify(world: World, settings: ClassifySettings, started: float) -> int:
    bundle = read_bundle(settings.bundle)
    plan: list[_Plan] = []  # rank 0's plan; the other ranks only need its input_root

    def make_plan() -> str:
        plan.append(_plan(settings, bundle))
        return plan[0].input_root

    if world.is_root:  # rank 0 lists the inputs while the others already load TensorFlow
        input_root = root_decides(world, make_plan)
        predict = _load_predictor(bundle)
    else:
        predict = _load_predictor(bundle)
        input_root = root_decides(world, make_plan)
    quiet_barrier(world)  # time the work, not TensorFlow's start-up
    startup_seconds = time.perf_counter() - started
    stats = RankStats(world.rank)
    if not world.is_root:
        work = RemoteWork(world, completed=lambda: stats.files)
        _process(work, bundle, predict, settings, input_root, world, stats, on_commit=lambda files: None)
        work.finish(stats.as_dict())
        return EXIT_OK
    return _run_root(world, settings, bundle, predict, plan[0], stats, startup_seconds)


def _plan(settings: ClassifySettings, bundle: Bundle) -> _Plan:
    """Inputs, minus what earlier runs into the same OUT committed, cut into chunks."""
    inputs = discover_inputs(settings.source)
    writer.start_run(settings.out, {
        "model_version": bundle.model_version, "auto": settings.thresholds.auto,
        "suggest": settings.thresholds.suggest,
        "hdf5": str(settings.hdf5_dir.resolve()) if settings.hdf5_dir else None,
    })
    writer.remove_unfinished_parts(settings.out)
    done = writer.finished_paths(settings.out)
    todo = [path for path in inputs.paths if output_key(path) not in done]
    return _Plan(input_keys=[output_key(path) for path in inputs.paths], listing_errors=inputs.skipped,
                 chunks=make_chunks(todo, settings.files_per_chunk), already_done=len(inputs.paths) - len(todo),
                 input_root=hdf5_group.input_root(settings.source, inputs.paths))


def _load_predictor(bundle: Bundle):
    """A batched function images [B, S, S, 3] in [0, 1] -> class probabilities [B, C]."""
    import tensorflow as tf

    try:  # one intra-op thread per core this rank is bound to: ranks on one node never share a core
        tf.config.threading.set_intra_op_parallelism_threads(len(os.sched_getaffinity(0)))
    except RuntimeError:  # TensorFlow already started in this process (a second call from Python)
        pass
    model = bundle.load_model()
    scale = scale_fn(bundle.preprocessing["scaling"])
    size = bundle.input_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def predict(images):
        return tf.nn.softmax(tf.cast(model(scale(images), training=False), tf.float32))

    return predict


def _run_root(world: World, settings: ClassifySettings, bundle: Bundle, predict, plan: _Plan, stats: RankStats,
              startup_seconds: float) -> int:
    todo = sum(len(chunk.paths) for chunk in plan.chunks)
    if plan.already_done:
        print(f"resuming: {plan.already_done} input(s) already done in {settings.out}, {todo} to classify",
              flush=True)
    bar = progress(total=todo, desc="classify", unit="img")
    bar_lock = threading.Lock()

    def advance(files: int) -> None:
        with bar_lock:
            bar.update(files)

    work = LocalWork(plan.chunks)
    dispatcher = Dispatcher(world, work, on_progress=advance) if world.size > 1 else None
    started = time.perf_counter()
    if dispatcher:
        dispatcher.start()
    _process(work, bundle, predict, settings, plan.input_root, world, stats, on_commit=advance)
    if dispatcher:
        dispatcher.join()
    wall_seconds = time.perf_counter() - started
    bar.close()

    counts = writer.merge(settings.out, plan.input_keys, plan.listing_errors)
    report = summarize([stats.as_dict(), *(dispatcher.stats.values() if dispatcher else ())], wall_seconds,
                       startup_seconds, {"model_version": bundle.model_version, "batch_size": settings.batch_size,
                                         "chunk_size": settings.files_per_chunk, "resumed_skipped": plan.already_done})
    atomic.write_json(settings.out / THROUGHPUT_JSON, report)
    _print_summary(settings.out, counts, report)
    return EXIT_FILES_FAILED if counts["errors"] else EXIT_OK


def _print_summary(out: Path, counts: dict, report: dict) -> None:
    decisions = ", ".join(f"{decision} {n}" for decision, n in counts["decisions"].items())
    print(f"{counts['predictions']} image(s) classified ({decisions}) -> {out / writer.PREDICTIONS_CSV}, "
          f"{out / writer.PREDICTIONS_JSONL}")
    print(format_report(report), flush=True)
    if counts["errors"]:
        print(f"semhpc classify: {counts['errors']} file(s) could not be classified or stored, see "
              f"{out / writer.ERRORS_CSV} (exit status {EXIT_FILES_FAILED})", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# One rank's pipeline


def _process(work, bundle: Bundle, predict, settings: ClassifySettings, input_root: str, world: World,
             stats: RankStats, on_commit) -> None:
    """Classify every chunk `work` hands out; `on_commit(files)` after each committed chunk."""
    batches: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    reader = threading.Thread(target=_read_chunks, name="reader", daemon=True,
                              args=(work, bundle, settings.batch_size, batches, stats))
    started, cpu_started = time.perf_counter(), time.process_time()
    reader.start()
    predictions: list[dict] = []
    errors: list[dict] = []
    while True:
        waiting = time.perf_counter()
        batch = batches.get()
        stats.idle += time.perf_counter() - waiting
        if batch is _END:
            break
        if isinstance(batch, BaseException):
            raise batch
        predictions += _classify_batch(batch, predict, bundle, settings.thresholds, stats)
        errors += batch.errors
        if batch.last_of_chunk:
            _commit_chunk(batch.chunk, predictions, errors, settings, input_root, world.rank, stats)
            on_commit(len(batch.chunk.paths))
            predictions, errors = [], []
    reader.join()
    stats.seconds = time.perf_counter() - started
    stats.cpu_seconds = time.process_time() - cpu_started


def _read_chunks(work, bundle: Bundle, batch_size: int, batches: queue.Queue, stats: RankStats) -> None:
    """Reader thread: every chunk's files as prepared batches, then _END (or the exception)."""
    try:
        while (chunk := work.next_chunk()) is not None:
            for start in range(0, len(chunk.paths), batch_size):
                paths = chunk.paths[start:start + batch_size]
                batches.put(_read_batch(chunk, paths, bundle, start + batch_size >= len(chunk.paths), stats))
        batches.put(_END)
    except BaseException as exc:  # handed to the main thread, which aborts the job
        batches.put(exc)


def _read_batch(chunk: Chunk, paths, bundle: Bundle, last_of_chunk: bool, stats: RankStats) -> _Batch:
    started = time.perf_counter()
    readable, images, errors = [], [], []
    for path in paths:
        try:
            images.append(bundle.model_input(read_sem_tiff(path).pixels))
            readable.append(path)
        except SemReadError as exc:
            errors.append({"path": output_key(path), "reason": exc.reason})
    stats.read_decode += time.perf_counter() - started
    return _Batch(chunk, readable, np.stack(images) if images else None, errors, last_of_chunk)


def _classify_batch(batch: _Batch, predict, bundle: Bundle, thresholds: Thresholds, stats: RankStats) -> list[dict]:
    if batch.images is None:
        return []
    started = time.perf_counter()
    probabilities = predict(batch.images).numpy()
    rows = [prediction(output_key(path), scores, bundle.classes, thresholds, bundle.model_version)
            for path, scores in zip(batch.paths, probabilities)]
    stats.inference += time.perf_counter() - started
    return rows


def _commit_chunk(chunk: Chunk, predictions: list[dict], errors: list[dict], settings: ClassifySettings,
                  input_root: str, rank: int, stats: RankStats) -> None:
    """HDF5 groups first, then the part file: a committed chunk has all its outputs written."""
    started = time.perf_counter()
    if settings.hdf5_dir is not None:
        errors = errors + _write_hdf5_groups(chunk, predictions, settings.hdf5_dir, input_root)
    writer.write_part(settings.out, rank, chunk.index, predictions, errors)
    stats.write += time.perf_counter() - started
    stats.images += len(predictions)
    stats.errors += len(errors)
    stats.files += len(chunk.paths)
    stats.chunks += 1


def _write_hdf5_groups(chunk: Chunk, predictions: list[dict], hdf5_dir: Path, input_root: str) -> list[dict]:
    """Store each prediction in its image's HDF5 file; the error rows of those that failed."""
    classified_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    real_paths = {output_key(path): path for path in chunk.paths}
    errors = []
    for row in predictions:
        target = hdf5_group.hdf5_path(real_paths[row["path"]], input_root, hdf5_dir)
        try:
            hdf5_group.write_classification(target, row, classified_at)
        except hdf5_group.Hdf5WriteError as exc:
            errors.append({"path": row["path"], "reason": str(exc)})
    return errors
