"""Scaling: `semhpc bench --sweep` results as speedup and efficiency against ideal, beside the
thesis' multi-GPU measurements (docs/background.md: Scaling, De Nobili Table 4.1) for context.

Speedup(N) = throughput(N ranks) / throughput(1 rank); efficiency = speedup / N; ideal = N.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from semhpc.utils.errors import SemhpcError

# Only a rank sweep says how training scales with workers; a thread sweep is one process.
RANK_SWEEP = "rank_sweep"

# Images/sec for 1, 2 and 4 GPUs (None: not measured), docs/background.md: Scaling.
THESIS_THROUGHPUT = {
    ("inception_v3", "K20"): (17.2, 33.3, None),
    ("inception_v3", "K40"): (23.0, 42.1, 78.5),
    ("inception_v3", "GTX1070"): (40.9, 56.0, 66.4),
    ("densenet28", "K20"): (45.5, 81.9, None),
    ("densenet28", "GTX1070"): (53.5, 100.3, 183.7),
}
THESIS_GPUS = (1, 2, 4)


def load_sweep(path: str | Path) -> pd.DataFrame:
    """The rows of a `semhpc bench --sweep` result (sweep.json or its folder): one per point and
    phase (forward, train) with workers, images_per_sec (total), speedup and efficiency
    (`semhpc.bench.sweep` computes them against the 1-rank point)."""
    document_path = Path(path) / "sweep.json" if Path(path).is_dir() else Path(path)
    if not document_path.is_file():
        raise SemhpcError(f"{document_path}: sweep results not found (run `semhpc bench --sweep 1,2,... --out DIR`)")
    document = json.loads(document_path.read_text())
    if document.get("kind") != RANK_SWEEP:
        raise SemhpcError(f"{document_path}: a {document.get('kind')}, not a rank sweep (`semhpc bench --sweep`)")
    return pd.DataFrame(document["rows"])


def thesis_scaling() -> pd.DataFrame:
    """The thesis' numbers as (model, device, workers, images_per_sec, speedup, efficiency)."""
    rows = [{"model": model, "device": device, "workers": n, "images_per_sec": rate}
            for (model, device), rates in THESIS_THROUGHPUT.items()
            for n, rate in zip(THESIS_GPUS, rates) if rate is not None]
    return with_speedup(pd.DataFrame(rows), ["model", "device"])


def with_speedup(table: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Add speedup and efficiency per `group`, relative to its 1-worker row (as the sweep does)."""
    table = table.sort_values([*group, "workers"]).reset_index(drop=True)
    single = table[table["workers"] == 1].groupby(group)["images_per_sec"].first()
    table["speedup"] = table["images_per_sec"] / table.set_index(group).index.map(single).to_numpy()
    table["efficiency"] = table["speedup"] / table["workers"]
    return table
