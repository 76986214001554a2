"""Output files of `semhpc classify`, written so that kill -9 at any moment loses no finished work.

  OUT/run.json              model_version, thresholds and HDF5 folder the outputs were made with
  OUT/parts/*.jsonl         one file per finished chunk (predictions and errors of its files),
                            written atomically by the rank that classified it: the commit record
  OUT/predictions.csv       the merge of all parts, one row per readable input, sorted by path
  OUT/predictions.jsonl     the same rows as JSON lines
  OUT/errors.csv            path,reason for every input that could not be classified
  OUT/throughput.json       the last run's speed report (throughput.py)

Exactly once: a chunk's part file appears (atomic rename) only after all its rows are final, and
a rerun classifies only the inputs that no part file mentions; the merge keeps one row per path
and only paths that are inputs of the current run, then replaces the three result files
atomically. A rerun with another model, other thresholds or another --hdf5 folder would mix
incompatible rows, so it is refused (run.json).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from semhpc.classify.policy import DECISIONS, PREDICTION_FIELDS, SCORE_DECIMALS
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError

PARTS = "parts"
RUN_FILE = "run.json"
PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSONL = "predictions.jsonl"
ERRORS_CSV = "errors.csv"
ERROR_FIELDS = ("path", "reason")


def start_run(out: Path, settings: dict) -> None:
    """Record the settings of a new OUT, or check that a rerun uses the same ones."""
    run_file = out / RUN_FILE
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        changed = {key: (previous.get(key), value) for key, value in settings.items() if previous.get(key) != value}
        if changed:
            what = "; ".join(f"{key} was {old!r}, now {new!r}" for key, (old, new) in changed.items())
            raise SemhpcError(f"{run_file}: {out} holds results made with other settings ({what}); "
                              "rerun with the same settings or choose a new --out")
        return
    atomic.write_json(run_file, {**settings, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def write_part(out: Path, rank: int, chunk_index: int, predictions: list[dict], errors: list[dict]) -> Path:
    """Commit one finished chunk: its predictions and error rows in one atomically written file."""
    path = out / PARTS / f"r{rank:04d}-c{chunk_index:07d}-{uuid.uuid4().hex[:12]}.jsonl"
    lines = [json.dumps({"kind": "prediction", **row}) for row in predictions]
    lines += [json.dumps({"kind": "error", **row}) for row in errors]
    atomic.write_text(path, "".join(line + "\n" for line in lines))
    return path


def remove_unfinished_parts(out: Path) -> None:
    """Temporary files of parts a killed run was writing (never renamed, so never counted)."""
    for leftover in (out / PARTS).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def read_parts(out: Path) -> Iterator[dict]:
    for part in sorted((out / PARTS).glob("*.jsonl")):
        with open(part) as fh:
            for line in fh:
                yield json.loads(line)


def finished_paths(out: Path) -> set[str]:
    """Every path some committed part file accounts for (classified or failed)."""
    return {record["path"] for record in read_parts(out)}


def merge(out: Path, input_paths: Iterable[str], listing_errors: Iterable[dict] = ()) -> dict:
    """Rewrite predictions.csv/.jsonl and errors.csv from the parts (plus `listing_errors`, entries
    of the input folder that were not taken); return the row counts
    `{"predictions": n, "errors": n, "decisions": {"auto": n, "suggest": n, "manual": n}}`."""
    wanted = set(input_paths)
    predictions: dict[str, dict] = {}
    errors: dict[str, dict] = {row["path"]: row for row in listing_errors}
    for record in read_parts(out):
        kind = record.pop("kind")
        if record["path"] in wanted:
            (predictions if kind == "prediction" else errors).setdefault(record["path"], record)
    prediction_rows = [predictions[path] for path in sorted(predictions)]
    error_rows = [errors[path] for path in sorted(errors)]
    atomic.write_text(out / PREDICTIONS_CSV, _csv_text(prediction_rows, PREDICTION_FIELDS))
    atomic.write_text(out / PREDICTIONS_JSONL, "".join(json.dumps(row) + "\n" for row in prediction_rows))
    atomic.write_text(out / ERRORS_CSV, _csv_text(error_rows, ERROR_FIELDS))
    decisions = Counter(row["decision"] for row in prediction_rows)
    return {"predictions": len(prediction_rows), "errors": len(error_rows),
            "decisions": {decision: decisions[decision] for decision in DECISIONS}}


def _csv_text(rows: list[dict], fields: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(row.get(key)) for key in fields} for row in rows)
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{SCORE_DECIMALS}f}"
    return str(value)
