"""Two nodes against one on the multi-node testbed (hpc/testbed/): scaling, start-up and failure.

Measured on a testbed of its own (started and removed here; one core per compute node), or on
one already up (--testbed PREFIX). Every repeat runs all scaling variants one after the other,
so a busy spell of a shared machine hits all of them alike:
  independent pair  one `semhpc bench` process on node1 and one on node2 at the same time, no
                    MPI: the fair ceiling of two nodes under the load of the moment
  plain mpirun      the launcher's line (semhpc.runtime.launcher) from node1, no scheduler:
                    node1:1, then node1:1,node2:1
  semhpc submit     `semhpc submit --cluster testbed-slurm --job bench --nodes 2`: the sweep's
                    1 node x 1 rank and 2 nodes x 1 rank jobs (sbatch, the job script's mpirun)
images/sec are the bench's timed training batches (after warmup: start-up is not in them). The
ratios: 2 nodes / 1 node (target >= 1.85 with the launcher's defaults) and 2 nodes / the
independent pair of the same repeat (what Horovod keeps of the ceiling).
Then, once each:
  submit -> step    seconds from `semhpc submit` (sbatch / qsub) of a 2-node training to its
                    first training step in metrics.jsonl, on testbed-slurm and testbed-pbs
  dead node         a 2-node training on testbed-slurm, node2 `docker kill`ed once steps flow:
                    seconds until the job has ended (Slurm) and until status.json says failed

    .venv/bin/python benchmarks/multinode.py [--repeats 3] [--testbed PREFIX] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import machine, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from semhpc.runtime.launcher import mpirun_command  # noqa: E402
from testbed_cluster import Testbed  # noqa: E402  (the tests' driver of hpc/testbed/testbed.sh)

TARGET = 1.85
VENV_PYTHON = "/opt/semhpc/venv/bin/python"
DATA = "/scratch/semhpc/data"
VARIANTS = ("plain mpirun", "semhpc submit")


def main() -> None:
    args = parse_args()
    before = machine()
    bed = Testbed(args.testbed or f"semhpc-bench{os.getpid()}")
    started = time.monotonic()
    if not args.testbed:
        bed.up()
    results = {"testbed_up_seconds": time.monotonic() - started}
    try:
        ingest_on_testbed(bed)
        point = ["--model", args.model, "--image-size", str(args.image_size), "--batch-size",
                 str(args.batch_size), "--batches", str(args.batches), "--warmup", "3", "--mode", "train"]
        runs: dict[str, list[dict]] = {"independent pair": [], **{name: [] for name in VARIANTS}}
        for repeat in range(args.repeats):  # variants take turns
            runs["independent pair"].append(independent_pair(bed, point, repeat))
            runs["plain mpirun"].append(plain_mpirun(bed, point, repeat))
            runs["semhpc submit"].append(scheduler_sweep(bed, point, repeat))
            print(f"repeat {repeat + 1}: " + "; ".join(f"{name} {run}" for name, run in
                                                       ((n, r[-1]) for n, r in runs.items())), flush=True)
        results["scaling"] = {name: summarize(runs[name], runs["independent pair"]) for name in VARIANTS}
        results["independent_pair"] = runs["independent pair"]
        if not args.scaling_only:
            results["submit_to_first_step"] = {cluster: submit_to_first_step(bed, cluster)
                                               for cluster in ("testbed-slurm", "testbed-pbs")}
            results["dead_node"] = dead_node(bed)
    finally:
        if not args.testbed:
            bed.down()
    report(results, args, before)
    write_json({"benchmark": "multinode", "settings": vars(args), "machine": before,
                "load_average_after": os.getloadavg()[0], "results": results}, args.json)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--testbed", help="use this testbed (SEMHPC_TESTBED prefix), already up, and leave it up")
    parser.add_argument("--scaling-only", action="store_true", help="skip the start-up and dead-node measures")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def ingest_on_testbed(bed: Testbed) -> None:
    if bed.exists(f"{DATA}/manifest.json"):
        return
    bed.semhpc("/scratch/semhpc", "synth", "tiffs", "--per-class", "20", "--size", "64x48", "--seed", "3")
    bed.semhpc("/scratch/semhpc", "ingest", "tiffs", DATA, "--size", "64x48", "--shards-per-split", "2")


def images_per_sec(doc: dict) -> float:
    return doc["train"]["images_per_sec_total"]


def independent_pair(bed: Testbed, point: list[str], repeat: int) -> dict:
    """One plain `semhpc bench` on each compute node at the same time: images/sec of each and the sum."""
    def bench_on(node: str) -> dict:
        out = f"/home/semhpc/bench-pair-{repeat}-{node}.json"
        bed.run(VENV_PYTHON, "-m", "semhpc", "bench", *point, "--threads", "1", "--out", out, node=node, timeout=1800)
        return json.loads(bed.read_text(out))

    with ThreadPoolExecutor(2) as pool:
        docs = dict(zip(("node1", "node2"), pool.map(bench_on, ("node1", "node2"))))
    rates = {node: images_per_sec(doc) for node, doc in docs.items()}
    windows = [doc["train"]["per_rank"][0]["window"] for doc in docs.values()]
    overlap = min(end for _, end in windows) - max(start for start, _ in windows)
    longest = max(end - start for start, end in windows)
    return {**rates, "total": sum(rates.values()), "overlap": max(0.0, overlap) / longest}


def scheduler_sweep(bed: Testbed, point: list[str], repeat: int) -> dict:
    """1 node and 2 nodes through `semhpc submit --job bench` (a chain of two jobs)."""
    workdir = f"/home/semhpc/bench-sweep-{repeat}"
    out = bed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", "bench", "--nodes", "2", "--",
                     *point, "--out", "point.json").stdout
    job_ids = [line.split()[1] for line in out.splitlines() if line.startswith("job ")]
    rates = {}
    for job_id, nodes in zip(job_ids, (1, 2)):
        # Waited for on the head node: a `docker exec` every few seconds would take CPU from the nodes.
        bed.run("sh", "-c", f"while squeue --noheader --jobs {job_id} | grep -q .; do sleep 1; done", timeout=1800)
        state = bed.slurm_state(job_id)
        assert state == "COMPLETED", bed.read_text(f"{workdir}/semhpc-jobs/semhpc-bench-{nodes}r-{job_id}.log")
        doc = json.loads(bed.read_text(f"{workdir}/point.json"))
        assert doc["ranks"] == nodes, doc  # the next point has not overwritten it yet
        rates[nodes] = images_per_sec(doc)
    return rates


def plain_mpirun(bed: Testbed, point: list[str], repeat: int) -> dict:
    """The same points with the launcher's mpirun line from node1, no scheduler involved."""
    rates = {}
    for nodes, hosts in ((1, "node1:1"), (2, "node1:1,node2:1")):
        out = f"/home/semhpc/bench-plain-{repeat}-{nodes}.json"
        cmd = mpirun_command(nodes, ["bench", *point, "--out", out], hosts=hosts, python=VENV_PYTHON)
        cmd = [word for word in cmd if word != "--allow-run-as-root"]  # the nodes run it as semhpc
        if "PYTHONPATH" in cmd:  # this machine's PYTHONPATH means nothing on the nodes
            at = cmd.index("PYTHONPATH")
            del cmd[at - 1:at + 1]
        bed.run(*cmd, node="node1", timeout=1800)
        rates[nodes] = images_per_sec(json.loads(bed.read_text(out)))
    return rates


