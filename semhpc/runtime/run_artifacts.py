"""The files of a run directory that other commands read: status, weights, the trained model.

`semhpc train` (rank 0) writes them; `semhpc eval`, `semhpc export`, `semhpc.monitor` and the
notebooks read them. Layout (see also README "Outputs"):
  config.yaml          the resolved configuration
  status.json          {"state": "running"|"finished"|"failed", "pid", "host", "updated", "step", "error"}
  metrics.jsonl        one record per step interval / epoch (`semhpc.utils.metrics_log`)
  checkpoints/         model + optimizer state for `--resume`
  latest_weights.h5    inference weights after the newest epoch (Keras HDF5)
  final_weights.h5     inference weights after the last epoch
  test_metrics.json    test-split evaluation at the end; eval.json from `semhpc eval`
  tensorboard/         TensorBoard scalars
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError

STATES = ("running", "finished", "failed")


def write_status(run_dir: Path, state: str, step: int | None, error: str | None = None) -> None:
    """Atomically record the run's state; a monitor also checks whether `pid` on `host` is alive."""
    atomic.write_text(Path(run_dir) / "status.json", _status_record(state, step, error))


def _status_record(state: str, step: int | None, error: str | None) -> str:
    assert state in STATES, state
    return json.dumps({"state": state, "pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(),
                       "step": step, "error": error}, indent=2) + "\n"


def mark_failed(run_dir: Path, error: str) -> str | None:
    """Record state "failed" with `error`; None when done, else why status.json could not be written.

    On a full disk the atomic write needs room for a second copy: the unfinished checkpoints
    TensorFlow left when its own write failed (`checkpoints/*_temp`, never a finished one) are
    removed to make that room, and as a last resort status.json is overwritten in place (its
    blocks are already allocated), so a monitor does not show a dead run as running."""
    try:
        write_status(run_dir, "failed", None, error=error)
        return None
    except (SemhpcError, OSError):
        for unfinished in (Path(run_dir) / "checkpoints").glob("*_temp"):
            shutil.rmtree(unfinished, ignore_errors=True)
    try:
        write_status(run_dir, "failed", None, error=error)
        return None
    except (SemhpcError, OSError) as exc:
        in_place = _status_record("failed", None, error)
        try:
            with open(Path(run_dir) / "status.json", "r+", encoding="utf-8") as handle:
                handle.write(in_place)
                handle.truncate()
            return None
        except OSError:
            return str(exc)


def status_owned_by_me(run_dir: Path) -> bool:
    """True when this process marked the run as running (so it may mark it failed)."""
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return status.get("state") == "running" and status.get("pid") == os.getpid() \
        and status.get("host") == socket.gethostname()


def save_weights(model, path: Path) -> None:
    """Keras HDF5 weights (the classic format, which stores layer names: transfer learning and
    `load_trained_model` match by name), written atomically (a reader never sees half a file).
    The files are `*_weights.h5`, not `*.weights.h5`: Keras 2.15 reads that suffix as its
    newer format, which has no layer names."""
    with atomic.atomic_path(path) as tmp:
        model.save_weights(str(tmp), save_format="h5")


def trained_weights(run_dir: Path) -> Path:
    """final_weights.h5, else latest_weights.h5 (a run still going or stopped early)."""
    for name in ("final_weights.h5", "latest_weights.h5"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    raise SemhpcError(f"{run_dir}: no final_weights.h5 or latest_weights.h5 (has `semhpc train` finished an epoch?)")


def load_trained_model(run_dir: Path, cfg, num_classes: int):
    """The inference model of a run (no auxiliary head), with its trained weights, matched by layer
    name (the trained model may have had an auxiliary head, so its layer order differs)."""
    from semhpc.model import registry
    from semhpc.runtime.transfer import restore_except_logits

    model = registry.build(cfg.model.name, num_classes=num_classes, input_size=cfg.data.image_size)
    weights = trained_weights(run_dir)
    expected = sum(1 for layer in model.layers if layer.weights)
    restored = restore_except_logits(model, weights, logits_scopes=())
    if restored != expected:
        raise SemhpcError(f"{weights}: holds {restored} of the {expected} layers of {cfg.model.name}")
    return model
