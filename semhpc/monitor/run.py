"""A training run directory as pandas tables, read fresh on every call so a live run can be
followed (the newest half-written metrics line is skipped, see `read_metrics`).

Layout (CONTRACTS "Run directory", `semhpc.runtime.run_artifacts`): config.yaml, status.json,
metrics.jsonl, test_metrics.json, eval.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from semhpc.monitor.status import (
    DEFAULT_MIN_STALL_SECONDS,
    DEFAULT_STALL_FACTOR,
    RunStatus,
    decide_status,
    read_status_file,
)
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

STEP_COLUMNS = ["step", "epoch", "loss", "accuracy", "lr", "images_per_sec", "step_time", "time"]
EPOCH_COLUMNS = ["step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "eval_split", "lr",
                 "images_per_sec", "epoch_time", "time"]


def open_run(run_dir: str | Path) -> "Run":
    return Run(run_dir)


def spread_column(rank_times: pd.DataFrame) -> str:
    """The column that tells ranks apart: `compute_time` (each rank's own part of a step, before it
    waits for the others at the allreduce) when every record has it, else `step_time` (runs
    recorded before the trainer measured it: every rank's step time includes that wait, so a
    straggler makes them all look alike)."""
    if "compute_time" in rank_times and len(rank_times) and rank_times["compute_time"].notna().all():
        return "compute_time"
    return "step_time"


def describe_rank_spread(rank_times: pd.DataFrame, recent: int = 20) -> str:
    """One line for people from `Run.rank_step_times()`: each rank's median compute time (its
    batch, forward and backward, before the allreduce) over the newest `recent` logged intervals
    and how much slower the slowest rank is than the fastest. A straggler (a slow node, a busy core,
    slow storage) shows as one rank well above the others; the step time, the same on every rank
    since the others wait for it, follows."""
    column = spread_column(rank_times)
    label = "compute time" if column == "compute_time" else "step time"
    if rank_times.empty:
        return f"{label} per rank: no step recorded yet"
    recent_rows = rank_times[rank_times["step"].isin(sorted(rank_times["step"].unique())[-recent:])]
    medians = recent_rows.groupby("rank")[column].median()
    per_rank = ", ".join(f"rank {rank} {seconds:.3f} s" for rank, seconds in medians.items())
    line = (f"{label} per rank (median of the last {recent_rows['step'].nunique()} intervals): {per_rank}; "
            f"slowest rank {medians.idxmax()} at {medians.max() / medians.min():.2f}x the fastest")
    if column == "compute_time":
        line += f"; step time {recent_rows['step_time'].median():.3f} s (with the wait at the allreduce)"
    return line


class Run:
    """One run directory. Tables are rank-0's records: loss and accuracy are averaged over all
    ranks by the trainer; `rank_step_times()` has the per-rank view."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir).expanduser()
        if not (self.path / "metrics.jsonl").is_file() and not (self.path / "config.yaml").is_file():
            raise SemhpcError(f"{self.path}: no metrics.jsonl or config.yaml (not a semhpc run directory)")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def records(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        return read_metrics(path) if path.is_file() else []

    def start(self) -> dict | None:
        """The newest start/resume record: ranks, model, steps_per_epoch, global_batch, ..."""
        starts = [r for r in self.records() if r.get("kind") in ("start", "resume")]
        return starts[-1] if starts else None

    def steps(self) -> pd.DataFrame:
        """One row per logged step interval, plus `elapsed` (seconds since the first record)."""
        return self._table("step", STEP_COLUMNS)

    def epochs(self) -> pd.DataFrame:
        return self._table("epoch", EPOCH_COLUMNS)

    def rank_step_times(self) -> pd.DataFrame:
        """Long table (step, rank, step_time, compute_time). Step records carry `rank_step_times`
        and `rank_compute_times` (one value per rank, index = rank) when the trainer gathers them;
        otherwise only rank 0's own `step_time` is known and the table has rank 0 alone.
        compute_time is NaN in records written before the trainer measured it."""
        rows = []
        for record in self.records():
            if record.get("kind") != "step":
                continue
            per_rank = record.get("rank_step_times") or [record["step_time"]]
            compute = record.get("rank_compute_times") or [float("nan")] * len(per_rank)
            rows += [{"step": record["step"], "rank": rank, "step_time": t, "compute_time": c}
                     for rank, (t, c) in enumerate(zip(per_rank, compute))]
        return pd.DataFrame(rows, columns=["step", "rank", "step_time", "compute_time"])

    def config(self) -> dict:
        """The resolved config the run was started with, {section: {key: value}}. Read as plain
        YAML, not re-validated: a run written by an older semhpc stays readable."""
        return yaml.safe_load(self._required("config.yaml").read_text())

    def config_table(self) -> pd.DataFrame:
        """The resolved config as rows (section, key, value), for display."""
        sections = self.config()
        return pd.DataFrame([(s, k, v) for s, keys in sections.items() for k, v in keys.items()],
                            columns=["section", "key", "value"])

    def status(self, stall_factor: float = DEFAULT_STALL_FACTOR,
               min_stall_seconds: float = DEFAULT_MIN_STALL_SECONDS, now: float | None = None) -> RunStatus:
        """running / finished / failed / stalled, with step, progress and ETA (see monitor.status)."""
        start = self.start()
        train = self.config()["train"] if (self.path / "config.yaml").is_file() else {}
        total = start["steps_per_epoch"] * train["epochs"] if start and "epochs" in train else None
        return decide_status(self.records(), read_status_file(self.path),
                             (self.path / "test_metrics.json").is_file(), total,
                             log_every=train.get("log_every", 1), stall_factor=stall_factor,
                             min_stall_seconds=min_stall_seconds, now=now)

    def test_results(self) -> dict | None:
        """RUN/test_metrics.json (written at the end of training), or None before that."""
        return self._json("test_metrics.json")

    def eval_results(self, split: str = "test") -> dict | None:
        """`semhpc eval` output (eval.json, eval-<split>.json), or None when not run yet."""
        return self._json("eval.json" if split == "test" else f"eval-{split}.json")

    def evaluation(self) -> dict:
        """The best available evaluation: eval.json, else test_metrics.json (same keys)."""
        result = self.eval_results() or self.test_results()
        if result is None:
            raise SemhpcError(f"{self.path}: no eval.json or test_metrics.json (training not finished, "
                              f"or run `semhpc eval {self.path}`)")
        return result

    def _table(self, kind: str, columns: list[str]) -> pd.DataFrame:
        records = self.records()
        rows = [r for r in records if r.get("kind") == kind]
        table = pd.DataFrame(rows, columns=columns)
        first = min((r["time"] for r in records if "time" in r), default=0.0)
        table["elapsed"] = table["time"] - first
        return table.reset_index(drop=True)

    def _required(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise SemhpcError(f"{path}: missing")
        return path

    def _json(self, name: str) -> dict | None:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else None
