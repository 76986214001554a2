"""Scaling sweeps: the same benchmark at several rank counts (`semhpc bench --sweep 1,2,4`) or
intra-op thread counts (`--threads 1,2`), with speedup and efficiency against the first point.

Every point is a fresh process, because TensorFlow fixes its thread pools and Horovod its ranks
at start-up. Rank points run under the launcher's mpirun line (`semhpc.runtime.launcher`), which
binds each rank to its own core(s): N ranks use N cores, so on CPUs the comparison is fair.
Thread points run one process bound to N cores with N intra-op threads.

speedup(N) = images/sec(N) / images/sec(first point); efficiency = speedup / (N / first N).
Outputs: sweep.csv (one row per point and phase), sweep.json (the rows and every point's bench
document) and sweep.png (speedup and efficiency against ideal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from semhpc.runtime.launcher import mpirun_command
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError

AXIS_LABELS = {"workers": "ranks", "threads": "intra-op threads"}
SWEEP_COLUMNS = ["model", "phase", "workers", "threads", "batch_size", "image_size", "seconds_per_batch_mean",
                 "seconds_per_batch_std", "images_per_sec", "images_per_sec_per_rank", "speedup", "efficiency"]


def parse_counts(text: str, option: str, most: int) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; positive, distinct, increasing and at most `most`, else one SemhpcError line."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SemhpcError(f"{option} {text!r}: expected comma-separated whole numbers like 1,2,4") from None
    if not counts or min(counts) < 1 or counts != sorted(set(counts)):
        raise SemhpcError(f"{option} {text!r}: counts must be positive and increasing, like 1,2,4")
    if counts[-1] > most:
        raise SemhpcError(f"{option} {text!r}: {counts[-1]} is out of range: at most {most}")
    return counts


def rank_sweep(ranks: list[int], point_args: list[str], cores_per_rank: int = 1) -> list[dict]:
    """The bench document of `semhpc bench POINT_ARGS` under mpirun at each rank count."""

    return [_run_point(lambda out: mpirun_command(n, ["bench", *point_args, "--out", out],
                                                  cores_per_rank=cores_per_rank),
                       f"{n} rank(s)") for n in ranks]


def thread_sweep(threads: list[int], point_args: list[str]) -> list[dict]:
    """The bench document of one process with N intra-op threads, bound to N cores, for each N."""
    cores = sorted(os.sched_getaffinity(0))
    documents = []
    for n in threads:
        bind = cores[:n] if n <= len(cores) else None  # more threads than cores: unbound, oversubscribed

        def command(out, n=n):
            return [sys.executable, "-m", "semhpc", "bench", *point_args, "--threads", str(n), "--out", out]

        documents.append(_run_point(command, f"{n} thread(s)", bind))
    return documents


def _run_point(command_for, label: str, cores: list[int] | None = None) -> dict:
    """Run one point (command_for(output_path) -> argv) and read the document it wrote."""

    with tempfile.TemporaryDirectory(prefix="semhpc-sweep-") as tmp:
        out = Path(tmp) / "point.json"
        command = command_for(str(out))
        print(f"sweep point: {label}", file=sys.stderr, flush=True)
        bind = (lambda: os.sched_setaffinity(0, cores)) if cores else None
        done = subprocess.run(command, stdout=subprocess.DEVNULL, preexec_fn=bind, env=_child_env())
        if done.returncode != 0 or not out.is_file():
            raise SemhpcError(f"sweep point {label} failed (exit {done.returncode}): {' '.join(command)}")
        return json.loads(out.read_text())


def _child_env() -> dict:
    """This environment, with the root permission mpirun needs when semhpc itself runs as root."""
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def sweep_table(documents: list[dict], by: str) -> pd.DataFrame:
    """One row per (point, phase) with speedup and efficiency against the first point; `by` is
    "workers" (a rank sweep) or "threads" (a thread sweep)."""
    rows = []
    for doc in documents:
        for phase in ("forward", "train"):
            if phase in doc:
                stats = doc[phase]
                rows.append({"model": doc["model"], "phase": phase, "workers": doc["ranks"],
                             "threads": doc["threads_per_rank"], "batch_size": doc["batch_size"],
                             "image_size": doc["image_size"],
                             "seconds_per_batch_mean": stats["seconds_per_batch_mean"],
                             "seconds_per_batch_std": stats["seconds_per_batch_std"],
                             "images_per_sec": stats["images_per_sec_total"],
                             "images_per_sec_per_rank": stats["images_per_sec_per_rank"]})
    table = pd.DataFrame(rows)
    first = table.groupby("phase")[[by, "images_per_sec"]].transform("first")
    table["speedup"] = table["images_per_sec"] / first["images_per_sec"]
    table["efficiency"] = table["speedup"] / (table[by] / first[by])
    return table[SWEEP_COLUMNS]


def write_sweep(out_dir: str | Path, kind: str, table: pd.DataFrame, documents: list[dict]) -> Path:
    """sweep.csv, sweep.json and sweep.png in `out_dir`; returns the folder."""
    out = Path(out_dir)
    by = "workers" if kind == "rank_sweep" else "threads"
    with atomic.atomic_path(out / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False)
    atomic.write_json(out / "sweep.json", {"format": 1, "kind": kind, "rows": table.to_dict("records"),
                                           "points": documents})
    figure = scaling_figure(table, by)
    with atomic.atomic_path(out / "sweep.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return out


def scaling_figure(table: pd.DataFrame, by: str):
    """Speedup and efficiency against `by`, per phase, with ideal linear scaling dotted."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    speedup_ax, efficiency_ax = figure.subplots(1, 2)
    counts = sorted(table[by].unique())
    speedup_ax.plot(counts, [c / counts[0] for c in counts], ":", color="black", label="ideal")
    efficiency_ax.plot(counts, [1.0] * len(counts), ":", color="black", label="ideal")
    for phase, rows in table.groupby("phase"):
        speedup_ax.plot(rows[by], rows["speedup"], "o-", label=phase)
        efficiency_ax.plot(rows[by], rows["efficiency"], "o-", label=phase)
    model, label = table["model"].iloc[0], AXIS_LABELS[by]
    speedup_ax.set(xlabel=label, ylabel="speedup", title=f"{model}: speedup against {counts[0]} {label}")
    efficiency_ax.set(xlabel=label, ylabel="efficiency", ylim=(0, 1.1), title=f"{model}: efficiency")
    for ax in (speedup_ax, efficiency_ax):
        ax.set_xticks(counts)
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def format_sweep(table: pd.DataFrame, by: str) -> str:
    shown = table[["phase", by, "seconds_per_batch_mean", "images_per_sec", "speedup", "efficiency"]]
    return shown.to_string(index=False, float_format=lambda value: f"{value:.3f}")
