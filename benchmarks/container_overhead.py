"""What running in the image costs: `semhpc bench` on 2 MPI ranks from the host venv, in Docker and
through an HPC container runtime (issue 17; goal: container overhead <= 3 %).

Setups, each `--repeats` times, taking turns (so load from other work hits them alike):
  host          mpirun -np 2 (semhpc.runtime.launcher's tuned line) with the host venv's Python
  docker        docker run IMAGE: the image's own mpirun -np 2 (`semhpc launch -np 2 -- bench`)
  charliecloud  the host's mpirun -np 2, each rank `ch-run ... IMAGE -- python` (the hybrid model
                Apptainer sites use; words from hpc/runtimes.yaml), run as root here
The figure is the train phase's images/s of both ranks together (`images_per_sec_total`); the
overhead is 1 - container / host, from the medians and from the best runs. Also recorded: the
Docker image's size, the Charliecloud folder's size and the conversion's seconds (a fresh `ch-convert`
with --convert; else the one this run made, or null when the folder was converted before).

    .venv/bin/python benchmarks/container_overhead.py --image semhpc:cpu   # -> docs/figures/container_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, child_env, machine

sys.path.insert(0, str(REPO / "tests"))
from hpc_runtime import charliecloud_image  # noqa: E402
from semhpc.hpc.runtimes import container_runtime  # noqa: E402
from semhpc.runtime.launcher import mpirun_command  # noqa: E402

SETUPS = ("host", "docker", "charliecloud")


def bench_args(args) -> list[str]:
    return ["bench", "--model", args.model, "--image-size", str(args.image_size), "--batch-size",
            str(args.batch_size), "--batches", str(args.batches), "--mode", "train", "--json"]


def command(setup: str, args, folder: Path) -> list[str]:
    if setup == "host":
        return mpirun_command(2, bench_args(args))
    if setup == "docker":
        return ["docker", "run", "--rm", "--cap-add", "SYS_NICE", args.image, "launch", "-np", "2", "--",
                *bench_args(args)]
    runtime = container_runtime("charliecloud")
    cmd = mpirun_command(2, bench_args(args), python="\0python")
    at = cmd.index("\0python")
    words = [w.replace("${PWD}", "/tmp") for w in runtime.command(str(folder), [], gpus=False)]
    return [*cmd[:at], *words, *cmd[at + 1:]]


def images_per_sec(setup: str, args, folder: Path) -> float:
    out = subprocess.run(command(setup, args, folder), cwd="/tmp", env={**child_env(), "USER": "root"},
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{setup} failed:\n{out.stderr[-3000:]}")
    document = json.loads(out.stdout[out.stdout.index("{"):])
    return document["train"]["images_per_sec_total"]


def docker_size(image: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


def folder_size(folder: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0])


def fresh_conversion_seconds(image: str) -> float:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        start = time.monotonic()
        subprocess.run(["ch-convert", "-i", "docker", "-o", "dir", image, f"{tmp}/image"], check=True,
                       capture_output=True, env={**os.environ, "USER": "root"})
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="semhpc:cpu")
    parser.add_argument("--model", default="densenet28")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--convert", action="store_true", help="also time a fresh ch-convert (minutes)")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "container_overhead.json"))
    args = parser.parse_args()

    folder, cached_seconds = charliecloud_image(args.image)
    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    for repeat in range(args.repeats):
        for setup in SETUPS:
            rates[setup].append(images_per_sec(setup, args, folder))
            print(f"repeat {repeat + 1} {setup:<13} {rates[setup][-1]:8.1f} images/s", flush=True)
    median = {setup: statistics.median(values) for setup, values in rates.items()}
    best = {setup: max(values) for setup, values in rates.items()}
    document = {
        "settings": {key: getattr(args, key) for key in ("image", "model", "image_size", "batch_size", "batches",
                                                         "repeats")},
        "machine": machine(), "load_before": load_before, "load_after": os.getloadavg(),
        "images_per_sec": rates, "median": median, "best": best,
        "overhead_median": {s: 1 - median[s] / median["host"] for s in SETUPS[1:]},
        "overhead_best": {s: 1 - best[s] / best["host"] for s in SETUPS[1:]},
        "docker_image_bytes": docker_size(args.image), "charliecloud_folder_bytes": folder_size(folder),
        "conversion_seconds": fresh_conversion_seconds(args.image) if args.convert else cached_seconds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    for setup in SETUPS[1:]:
        print(f"{setup}: overhead {100 * document['overhead_median'][setup]:+.1f} % (medians), "
              f"{100 * document['overhead_best'][setup]:+.1f} % (best runs)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
