"""What the benchmark scripts share: run semhpc (or a script's own worker) in a fresh process
pinned to given cores, make a small ingested dataset, and describe the machine and its load.

Every measurement runs in its own process: TensorFlow fixes its thread pools at start-up, and a
process pinned to N cores with N threads is the unit the comparisons are about.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def child_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    if os.geteuid() == 0:  # mpirun refuses root without these
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def start(command: list[str], cores: list[int] | None = None) -> subprocess.Popen:
    """Start `command`, bound to `cores` (None: unbound); its stdout is captured."""
    bind = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen(command, cwd=REPO, env=child_env(), preexec_fn=bind, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    """Wait for `process`; its stdout, or exit with its stderr when it failed."""
    out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(process.args)}\n{err[-3000:]}")
    return out


def semhpc_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "semhpc", *args]


def bench_json(args: list[str], cores: list[int] | None = None, launcher: list[str] | None = None) -> dict:
    """The document of `semhpc bench ARGS`, run alone; `launcher` replaces the plain command
    (e.g. an mpirun line built by `mpirun_command`, which must end with ARGS)."""
    return run_bench_together([(args, cores, launcher)])[0]


def run_bench_together(points: list[tuple]) -> list[dict]:
    """Run several `semhpc bench` points at the same time: [(args, cores, launcher or None)]."""
    with tempfile.TemporaryDirectory(prefix="semhpc-benchmark-") as tmp:
        outs = [Path(tmp) / f"point{i}.json" for i in range(len(points))]
        processes = []
        for (args, cores, launcher), out in zip(points, outs):
            command = (launcher or semhpc_command(["bench", *args])) + ["--out", str(out)]
            processes.append(start(command, cores))
        for process in processes:
            finish(process)
        return [json.loads(out.read_text()) for out in outs]


def worker_json(script: str, args: list[str], cores: list[int] | None = None) -> dict:
    """Run `python SCRIPT --worker ARGS` and parse the JSON line it prints last."""
    out = finish(start([sys.executable, script, "--worker", *args], cores))
    return json.loads(out.strip().splitlines()[-1])


def pin_threads(threads: int) -> None:
    """Inside a worker, before TensorFlow runs anything: `threads` intra-op threads."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))


def synth_and_ingest(work: Path, per_class: int, tiff_size: str, stored_size: str) -> Path:
    """`semhpc synth` + `semhpc ingest` into WORK (reused when it is already there)."""
    data = work / f"data-{per_class}-{stored_size}"
    if not (data / "manifest.json").is_file():
        tiffs = work / f"tiffs-{per_class}-{tiff_size}"
        finish(start(semhpc_command(["synth", str(tiffs), "--per-class", str(per_class), "--size", tiff_size])))
        finish(start(semhpc_command(["ingest", str(tiffs), str(data), "--size", stored_size])))
    return data


def machine() -> dict:
    """CPU, cores, software and the 1-minute load average now (other work disturbs timings)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0]}


def best_and_median(values: list[float]) -> dict:
    """The best run is the least disturbed by other work on a shared machine; the median is typical."""
    return {"best": max(values), "median": statistics.median(values), "runs": values}


def write_json(document: dict, path: str | None) -> None:
    """Save the results document when a path was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document, indent=2) + "\n")
        print(f"-> {path}")
