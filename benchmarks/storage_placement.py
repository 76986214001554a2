"""Where to put a dataset: `semhpc bench io` on the multi-node testbed's shared volume against a
compute node's local disk (issue 22 item 7; docs/storage.md is the guidance built on it).

On the testbed (hpc/testbed/; started and removed here, or one already up with --testbed) the
same files sit in two places, read from compute node node1 (one core):
  shared   /scratch/semhpc/...  the docker volume every node mounts (NFS or Lustre on a real cluster)
  local    /tmp/...             node1's own container file system (a node's local disk)
for SEM TIFFs (1024 x 768, what classify and ingest read) and for the TFRecord shards ingest makes
of them (what training reads). Each repeat is one `semhpc bench io SHARED LOCAL --readers ...`:
the paths take turns at each reader count, so load hits both alike; the ratios local / shared are
reported (median and per repeat). On the testbed both paths end on the same host disk (a docker
volume and an overlay file system), so the figures show the method and the cost of the two
layers, not what a parallel file system does; run the same command on a real cluster's nodes.

    .venv/bin/python benchmarks/storage_placement.py [--per-class 10] [--repeats 3] [--testbed PREFIX]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from common import machine, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from testbed_cluster import Testbed  # noqa: E402  (the tests' driver of hpc/testbed/testbed.sh)

SHARED = "/scratch/semhpc/placement"
LOCAL = "/tmp/placement"
NODE = "node1"


def main() -> None:
    args = parse_args()
    before = machine()
    bed = Testbed(args.testbed or f"semhpc-io{os.getpid()}")
    if not args.testbed:
        bed.up()
    try:
        prepare(bed, args.per_class)
        results = {kind: [] for kind in ("tiff", "tfrecord")}
        for repeat in range(args.repeats):
            for kind, folder in (("tiff", "tiffs"), ("tfrecord", "shards")):
                out = bed.run("semhpc", "bench", "io", f"{SHARED}/{folder}", f"{LOCAL}/{folder}", "--readers",
                              args.readers, "--json", node=NODE, timeout=3600).stdout
                results[kind].append(json.loads(out))
                print(f"repeat {repeat + 1}: {kind}: " + ", ".join(
                    f"{row['readers']} reader(s) local/shared {row['images_per_sec_vs_first'][f'{LOCAL}/{folder}']:.2f}"
                    for row in results[kind][-1]["relative"]), flush=True)
    finally:
        if not args.testbed:
            bed.down()
    summary = {kind: summarize(docs) for kind, docs in results.items()}
    report(summary, before)
    write_json({"benchmark": "storage_placement", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "summary": summary, "runs": results}, args.json)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10, help="synthetic TIFFs per category (10 categories)")
    parser.add_argument("--readers", default="1,2", help="reader counts (node1 has one core; default 1,2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--testbed", help="use this testbed (SEMHPC_TESTBED prefix), already up, and leave it up")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def prepare(bed: Testbed, per_class: int) -> None:
    """TIFFs and their TFRecord shards on the shared volume, and a copy of both on node1's /tmp."""
    started = time.monotonic()
    bed.semhpc(SHARED, "synth", "tiffs", "--per-class", str(per_class), "--size", "1024x768", "--seed", "11")
    bed.semhpc(SHARED, "ingest", "tiffs", "shards", "--shards-per-split", "4", timeout=3600)
    bed.run("rm", "-rf", LOCAL, node=NODE)
    bed.run("cp", "-r", SHARED, LOCAL, node=NODE)
    bed.run("sync", node=NODE)  # written pages are dirty until flushed, and the readers cannot drop dirty pages
    print(f"data ready in {time.monotonic() - started:.0f} s", flush=True)


def summarize(docs: list[dict]) -> dict:
    """Per reader count: images/s of each path (median over repeats) and the local / shared ratios."""
    rows = []
    for at, relative in enumerate(docs[0]["relative"]):
        shared, local = ([doc["paths"][i]["rows"][at] for doc in docs] for i in (0, 1))
        ratios = [doc["relative"][at]["images_per_sec_vs_first"][doc["paths"][1]["path"]] for doc in docs]
        rows.append({"readers": relative["readers"],
                     "shared_images_per_sec": statistics.median(r["images_per_sec"] for r in shared),
                     "local_images_per_sec": statistics.median(r["images_per_sec"] for r in local),
                     "shared_mb_per_sec": statistics.median(r["mb_per_sec"] for r in shared),
                     "local_mb_per_sec": statistics.median(r["mb_per_sec"] for r in local),
                     "local_vs_shared": ratios, "local_vs_shared_median": statistics.median(ratios)})
    return {"files": docs[0]["paths"][0]["files"], "megabytes": docs[0]["paths"][0]["megabytes"], "rows": rows}


def report(summary: dict, before: dict) -> None:
    print(f"\nshared /scratch vs node1's local /tmp (load average {before['load_average_1min']:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after)")
    print(f"{'files':<9} {'readers':>7} {'shared img/s':>13} {'local img/s':>12} {'shared MB/s':>12} "
          f"{'local MB/s':>11} {'local/shared':>13}")
    for kind, part in summary.items():
        for row in part["rows"]:
            print(f"{kind:<9} {row['readers']:>7} {row['shared_images_per_sec']:>13.1f} "
                  f"{row['local_images_per_sec']:>12.1f} {row['shared_mb_per_sec']:>12.1f} "
                  f"{row['local_mb_per_sec']:>11.1f} {row['local_vs_shared_median']:>13.2f}")


if __name__ == "__main__":
    main()
