"""The analysis notebooks in the repository's `notebooks/` folder, which `semhpc jupyter` opens.

Each notebook has one cell tagged `parameters` (papermill's convention) holding its inputs, and
cells that draw figures are tagged `figure:<name>`; the tests run them headless with those
(tests/notebook_runner.py).
"""

from __future__ import annotations

from pathlib import Path

from semhpc.utils.errors import SemhpcError

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = (
    "01_monitor_training.ipynb",
    "02_scaling.ipynb",
    "03_layer_profile.ipynb",
    "04_classification_review.ipynb",
    "05_dataset_explorer.ipynb",
)


def notebooks_dir() -> Path:
    if not NOTEBOOKS_DIR.is_dir():
        raise SemhpcError(f"{NOTEBOOKS_DIR}: notebooks folder not found (they ship in the repository, "
                          "not in an installed wheel: pass --notebooks DIR)")
    return NOTEBOOKS_DIR