def summarize(runs: list[dict], pairs: list[dict]) -> dict:
    """Per repeat: 2 nodes / 1 node, and 2 nodes / the independent pair of the same repeat."""
    ratios = [run[2] / run[1] for run in runs]
    of_ceiling = [run[2] / pair["total"] for run, pair in zip(runs, pairs)]
    return {"one_node": [run[1] for run in runs], "two_nodes": [run[2] for run in runs], "ratios": ratios,
            "median_ratio": statistics.median(ratios), "best_ratio": max(ratios),
            "of_independent_pair": of_ceiling, "median_of_independent_pair": statistics.median(of_ceiling)}


def write_train_config(bed: Testbed, workdir: str, epochs: int) -> str:
    config = f"{workdir}/train.yaml"
    bed.write_text(config, json.dumps({
        "run": {"dir": "run"}, "data": {"dir": DATA, "image_size": 32, "augment": False},
        "model": {"name": "densenet28"}, "train": {"epochs": epochs, "batch_size": 8, "log_every": 1}}))
    return config


def metrics(bed: Testbed, workdir: str) -> list[dict]:
    path = f"{workdir}/run/metrics.jsonl"
    if not bed.exists(path):
        return []
    return [json.loads(line) for line in bed.read_text(path).splitlines() if line.strip()]


