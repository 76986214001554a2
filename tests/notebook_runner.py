"""Running the repository's notebooks headless, as the tests do.

Each notebook has one cell tagged `parameters` (papermill's convention) holding its inputs;
`execute_notebook` adds a cell after it that overrides them, exactly as papermill does, and runs
the notebook with nbclient. Cells that draw figures are tagged `figure:<name>` (one tag per
figure drawn), so a check can find each expected figure in the outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

PARAMETERS_TAG = "parameters"
FIGURE_TAG_PREFIX = "figure:"


def inject_parameters(notebook, parameters: dict):
    """Insert an `injected-parameters` cell right after the `parameters` cell (papermill-style)."""
    index = next((i for i, cell in enumerate(notebook.cells)
                  if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise ValueError("notebook has no cell tagged 'parameters'")
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)
    return notebook


def execute_notebook(path: str | Path, parameters: dict, out: str | Path | None = None,
                     timeout: int = 600):
    """Run the notebook with `parameters` in its own folder; return the executed notebook (and
    save it to `out` when given). A cell error raises nbclient's CellExecutionError."""
    path = Path(path)
    notebook = inject_parameters(nbformat.read(path, as_version=4), parameters)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if out is not None:
            nbformat.write(notebook, str(out))
    return notebook


def figure_names(notebook) -> list[str]:
    """Every `figure:<name>` tag of the notebook, in cell order."""
    return [name for cell in notebook.cells for name in _figure_tags(cell)]


def missing_figures(notebook) -> list[str]:
    """Figures an executed notebook failed to show: the names of the figure tags of every cell
    with fewer image/png outputs than figure tags (a cell may draw several figures)."""
    missing = []
    for cell in notebook.cells:
        names = _figure_tags(cell)
        images = sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
        if images < len(names):
            missing += names
    return missing


def _figure_tags(cell) -> list[str]:
    return [tag[len(FIGURE_TAG_PREFIX):] for tag in cell.get("metadata", {}).get("tags", [])
            if tag.startswith(FIGURE_TAG_PREFIX)]
