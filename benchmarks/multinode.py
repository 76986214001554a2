"""Two nodes against one on the multi-node testbed (hpc/testbed/): scaling, start-up and failure.

Measured on a testbed of its own (started and removed here; one core per compute node):
  scaling (Slurm)   `semhpc submit --job bench --nodes 2` on testbed-slurm: the sweep's 1 node x
                    1 rank and 2 nodes x 1 rank points, training images/sec; target ratio >= 1.85
  scaling (mpirun)  the same two points with plain `mpirun` from node1 (no scheduler), the
                    launcher's line with the host list node1:1,node2:1
  submit -> step    seconds from `semhpc submit` (sbatch / qsub) of a 2-node training to its
                    first training step in metrics.jsonl, on testbed-slurm and testbed-pbs
  dead node         a 2-node training on testbed-slurm, node2 `docker kill`ed once steps flow:
                    seconds until the job has ended (Slurm) and until status.json says failed

    .venv/bin/python benchmarks/multinode.py [--repeats 2] [--json out.json]
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
from semhpc.runtime.launcher import mpirun_command  # noqa: E402
from testbed_cluster import Testbed  # noqa: E402  (the tests' driver of hpc/testbed/testbed.sh)

TARGET = 1.85
VENV_PYTHON = "/opt/semhpc/venv/bin/python"
DATA = "/scratch/semhpc/data"


def main() -> None:
    args = parse_args()
    before = machine()
    bed = Testbed(f"semhpc-bench{os.getpid()}")
    started = time.monotonic()
    bed.up()
    results = {"testbed_up_seconds": time.monotonic() - started}
    try:
        ingest_on_testbed(bed)
        point = ["--model", args.model, "--image-size", str(args.image_size), "--batch-size",
                 str(args.batch_size), "--batches", str(args.batches), "--warmup", "3", "--mode", "train"]
        sweeps = [scheduler_sweep(bed, point, repeat) for repeat in range(args.repeats)]
        plain = [plain_mpirun(bed, point, repeat) for repeat in range(args.repeats)]
        results["scaling_slurm"] = summarize(sweeps)
        results["scaling_mpirun"] = summarize(plain)
        results["submit_to_first_step"] = {cluster: submit_to_first_step(bed, cluster)
                                           for cluster in ("testbed-slurm", "testbed-pbs")}
        results["dead_node"] = dead_node(bed)
    finally:
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
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def ingest_on_testbed(bed: Testbed) -> None:
    bed.semhpc("/scratch/semhpc", "synth", "tiffs", "--per-class", "20", "--size", "64x48", "--seed", "3")
    bed.semhpc("/scratch/semhpc", "ingest", "tiffs", DATA, "--size", "64x48", "--shards-per-split", "2")


def images_per_sec(doc: dict) -> float:
    return doc["train"]["images_per_sec_total"]


def scheduler_sweep(bed: Testbed, point: list[str], repeat: int) -> dict:
    """1 node and 2 nodes through `semhpc submit --job bench` (a chain of two jobs)."""
    workdir = f"/home/semhpc/bench-sweep-{repeat}"
    out = bed.semhpc(workdir, "submit", "--cluster", "testbed-slurm", "--job", "bench", "--nodes", "2", "--",
                     *point, "--out", "point.json").stdout
    job_ids = [line.split()[1] for line in out.splitlines() if line.startswith("job ")]
    rates = {}
    for job_id, nodes in zip(job_ids, (1, 2)):
        state = bed.wait_for(lambda: (s := bed.slurm_state(job_id)) in ("COMPLETED", "FAILED", "CANCELLED") and s,
                             1800, f"bench job {job_id}", every=2)
        assert state == "COMPLETED", bed.read_text(f"{workdir}/semhpc-jobs/semhpc-bench-{nodes}r-{job_id}.log")
        rates[nodes] = images_per_sec(json.loads(bed.read_text(f"{workdir}/point.json")))
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


def summarize(runs: list[dict]) -> dict:
    ratios = [run[2] / run[1] for run in runs]
    return {"one_node": [run[1] for run in runs], "two_nodes": [run[2] for run in runs], "ratios": ratios,
            "median_ratio": statistics.median(ratios), "best_ratio": max(ratios)}


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
    print(f"\n{args.model} {args.image_size} px, batch {args.batch_size} per rank, one core per node; "
          f"load average {before['load_average_1min']:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"testbed up: {results['testbed_up_seconds']:.0f} s")
    for name in ("scaling_slurm", "scaling_mpirun"):
        r = results[name]
        print(f"{name:<15} 1 node {statistics.median(r['one_node']):6.1f} img/s, 2 nodes "
              f"{statistics.median(r['two_nodes']):6.1f} img/s, ratio median {r['median_ratio']:.2f} "
              f"best {r['best_ratio']:.2f} (target >= {TARGET})")
    for cluster, seconds in results["submit_to_first_step"].items():
        print(f"submit -> first step on {cluster}: {seconds:.1f} s")
    dead = results["dead_node"]
    print(f"dead node: job {dead['job_state']} after {dead['job_ended_seconds']:.1f} s, status.json failed after "
          f"{dead['status_failed_seconds']:.1f} s")


if __name__ == "__main__":
    main()