def submit_to_first_step(bed: Testbed, cluster: str) -> float:
    """Seconds from `semhpc submit` to the first step record (container clocks are the host's)."""
    workdir = f"/home/semhpc/first-step-{cluster}"
    config = write_train_config(bed, workdir, epochs=1)
    submitted = time.time()
    out = bed.semhpc(workdir, "submit", "--cluster", cluster, "--job", "train", "--nodes", "2", "--",
                     "--config", config).stdout
    step = bed.wait_for(lambda: next((r for r in metrics(bed, workdir) if r["kind"] == "step"), None), 900,
                        f"the first step on {cluster}", every=0.5)
    bed.semhpc(workdir, "cancel", "--cluster", cluster, out.split()[1])  # free the nodes (PBS and Slurm share them)
    time.sleep(15)
    return step["time"] - submitted


def dead_node(bed: Testbed) -> dict:
    """Kill node2 during a 2-node run; how long until Slurm ends the job and status.json says failed."""
    workdir = "/home/semhpc/dead-node"
    config = write_train_config(bed, workdir, epochs=200)
    job_id = bed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", "train", "--nodes", "2", "--",
                        "--config", config).stdout.split()[1]
    bed.wait_for(lambda: sum(r["kind"] == "step" for r in metrics(bed, workdir)) >= 3, 900, "steps to flow")
    killed = time.monotonic()
    bed.kill("node2")
    state = bed.wait_for(lambda: (s := bed.slurm_state(job_id)) not in ("RUNNING", "COMPLETING", "PENDING") and s,
                         900, "the job to end", every=0.5)
    job_ended = time.monotonic() - killed
    bed.wait_for(lambda: json.loads(bed.read_text(f"{workdir}/run/status.json"))["state"] == "failed", 900,
                 "status.json to say failed", every=0.5)
    failed = time.monotonic() - killed
    bed.start("node2")
    return {"job_state": state, "job_ended_seconds": job_ended, "status_failed_seconds": failed}


def report(results: dict, args, before: dict) -> None:
    print(f"\n{args.model} {args.image_size} px, batch {args.batch_size} per rank, one core per node, "
          f"{args.repeats} repeats; load average {before['load_average_1min']:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (the benchmark's own work counts: up to 2 on this host)")
    print(f"testbed up: {results['testbed_up_seconds']:.0f} s")
    pairs = results["independent_pair"]
    print(f"{'independent pair':<16} {statistics.median(p['total'] for p in pairs):6.1f} img/s (median of "
          f"node1 + node2 at once; windows overlap {min(p['overlap'] for p in pairs):.0%} at least)")
    for name, r in results["scaling"].items():
        print(f"{name:<16} 1 node {statistics.median(r['one_node']):6.1f} img/s, 2 nodes "
              f"{statistics.median(r['two_nodes']):6.1f} img/s; 2/1 median {r['median_ratio']:.2f} best "
              f"{r['best_ratio']:.2f} (target >= {TARGET}); 2 nodes / pair median "
              f"{r['median_of_independent_pair']:.2f}")
    for cluster, seconds in results.get("submit_to_first_step", {}).items():
        print(f"submit -> first step on {cluster}: {seconds:.1f} s")
    if "dead_node" in results:
        dead = results["dead_node"]
        print(f"dead node: job {dead['job_state']} after {dead['job_ended_seconds']:.1f} s, status.json failed "
              f"after {dead['status_failed_seconds']:.1f} s")


if __name__ == "__main__":
    main()
