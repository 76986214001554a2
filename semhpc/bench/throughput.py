"""Throughput of one configuration: forward and forward+backward seconds per batch, mean ± std over
the timed batches, and images/sec per rank and in total (docs/background.md: Scaling, eq. 4.1:
images/sec = batch_size / step_time x workers).

"forward" is inference (`training=False`); "train" is the trainer's whole step: forward, backward,
gradient allreduce across ranks and the optimizer update. Every timed batch waits for its result,
so a batch's time is its real latency; the warmup batches (the first compiles the step) are not
timed.
"""

from __future__ import annotations

import platform
import statistics
import time

from semhpc.utils.progress import progress

MODES = ("forward", "train", "both")
PHASES = ("forward", "train")
FORMAT = 1


def time_phases(workload, mode: str, batches: int, warmup: int, show_progress: bool = True) -> dict:
    """This rank's timings of the phases `mode` selects: {phase: {"seconds": [per timed batch],
    "window": [unix time of the first timed batch's start, of the last one's end]}}.

    The window lets a benchmark check that processes it compares really ran at the same time.
    """
    steps = {
        "forward": lambda: workload.forward_step(workload.images),
        "train": lambda: workload.train_step(workload.images, workload.labels),
    }
    selected = PHASES if mode == "both" else (mode,)
    timings = {}
    for phase in selected:
        for _ in range(warmup):
            wait_for(steps[phase]())
        started = time.time()
        seconds = time_batches(steps[phase], batches, phase, show_progress)
        timings[phase] = {"seconds": seconds, "window": [started, time.time()]}
    return timings


def time_batches(step, batches: int, label: str = "", show_progress: bool = True) -> list[float]:
    """Seconds of each of `batches` calls of `step`."""
    times = []
    for _ in progress(range(batches), desc=f"bench {label}", enabled=show_progress, unit="batch"):
        started = time.perf_counter()
        wait_for(step())
        times.append(time.perf_counter() - started)
    return times


def wait_for(outputs) -> None:
    """Block until the step's results exist (TensorFlow returns before the work is done)."""
    for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        output.numpy()


def summarise(timings_per_rank: list[dict], batch_size: int) -> dict:
    """{phase: statistics} from every rank's `time_phases` result; mean and std pool all ranks'
    batches, images/sec total = batch_size / mean x ranks (eq. 4.1)."""
    summary = {}
    for phase in timings_per_rank[0]:
        everyone = [t for timings in timings_per_rank for t in timings[phase]["seconds"]]
        mean = statistics.fmean(everyone)
        summary[phase] = {
            "seconds_per_batch_mean": mean,
            "seconds_per_batch_std": statistics.pstdev(everyone),
            "images_per_sec_per_rank": batch_size / mean,
            "images_per_sec_total": batch_size / mean * len(timings_per_rank),
            "per_rank": [_rank_stats(rank, timings[phase], batch_size)
                         for rank, timings in enumerate(timings_per_rank)],
        }
    return summary


def _rank_stats(rank: int, timing: dict, batch_size: int) -> dict:
    mean = statistics.fmean(timing["seconds"])
    return {"rank": rank, "seconds_per_batch_mean": mean, "seconds_per_batch_std": statistics.pstdev(timing["seconds"]),
            "images_per_sec": batch_size / mean, "window": timing["window"]}


def bench_document(settings: dict, timings_per_rank: list[dict], threads: int) -> dict:
    """The `--json` document: the settings, where it ran, and one statistics block per phase."""
    import tensorflow as tf

    return {"format": FORMAT, "kind": "bench", **settings, "ranks": len(timings_per_rank),
            "threads_per_rank": threads, "host": platform.node(), "tensorflow": tf.__version__,
            **summarise(timings_per_rank, settings["batch_size"])}


def format_table(document: dict) -> str:
    """The human report of a bench document: one line per phase."""
    head = (f"{document['model']}, {document['image_size']} px, batch {document['batch_size']} per rank, "
            f"{document['ranks']} rank(s) x {document['threads_per_rank']} thread(s), {document['precision']}, "
            f"{document['data_format']}, {document['batches']} timed batches")
    lines = [head, f"{'phase':<8} {'sec/batch (mean ± std)':>24} {'img/s per rank':>15} {'img/s total':>12}"]
    for phase in PHASES:
        if phase in document:
            stats = document[phase]
            timing = f"{stats['seconds_per_batch_mean']:.4f} ± {stats['seconds_per_batch_std']:.4f}"
            lines.append(f"{phase:<8} {timing:>24} {stats['images_per_sec_per_rank']:>15.1f} "
                         f"{stats['images_per_sec_total']:>12.1f}")
    return "\n".join(lines)
