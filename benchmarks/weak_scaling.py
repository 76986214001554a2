"""Weak scaling of `semhpc ingest` and `semhpc classify` over sample size: the images per rank
stay fixed while the ranks go from 1 to 2 (so the sample doubles), at several sample sizes
(issue 22 item 7; the thesis' per-image pipeline study, docs/background.md: File-system study).

What is measured (each point `--repeats` times; points take turns, so a busy spell of a shared
machine hits all of them alike; a fresh output folder each time):
  ingest    mpirun (the launcher's line, semhpc.runtime.launcher) of `semhpc ingest SRC OUT` with
            N ranks on N x PER_RANK 1024 x 768 SEM TIFFs; time = wall time of the whole command
            (start-up, listing, conversion, manifest), as a user waits for it
  classify  the same for `semhpc classify --model BUNDLE --input SRC --out OUT`; time = wall time of
            the whole command, and the processing time throughput.json reports (models loaded to
            last commit: start-up excluded)
weak-scaling efficiency = time(1 rank, PER_RANK images) / time(2 ranks, 2 x PER_RANK images):
1.0 is ideal (twice the work in the same time on twice the cores). The best (fastest) run of
each point is used, the median is printed beside it.

Input: links cycling over 100 synthetic FEI/Zeiss TIFFs (ingest_throughput.py and
classify_throughput.py make them, kept in --work); after the first repeat the files are in the
page cache, so this measures the CPU work and how it scales, not a file system. Put --work on
the file system to study (a node's local disk, NFS, Lustre) and compare with `semhpc bench io`
(docs/storage.md).

    .venv/bin/python benchmarks/weak_scaling.py [--ingest-per-rank 40,160] [--classify-per-rank 400,1600]
                                                [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import classify_throughput
import ingest_throughput
from common import machine, write_json

RANKS = (1, 2)


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    distinct = ingest_throughput.prepare_distinct_tiffs(work / "tiffs")
    ingest_sizes = [int(n) for n in args.ingest_per_rank.split(",")]
    classify_sizes = [int(n) for n in args.classify_per_rank.split(",")]
    ingest_trees = {n * r: ingest_throughput.prepare_tree(work, distinct, n * r) for n in ingest_sizes for r in RANKS}
    classify_inputs = {n * r: classify_throughput.prepare_inputs(work, n * r) for n in classify_sizes for r in RANKS}
    bundle = classify_throughput.prepare_bundle(work / "bundle", args.model, args.image_size)
    before = machine()

    def ingest_point(ranks: int, per_rank: int) -> dict:
        wall, cpu = ingest_throughput.run_once(ranks, ingest_trees[ranks * per_rank], work / "out")
        return {"seconds": wall, "cpu_seconds": cpu}

    def classify_point(ranks: int, per_rank: int) -> dict:
        started = time.perf_counter()
        report = classify_throughput.run_once(ranks, bundle, classify_inputs[ranks * per_rank], work / "out",
                                              args.batch_size)
        assert report["images"] == ranks * per_rank, report  # every image classified once
        return {"seconds": time.perf_counter() - started, "processing_seconds": report["wall_seconds"]}

    jobs = {"ingest": (ingest_point, ingest_sizes), "classify": (classify_point, classify_sizes)}
    runs: dict[tuple, list[dict]] = {}
    for repeat in range(args.repeats):
        for job, (point, sizes) in jobs.items():
            for per_rank in sizes:
                for ranks in RANKS:
                    run = point(ranks, per_rank)
                    runs.setdefault((job, per_rank, ranks), []).append(run)
                    print(f"repeat {repeat + 1}: {job:<8} {per_rank:5d} images/rank x {ranks} rank(s): "
                          f"{run['seconds']:7.1f} s", flush=True)
    results = {job: [weak_point(runs, job, per_rank) for per_rank in sizes] for job, (_, sizes) in jobs.items()}
    report(results, before)
    write_json({"benchmark": "weak_scaling", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "results": results}, args.json)


def weak_point(runs: dict, job: str, per_rank: int) -> dict:
    """Times of 1 and 2 ranks at `per_rank` images per rank, and the weak-scaling efficiency."""
    point = {"images_per_rank": per_rank}
    for key in ("seconds", "processing_seconds"):
        if key not in runs[job, per_rank, 1][0]:
            continue
        one, two = ([run[key] for run in runs[job, per_rank, ranks]] for ranks in RANKS)
        point[key] = {"1_rank": one, "2_ranks": two,
                      "efficiency_best": min(one) / min(two),
                      "efficiency_median": statistics.median(one) / statistics.median(two)}
    return point


def report(results: dict, before: dict) -> None:
    print(f"\nweak scaling, 1 -> 2 ranks at fixed images per rank; load average "
          f"{before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'job':<9} {'img/rank':>8} {'time':<11} {'1 rank s':>9} {'2 ranks s':>10} {'eff. best':>10} "
          f"{'eff. median':>12}")
    for job, points in results.items():
        for point in points:
            for key, label in (("seconds", "end to end"), ("processing_seconds", "processing")):
                if key in point:
                    times = point[key]
                    print(f"{job:<9} {point['images_per_rank']:>8} {label:<11} {min(times['1_rank']):>9.1f} "
                          f"{min(times['2_ranks']):>10.1f} {times['efficiency_best']:>10.2f} "
                          f"{times['efficiency_median']:>12.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingest-per-rank", default="40,160", help="ingest sample sizes per rank (default 40,160)")
    parser.add_argument("--classify-per-rank", default="400,1600",
                        help="classify sample sizes per rank (default 400,1600)")
    parser.add_argument("--model", default="densenet28", help="untrained model classify runs (default densenet28)")
    parser.add_argument("--image-size", type=int, default=64, help="classify's model input size (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/semhpc-weak-scaling",
                        help="scratch folder: TIFFs, links and outputs (put it on the file system to study)")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
