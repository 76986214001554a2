"""Tables, summary and files of a per-layer profile, from every rank's measurements.

Files in the profile folder (`semhpc profile --out DIR`):
  profile.json     the summary (`--json` prints it): coverage, layer_share, overhead, rows ...
  iterations.csv   rank, iteration, layer, phase, kind, seconds: every row of every traced step
  steps.csv        rank, profiled, index, seconds: wall time of every timed step, profiler on/off
  experiment.csv   layer, phase, kind, at_25 .. at_100: seconds spent in each row by 25/50/75/100%
                   of the profiled iterations (mean over ranks), the thesis' experiment data
  trace/rank<R>/   the TensorFlow profiler traces (open with TensorBoard)

Definitions (per iteration, averaged over iterations and ranks):
  wall_step_time   the traced step's wall time; the rows add up to it
  coverage         rows of kinds layer, loss, optimizer, communication, input / wall_step_time
  layer_share      rows of model layers (forward, backward and their weights' update) / wall
  overhead         median step time with the profiler / median step time without it, both from
                   the same run (medians: a step another process preempts does not decide it);
                   with several ranks the mean of the ranks' ratios
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from semhpc.bench.attribution import COVERED_KINDS, row_kind
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError

FORMAT = 1
MILESTONES = (25, 50, 75, 100)
ITERATION_COLUMNS = ["rank", "iteration", "layer", "phase", "kind", "seconds"]
# The run settings a re-analysis keeps from the old profile.json.
SETTINGS_KEYS = ("model", "image_size", "batch_size", "steps", "warmup", "rounds", "threads_per_rank",
                 "precision", "data")


def iteration_table(rank_profiles) -> pd.DataFrame:
    """Every (rank, iteration, row) with its seconds, from RankLayerTimes objects."""
    records = [{"rank": profile.rank, "iteration": it["iteration"], "layer": layer, "phase": phase,
                "kind": row_kind(layer), "seconds": seconds}
               for profile in rank_profiles for it in profile.iterations
               for (layer, phase), seconds in it["rows"].items()]
    if not records:
        raise SemhpcError("the profiler recorded no training step (is the trace folder empty?)")
    return pd.DataFrame(records, columns=ITERATION_COLUMNS)


def steps_table(rank_profiles) -> pd.DataFrame:
    """Wall time of every timed step, with the profiler on and off."""
    return pd.DataFrame([{"rank": profile.rank, "profiled": profiled, "index": index, "seconds": seconds}
                         for profile in rank_profiles
                         for profiled, walls in ((False, profile.unprofiled), (True, profile.profiled))
                         for index, seconds in enumerate(walls)],
                        columns=["rank", "profiled", "index", "seconds"])


def summarise(iterations: pd.DataFrame, steps: pd.DataFrame | None, settings: dict) -> dict:
    """The profile.json document."""
    per_rank = [_rank_summary(rank, rows, None if steps is None else steps[steps["rank"] == rank])
                for rank, rows in iterations.groupby("rank")]
    rows = _mean_rows(iterations)
    wall = rows["seconds"].sum()
    phases = rows.groupby("phase")["seconds"].sum()
    overheads = [r["overhead"] for r in per_rank if r["overhead"] is not None]
    return {
        "format": FORMAT, "kind": "profile", **settings,
        "ranks": len(per_rank), "iterations": int(iterations.groupby("rank")["iteration"].nunique().min()),
        "wall_step_time": wall,
        "profiled_step_time": _mean_of(per_rank, "profiled_step_time"),
        "unprofiled_step_time": _mean_of(per_rank, "unprofiled_step_time"),
        "overhead": sum(overheads) / len(overheads) if overheads else None,
        "coverage": _share(rows, COVERED_KINDS, wall),
        "layer_share": _share(rows, ("layer",), wall),
        "framework_share": _share(rows, ("framework",), wall),
        "unattributed_share": _share(rows, ("unattributed",), wall),
        "phases": {phase: float(seconds) for phase, seconds in phases.sort_values(ascending=False).items()},
        "rows": [{**record, "share": record["seconds"] / wall} for record in rows.to_dict("records")],
        "per_rank": per_rank,
    }


def _mean_rows(iterations: pd.DataFrame) -> pd.DataFrame:
    """Seconds per iteration of each row, averaged over iterations and ranks, slowest first."""
    count = iterations.groupby("rank")["iteration"].nunique().sum()
    rows = iterations.groupby(["layer", "phase", "kind"], as_index=False)["seconds"].sum()
    rows["seconds"] /= count
    return rows.sort_values("seconds", ascending=False, ignore_index=True)


def _share(rows: pd.DataFrame, kinds, wall: float) -> float:
    return float(rows.loc[rows["kind"].isin(kinds), "seconds"].sum() / wall)


def _rank_summary(rank: int, iterations: pd.DataFrame, steps: pd.DataFrame | None) -> dict:
    rows = _mean_rows(iterations)
    wall = rows["seconds"].sum()
    profiled = unprofiled = None
    if steps is not None and len(steps):
        profiled = float(steps.loc[steps["profiled"], "seconds"].median())
        unprofiled = float(steps.loc[~steps["profiled"], "seconds"].median())
    return {"rank": int(rank), "wall_step_time": float(wall), "profiled_step_time": profiled,
            "unprofiled_step_time": unprofiled,
            "overhead": profiled / unprofiled if profiled and unprofiled else None,
            "coverage": _share(rows, COVERED_KINDS, wall), "layer_share": _share(rows, ("layer",), wall)}


def _mean_of(per_rank: list[dict], key: str):
    values = [r[key] for r in per_rank if r[key] is not None]
    return sum(values) / len(values) if values else None


def experiment_table(iterations: pd.DataFrame) -> pd.DataFrame:
    """Seconds spent in each row by 25/50/75/100% of the profiled iterations, mean over ranks."""
    ranks = iterations["rank"].nunique()
    order = sorted(iterations["iteration"].unique())
    table = None
    for percent in MILESTONES:
        upto = order[max(1, math.ceil(len(order) * percent / 100)) - 1]
        column = (iterations[iterations["iteration"] <= upto]
                  .groupby(["layer", "phase", "kind"])["seconds"].sum() / ranks).rename(f"at_{percent}")
        table = column.to_frame() if table is None else table.join(column, how="outer")
    return table.fillna(0.0).reset_index().sort_values(f"at_{MILESTONES[-1]}", ascending=False, ignore_index=True)


def write_layer_timing(out_dir: str | Path, iterations: pd.DataFrame, steps: pd.DataFrame | None, summary: dict) -> None:
    out = Path(out_dir)
    tables = {"iterations.csv": iterations, "experiment.csv": experiment_table(iterations)}
    if steps is not None:
        tables["steps.csv"] = steps
    for name, table in tables.items():
        with atomic.atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False)
    atomic.write_json(out / "profile.json", summary)


def read_layer_timing_dir(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """(iterations, steps or None, settings) of a folder `semhpc profile --out` wrote."""

    folder = Path(path)
    iterations = pd.read_csv(folder / "iterations.csv")
    steps = pd.read_csv(folder / "steps.csv") if (folder / "steps.csv").is_file() else None
    settings = {}
    if (folder / "profile.json").is_file():
        old = json.loads((folder / "profile.json").read_text())
        settings = {key: old[key] for key in SETTINGS_KEYS if key in old}
    return iterations, steps, settings


def format_summary(summary: dict, top: int = 20) -> str:
    """The summary table: layers by total time (forward, backward, update), then the other rows."""
    rows = pd.DataFrame(summary["rows"])
    layers = rows[rows["kind"] == "layer"].pivot_table(index="layer", columns="phase", values="seconds",
                                                       aggfunc="sum", fill_value=0.0)
    layers["total"] = layers.sum(axis=1)
    layers = layers.sort_values("total", ascending=False)
    wall = summary["wall_step_time"]
    lines = [f"{summary.get('model', '?')}: {summary['iterations']} profiled iteration(s) x {summary['ranks']} rank(s); "
             f"wall step {wall * 1e3:.2f} ms",
             f"{'layer block':<24} {'forward':>9} {'backward':>9} {'update':>9} {'total ms':>9} {'share':>7}"]
    for name, row in layers.head(top).iterrows():
        lines.append(f"{name:<24} {_ms(row, 'forward')} {_ms(row, 'backward')} {_ms(row, 'optimizer')} "
                     f"{row['total'] * 1e3:>9.2f} {row['total'] / wall:>7.1%}")
    rest = layers.iloc[top:]
    if len(rest):
        lines.append(f"{f'({len(rest)} more blocks)':<24} {'':>29} {rest['total'].sum() * 1e3:>9.2f} "
                     f"{rest['total'].sum() / wall:>7.1%}")
    lines.append("")
    for _, row in rows[rows["kind"] != "layer"].iterrows():
        label = f"{row['layer']} ({row['phase']})"
        lines.append(f"{label:<54} {row['seconds'] * 1e3:>9.2f} {row['seconds'] / wall:>7.1%}")
    overhead = summary["overhead"]
    lines += ["", f"coverage {summary['coverage']:.3f}  layer share {summary['layer_share']:.3f}  "
                  f"framework {summary['framework_share']:.3f}  unattributed {summary['unattributed_share']:.3f}  "
                  f"overhead {'n/a' if overhead is None else f'{overhead:.3f}x'}"]
    return "\n".join(lines)


def _ms(row, phase: str) -> str:
    return f"{row.get(phase, 0.0) * 1e3:>9.2f}"
