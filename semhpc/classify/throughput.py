"""The speed report of a classification run: images/s overall and per rank, and where time went.

The thesis timed tif->jpg, classification and tif->hdf5 separately (docs/background.md: File-system study); here each
rank times its three phases:
  read_decode  reader thread: open, decode, cut the data bar, resize (read_sem_tiff + preprocess)
  inference    main thread: the batched forward pass and the top-5 / decision of every image
  write        main thread: HDF5 groups and the chunk's part file
  idle         main thread waiting for the reader: > 0 means reading, not inference, is the limit
read_decode overlaps inference (separate threads), so the phases add up to more than the wall time.
`cpu_seconds` per rank (all its threads) gives images per CPU-second: unlike images/s, it does not
drop when other jobs share the cores, so comparing it between runs shows the real overhead of
adding ranks (see benchmarks/classify_throughput.py).
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field

PHASES = ("read_decode", "inference", "write")


@dataclass
class RankStats:
    """One rank's counters; each field is updated by one thread only."""

    rank: int
    host: str = field(default_factory=socket.gethostname)  # where the rank ran (multi-node jobs)
    files: int = 0  # inputs finished, classified or not
    images: int = 0  # classified
    errors: int = 0  # rows in errors.csv: unreadable files, HDF5 groups that could not be written
    chunks: int = 0
    seconds: float = 0.0  # this rank's wall time from its first request to its last commit
    cpu_seconds: float = 0.0  # CPU time of the whole process (all threads) in that time
    read_decode: float = 0.0
    inference: float = 0.0
    write: float = 0.0
    idle: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(ranks: list[dict], wall_seconds: float, startup_seconds: float, settings: dict) -> dict:
    """The JSON report (throughput.json) from every rank's `RankStats.as_dict()`."""
    ranks = sorted(ranks, key=lambda stats: stats["rank"])
    images = sum(stats["images"] for stats in ranks)
    return {
        **settings,
        "ranks": len(ranks),
        "images": images,
        "errors": sum(stats["errors"] for stats in ranks),
        "wall_seconds": wall_seconds,
        "startup_seconds": startup_seconds,
        "images_per_sec": _ratio(images, wall_seconds),
        "images_per_cpu_second": _ratio(images, sum(stats["cpu_seconds"] for stats in ranks)),
        "seconds_by_phase": {phase: sum(stats[phase] for stats in ranks) for phase in PHASES},
        "per_rank": [{**stats, "images_per_sec": _ratio(stats["images"], stats["seconds"])} for stats in ranks],
    }


def _ratio(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def format_report(report: dict) -> str:
    """A small table for the terminal: one line per rank, then the total."""
    header = f"{'rank':>6}{'images':>9}{'errors':>8}{'img/s':>9}{'read+decode s':>15}{'inference s':>13}" \
             f"{'write s':>9}{'idle s':>8}"
    lines = [header]
    for stats in report["per_rank"]:
        lines.append(f"{stats['rank']:>6}{stats['images']:>9}{stats['errors']:>8}{stats['images_per_sec']:>9.1f}"
                     f"{stats['read_decode']:>15.2f}{stats['inference']:>13.2f}{stats['write']:>9.2f}"
                     f"{stats['idle']:>8.2f}")
    phases = report["seconds_by_phase"]
    lines.append(f"{'all':>6}{report['images']:>9}{report['errors']:>8}{report['images_per_sec']:>9.1f}"
                 f"{phases['read_decode']:>15.2f}{phases['inference']:>13.2f}{phases['write']:>9.2f}")
    lines.append(f"{report['images']} images in {report['wall_seconds']:.2f} s on {report['ranks']} rank(s) "
                 f"(+{report['startup_seconds']:.1f} s start-up: TensorFlow, model, input listing)")
    return "\n".join(lines)
