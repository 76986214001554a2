"""Horovod overhead on CPU: `-np 2` training images/sec against two independent single-rank
processes pinned to separate cores (the fair ceiling: same cores, no communication), once with
the launcher's default settings and once with plain `mpirun --bind-to core`.

Setups (each `--repeats` times, taking turns so a busy spell of the machine hits all alike):
  independent x2   two `semhpc bench --threads 1` processes, one pinned to each core, started
                   together; their images/sec add up (their timed windows are checked to overlap)
  launcher         `mpirun_command(2, ...)`: --bind-to core, --mca mpi_yield_when_idle 1,
                   HOROVOD_CYCLE_TIME=5 (semhpc/runtime/launcher.py)
  plain mpirun     `mpirun_command(2, ..., tuned=False)`: --bind-to core, Horovod's 1 ms cycle and
                   Open MPI's busy polling (the libraries' values, stated)
Target: launcher >= 0.95 of the ceiling (plain mpirun measured 0.63 here).

    .venv/bin/python benchmarks/horovod_overhead.py [--model densenet121 --image-size 112]
"""

from __future__ import annotations

import argparse
import os

from common import bench_json, best_and_median, machine, run_bench_together, write_json

from semhpc.runtime.launcher import mpirun_command

TARGET = 0.95


def main() -> None:
    args = parse_args()
    point = ["--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
             "--batches", str(args.batches), "--warmup", str(args.warmup), "--mode", "train"]
    cores = sorted(os.sched_getaffinity(0))[:2]
    before = machine()
    rates = {"independent x2": [], "launcher": [], "plain mpirun": []}
    overlaps = []
    for repeat in range(args.repeats):
        pair = run_bench_together([([*point, "--threads", "1"], [core], None) for core in cores])
        rates["independent x2"].append(sum(doc["train"]["images_per_sec_total"] for doc in pair))
        overlaps.append(window_overlap([doc["train"]["per_rank"][0]["window"] for doc in pair]))
        for name, tuned in (("launcher", True), ("plain mpirun", False)):
            doc = bench_json(point, launcher=mpirun_command(2, ["bench", *point], tuned=tuned))
            rates[name].append(doc["train"]["images_per_sec_total"])
        ceiling = rates["independent x2"][-1]
        print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items())
              + f" img/s; ratios launcher {rates['launcher'][-1] / ceiling:.2f}, plain {rates['plain mpirun'][-1] / ceiling:.2f}"
              + f" (independent windows overlap {overlaps[-1]:.0%})", flush=True)
    results = {name: best_and_median(values) for name, values in rates.items()}
    ceiling = results["independent x2"]
    print(f"\n{args.model} {args.image_size} px, batch {args.batch_size} per rank, 1 thread per rank, "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'setup':<16} {'best img/s':>10} {'median':>8} {'ratio best':>11} {'ratio median':>13}")
    for name, result in results.items():
        print(f"{name:<16} {result['best']:>10.1f} {result['median']:>8.1f} {result['best'] / ceiling['best']:>11.2f} "
              f"{result['median'] / ceiling['median']:>13.2f}")
    print(f"target: launcher >= {TARGET} of independent x2")
    write_json({"benchmark": "horovod_overhead", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "results": results,
                "independent_window_overlap": overlaps}, args.json)


def window_overlap(windows: list[list[float]]) -> float:
    """Fraction of the longer timed window during which both processes were timing."""
    start, end = max(w[0] for w in windows), min(w[1] for w in windows)
    return max(0.0, end - start) / max(w[1] - w[0] for w in windows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
