"""A per-layer profile (`semhpc profile --out DIR`) as tables: where the step time goes (docs/background.md: Per-layer profiling).

The folder's files and their definitions are `semhpc.bench.layer_timing_report`'s: profile.json (the
summary: coverage, layer_share, overhead, wall_step_time and `rows`, the mean seconds per
iteration of every (layer, phase) row) and iterations.csv (every row of every profiled
iteration of every rank). Layer rows (kind "layer") are the registry's layer blocks with the
phases forward, backward and optimizer (that block's weight update); the other rows (loss,
shared optimizer work, allreduce, input wait, framework, unattributed) are what is not a layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from semhpc.utils.errors import SemhpcError

# semhpc.bench.attribution's phases of a layer row; not imported from there because that module
# loads TensorFlow (through the model registry), which a report or notebook does not need.
LAYER_PHASES = ("forward", "backward", "optimizer")
SUMMARY_KEYS = ("rows", "coverage", "layer_share", "overhead", "wall_step_time")
HEADLINE_KEYS = ("model", "image_size", "batch_size", "ranks", "iterations", "wall_step_time", "coverage",
                 "layer_share", "framework_share", "unattributed_share", "overhead")


@dataclass(frozen=True)
class LayerTiming:
    summary: dict              # profile.json
    iterations: pd.DataFrame   # iterations.csv: rank, iteration, layer, phase, kind, seconds
    path: Path

    def summary_table(self) -> pd.Series:
        """The headline numbers: what was profiled, the wall step time and how much of it is explained."""
        return pd.Series({key: self.summary.get(key) for key in HEADLINE_KEYS}, name=str(self.path))

    def rows(self) -> pd.DataFrame:
        """layer, phase, kind, seconds (mean per iteration over iterations and ranks), share."""
        return pd.DataFrame(self.summary["rows"])

    def layer_times(self) -> pd.DataFrame:
        """Seconds per iteration of each layer block by phase, plus total; slowest first."""
        rows = self.rows()
        table = (rows[rows["kind"] == "layer"].pivot_table(index="layer", columns="phase", values="seconds",
                                                           aggfunc="sum")
                 .reindex(columns=list(LAYER_PHASES)).fillna(0.0))
        return table.assign(total=table.sum(axis=1)).sort_values("total", ascending=False)

    def layer_time_by_iteration(self) -> pd.DataFrame:
        """Seconds of each layer block (all phases) at each iteration, mean over ranks:
        rows iterations, columns layer blocks."""
        layers = self.iterations[self.iterations["kind"] == "layer"]
        per_rank = layers.groupby(["rank", "iteration", "layer"])["seconds"].sum()
        return per_rank.groupby(["iteration", "layer"]).mean().unstack("layer").fillna(0.0)

    def step_breakdown(self) -> pd.Series:
        """The mean step in parts: layers by phase ("layers forward", ...) and every other row by
        name; the parts add up to `wall_step_time`. Largest first."""
        rows = self.rows()
        part = [f"layers {phase}" if kind == "layer" else layer
                for layer, phase, kind in zip(rows["layer"], rows["phase"], rows["kind"])]
        return rows.groupby(part)["seconds"].sum().sort_values(ascending=False)


def load_layer_timing(path: str | Path) -> LayerTiming:
    """A profile output folder (or its profile.json)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    summary_file, iterations_file = folder / "profile.json", folder / "iterations.csv"
    for needed in (summary_file, iterations_file):
        if not needed.is_file():
            raise SemhpcError(f"{needed}: not found (run `semhpc profile ... --out {folder}`)")
    summary = json.loads(summary_file.read_text())
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise SemhpcError(f"{summary_file}: missing {', '.join(missing)}")
    return LayerTiming(summary, pd.read_csv(iterations_file), folder)
