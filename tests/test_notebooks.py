"""The notebooks: stored clean with a parameters cell, and each one executed with nbclient against
real artefacts (no error output, every expected figure shown as an image/png)."""

import nbformat
import pytest

from notebook_runner import PARAMETERS_TAG, execute_notebook, figure_names, missing_figures
from semhpc.monitor.notebooks import NOTEBOOKS, NOTEBOOKS_DIR

EXPECTED_FIGURES = {
    "01_monitor_training.ipynb": ["training_curves", "rank_step_spread"],
    "02_scaling.ipynb": ["scaling"],
    "03_layer_profile.ipynb": ["layer_times", "layer_time_vs_iteration", "coverage"],
    "04_classification_review.ipynb": ["confusion_matrix", "per_class_metrics", "score_histogram",
                                       "probability_correct", "confident_errors"],
    "05_dataset_explorer.ipynb": ["class_balance", "sample_images", "metadata_distributions"],
}


def parameters(name, artifacts):
    return {
        "01_monitor_training.ipynb": {"run_dir": str(artifacts.run), "refresh_seconds": 1},
        "02_scaling.ipynb": {"sweep": str(artifacts.sweep)},
        "03_layer_profile.ipynb": {"profile": str(artifacts.profile)},
        "04_classification_review.ipynb": {"run_dir": str(artifacts.run), "predictions": str(artifacts.classified)},
        "05_dataset_explorer.ipynb": {"data_dir": str(artifacts.data)},
    }[name]


def test_the_issue_lists_exactly_these_notebooks():
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS) == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs_and_with_one_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if PARAMETERS_TAG in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    assert figure_names(notebook) == EXPECTED_FIGURES[name]


@pytest.fixture(autouse=True)
def no_submitted_jobs(tmp_path, monkeypatch):
    """An empty job registry for the kernels (they inherit the environment): the monitor notebook
    must not ask this machine's scheduler about jobs some other test submitted."""
    monkeypatch.setenv("SEMHPC_HOME", str(tmp_path / "semhpc-home"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_against_real_artifacts(name, artifacts, tmp_path):
    notebook = execute_notebook(NOTEBOOKS_DIR / name, parameters(name, artifacts), out=tmp_path / name)
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "error"]
    assert errors == []
    assert figure_names(notebook) == EXPECTED_FIGURES[name]
    assert missing_figures(notebook) == [], f"executed notebook kept in {tmp_path / name}"


@pytest.mark.slow
def test_monitor_notebook_shows_the_finished_state(artifacts):
    notebook = execute_notebook(NOTEBOOKS_DIR / "01_monitor_training.ipynb",
                                parameters("01_monitor_training.ipynb", artifacts))
    dashboard = next(cell for cell in notebook.cells if "figure:training_curves" in cell.metadata.get("tags", []))
    printed = "".join(output.get("text", "") for output in dashboard.outputs if output.output_type == "stream")
    assert printed.startswith("finished: step ")
    done, total = printed.split("step ")[1].split(" ")[0].split("/")
    assert done == total
