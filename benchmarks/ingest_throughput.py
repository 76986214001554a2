"""Throughput of `semhpc ingest` on 1024 x 768 SEM TIFFs with 1 and 2 MPI ranks, and the TFRecord size
overhead versus the source files (issue 3, item 7).

What is measured (each setup `--repeats` times, setups taking turns, a fresh output folder each time):
  1 rank    mpirun -np 1 --bind-to core ...  semhpc ingest SRC OUT --shards-per-split 4
  2 ranks   mpirun -np 2 --bind-to core ...  (the launcher's tuned line, semhpc.runtime.launcher)
  * end-to-end images/s = images / wall time of the whole command (mpirun, Python and TensorFlow
    start-up, listing, conversion, manifest);
  * conversion images/s = the marginal rate between a run of --small and one of --images images,
    (images - small) / (wall - wall_small): the start-up cost cancels out;
  * CPU seconds per image = the same marginal difference of the CPU time of mpirun and its ranks
    (getrusage of children): unlike wall time it barely changes when other jobs share the cores;
  * size overhead = bytes of all shards / bytes of all source files - 1, records stored at the
    source size (no --size), i.e. what TFRecords cost or save against the original TIFFs.
The best run of each setup is used (the one least disturbed by other work on a shared machine);
the load average before and after is recorded.

Input: SRC/<Category>/<i>.tif links cycling over 100 synthetic FEI/Zeiss TIFFs (10 per category,
made once by `semhpc.data.synth` into --work), so costs vary as in an archive (8-bit FEI with a data
bar, palette Zeiss). After the first run the files are in the page cache: this measures the CPU work
(TIFF decode, metadata, PNG encode) and how it scales over ranks, not a parallel file system.

    .venv/bin/python benchmarks/ingest_throughput.py        # -> docs/figures/ingest_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from semhpc.data.categories import CATEGORIES  # noqa: E402
from semhpc.runtime.launcher import mpirun_command  # noqa: E402

DISTINCT_IMAGES_PER_CLASS = 10
RANKS = (1, 2)
SHARDS_PER_SPLIT = 4


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    distinct = prepare_distinct_tiffs(work / "tiffs")
    trees = {count: prepare_tree(work, distinct, count) for count in (args.small, args.images)}  # large last
    load_before = os.getloadavg()[0]
    runs = {(ranks, count): [] for ranks in RANKS for count in trees}  # [(wall, cpu)]
    for repeat in range(args.repeats):  # setups take turns, so a busy spell hits all of them alike
        for ranks in RANKS:
            for count, tree in trees.items():
                runs[ranks, count].append(run_once(ranks, tree, work / "out"))
                wall, cpu = runs[ranks, count][-1]
                print(f"repeat {repeat + 1}: {ranks} rank(s), {count:4d} images: {wall:6.1f} s wall, {cpu:6.1f} s CPU",
                      flush=True)
    setups = {f"{ranks} rank(s)": summarize(runs[ranks, args.small], runs[ranks, args.images], args.small, args.images)
              for ranks in RANKS}
    summary = {
        "images": args.images, "small": args.small, "image_size_px": [1024, 768], "repeats": args.repeats,
        "shards_per_split": SHARDS_PER_SPLIT, "machine": machine(), "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0], "setups": setups,
        "speedup_conversion": setups["2 rank(s)"]["conversion_images_per_sec"]
        / setups["1 rank(s)"]["conversion_images_per_sec"],
        "size": size_overhead(trees[args.images], work / "out"),  # the last run ingested --images
    }
    for name, setup in setups.items():
        print(f"{name}: {setup['conversion_images_per_sec']:.1f} img/s conversion, "
              f"{setup['end_to_end_images_per_sec']:.1f} img/s end to end, "
              f"{setup['conversion_cpu_seconds_per_image'] * 1000:.0f} ms CPU per image")
    size = summary["size"]
    print(f"speedup 2/1 ranks (conversion): {summary['speedup_conversion']:.2f}; shards {size['shard_bytes']:,} B vs "
          f"sources {size['source_bytes']:,} B: overhead {size['overhead']:+.1%}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_throughput.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {out / 'ingest_throughput.json'}")


def summarize(small_runs: list, large_runs: list, small: int, large: int) -> dict:
    """Rates from the best (fastest wall) run of each size; CPU per image is load-independent."""
    best_small, best_large = min(small_runs), min(large_runs)
    return {
        "end_to_end_images_per_sec": large / best_large[0],
        "conversion_images_per_sec": (large - small) / (best_large[0] - best_small[0]),
        "conversion_cpu_seconds_per_image": (best_large[1] - best_small[1]) / (large - small),
        "startup_cpu_seconds": best_small[1] - small * (best_large[1] - best_small[1]) / (large - small),
        "runs_wall_cpu": large_runs, "runs_wall_cpu_small": small_runs,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300, help="images per timed run (default 300)")
    parser.add_argument("--small", type=int, default=30, help="images of the start-up reference run (default 30)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/semhpc-ingest-bench", help="scratch folder (TIFFs are kept)")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures"))
    return parser.parse_args()


def prepare_distinct_tiffs(tiffs: Path) -> dict[str, list[Path]]:
    from semhpc.data import synth

    if not tiffs.is_dir():
        synth.generate(tiffs, per_class=DISTINCT_IMAGES_PER_CLASS, size=(1024, 768), seed=0)
    return {name: sorted((tiffs / name).glob("*.tif")) for name in CATEGORIES}


def prepare_tree(work: Path, distinct: dict[str, list[Path]], count: int) -> Path:
    """SRC/<Category>/<i>.tif: `count` links, spread evenly over the categories."""
    tree = work / f"src-{count}"
    if not tree.is_dir():
        for index in range(count):
            name = CATEGORIES[index % len(CATEGORIES)]
            link = tree / name / f"{index:06d}.tif"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(distinct[name][index // len(CATEGORIES) % len(distinct[name])])
    return tree


def run_once(ranks: int, tree: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of mpirun and all ranks) of one ingest into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = mpirun_command(ranks, ["ingest", str(tree), str(out), "--shards-per-split", str(SHARDS_PER_SPLIT)])
    cpu_before, started = _children_cpu_seconds(), time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, _children_cpu_seconds() - cpu_before
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return wall, cpu


def _children_cpu_seconds() -> float:
    """User + system time of finished child processes; the ranks are mpirun's children, so they count."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def size_overhead(tree: Path, out: Path) -> dict:
    source_bytes = sum(path.stat().st_size for path in tree.rglob("*.tif"))  # stat follows the links
    shard_bytes = sum(path.stat().st_size for path in out.glob("*.tfrecord"))
    return {"source_bytes": source_bytes, "shard_bytes": shard_bytes, "overhead": shard_bytes / source_bytes - 1}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "os": platform.platform()}


if __name__ == "__main__":
    main()
