"""JupyterLab as a person meets it: Debian's headless Chromium opens the notebooks served by
`semhpc jupyter`, logs in with the token, runs all cells through the menu, and the page must show
every expected figure and table and no error. A screenshot of each notebook goes to the test's
folder (notebooks/screenshots/ holds the committed ones)."""

import subprocess
import time

import nbformat
import pytest

from artifacts import train_command
from browser import (
    VIEWPORT,
    assert_followed_live,
    follow_dashboard,
    lab_environment,
    launch,
    open_notebook,
    run_all_cells,
    screenshot,
    wait_until_all_ran,
)
from lab_server import refused, running_jupyter, shutdown_kernels
from notebook_runner import FIGURE_TAG_PREFIX, inject_parameters
from semhpc.monitor import open_run
from semhpc.monitor.notebooks import NOTEBOOKS, NOTEBOOKS_DIR
from semhpc.runtime.launcher import mpirun_command
from test_notebooks import EXPECTED_FIGURES, parameters

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TOKEN = "browser-test-token-5f3a9c"
RUN_ALL_TIMEOUT = 300

# Tables each notebook shows (pandas DataFrames rendered as HTML), at least.
EXPECTED_TABLES = {
    "01_monitor_training.ipynb": 3,       # epochs, compute and step time per rank, resolved configuration
    "02_scaling.ipynb": 2,                # measured sweep, the thesis' numbers
    "03_layer_profile.ipynb": 1,
    "04_classification_review.ipynb": 1,
    "05_dataset_explorer.ipynb": 1,
}


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(artifacts, tmp_path_factory):
    """(base URL, folder, served notebooks dir): the repository's notebooks with the artefacts'
    paths injected after each parameters cell, served by `semhpc jupyter`."""
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    for name in NOTEBOOKS:
        notebook = inject_parameters(nbformat.read(NOTEBOOKS_DIR / name, as_version=4), parameters(name, artifacts))
        nbformat.write(notebook, str(notebooks / name))
    env = {**lab_environment(root), "SEMHPC_HOME": str(root / "semhpc-home")}
    with running_jupyter(TOKEN, notebooks, env) as lab:
        yield lab.base, lab.folder, notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_runs_in_jupyterlab_and_shows_its_figures(name, served, chromium, tmp_path):
    base, folder, notebooks = served
    page = chromium.new_page(viewport=VIEWPORT)
    try:
        open_notebook(page, f"{base}/lab/tree/{folder}/{name}?token={TOKEN}")
        run_all_cells(page)
        try:
            cells = wait_until_all_ran(page, RUN_ALL_TIMEOUT)
        except AssertionError:
            screenshot(page, tmp_path / "failed.png")
            raise
        stored = nbformat.read(notebooks / name, as_version=4).cells
        assert len(cells) == len(stored)
        figure_cells = [i for i, cell in enumerate(stored)
                        if any(t.startswith(FIGURE_TAG_PREFIX) for t in cell.metadata.get("tags", []))]
        shot = screenshot(page, tmp_path / f"{name.removesuffix('.ipynb')}.png", scroll_to_cell=figure_cells[0])
        assert shot.stat().st_size < 300_000
    finally:
        page.close()
        shutdown_kernels(base, TOKEN)
    assert [cell["stderr"] for cell in cells if cell["stderr"]] == []
    for i in figure_cells:
        tags = [t for t in stored[i].metadata["tags"] if t.startswith(FIGURE_TAG_PREFIX)]
        assert len(cells[i]["images"]) >= len(tags), (tags, cells[i])
    shown = [tag[len(FIGURE_TAG_PREFIX):] for i in figure_cells for tag in stored[i].metadata["tags"]
             if tag.startswith(FIGURE_TAG_PREFIX)]
    assert shown == EXPECTED_FIGURES[name]
    assert sum(cell["tables"] for cell in cells) >= EXPECTED_TABLES[name]


# Served to anyone, and holding nothing of the user's: JupyterLab's own scripts, styles and fonts,
# the login form, and the bare /api (the server's version number).
PUBLIC_PREFIXES = ("/static/", "/lab/static/", "/lab/extensions/", "/lab/api/themes/", "/login", "/favicon")
WEBSOCKET_OPENS = """url => new Promise(resolve => {
  const socket = new WebSocket(url);
  socket.onopen = () => { socket.close(); resolve(true); };
  socket.onerror = () => resolve(false);
})"""


def test_every_path_the_page_uses_is_refused_without_the_token(served, chromium):
    """Record every request JupyterLab makes while a person logs in and runs a notebook, then ask
    again for each page, API path and kernel websocket with no token and no cookie."""
    base, folder, _ = served
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    requests, sockets = set(), set()
    page.on("request", lambda request: requests.add((request.method, request.url)))
    page.on("websocket", lambda socket: sockets.add(socket.url))
    try:
        open_notebook(page, f"{base}/lab/tree/{folder}/02_scaling.ipynb?token={TOKEN}")
        run_all_cells(page)
        wait_until_all_ran(page, RUN_ALL_TIMEOUT)
        assert page.evaluate(WEBSOCKET_OPENS, next(iter(sockets)))  # the logged-in page may open one
    finally:
        context.close()
    assert all(url.startswith(base) for _, url in requests), "the page fetched something off this server"
    paths = {(method, url.removeprefix(base).split("?token=")[0].split("&token=")[0])
             for method, url in requests if method in ("GET", "POST", "PUT", "PATCH", "DELETE")}
    private = {(method, path) for method, path in paths if not path.startswith(PUBLIC_PREFIXES)}
    assert any(path.startswith("/api/kernels") for _, path in private) and any(path.startswith("/lab/api/settings")
                                                                              for _, path in private)
    assert sorted(p for p in private if not refused(base, p[1], p[0])) == []
    kernel_sockets = [url.split("?")[0] for url in sockets if "/api/kernels/" in url]
    assert kernel_sockets
    anonymous = chromium.new_context()
    try:
        page = anonymous.new_page()
        page.goto(f"{base}/login")
        assert [url for url in kernel_sockets if page.evaluate(WEBSOCKET_OPENS, url)] == []
    finally:
        anonymous.close()
        shutdown_kernels(base, TOKEN)


# 240 steps of the tiny model: about 60 s after the first step on 2 idle cores (48 steps took 12 s,
# over before the page had drawn three times), some 4 minutes on busy ones.
LIVE_EPOCHS = 30
LIVE_TIMEOUT = 900


@pytest.fixture
def live_run(artifacts, tmp_path):
    """(run dir, process) of a 2-rank training started in the background, once its first step is
    recorded; stopped at teardown if still running."""
    run, log = tmp_path / "live-run", tmp_path / "train.log"
    with open(log, "w") as output:
        proc = subprocess.Popen(mpirun_command(2, train_command(artifacts.data, run, f"train.epochs={LIVE_EPOCHS}")),
                                stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + LIVE_TIMEOUT
        while not any(r["kind"] == "step" for r in open_run(run).records()) if (run / "metrics.jsonl").is_file() \
                else True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no step recorded"
            time.sleep(1)
        yield run, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.mpi
def test_monitor_notebook_follows_a_live_run_without_rerunning(live_run, served, chromium, tmp_path):
    """The dashboard cell of 01 keeps running and redraws itself while the run trains: the page
    shows the step counter, the curves and the per-rank spread advance, then the final state,
    after which the cell ends by itself and the rest of the notebook runs."""
    run, proc = live_run
    base, folder, notebooks = served
    name = "01_monitor_training-live.ipynb"
    notebook = inject_parameters(nbformat.read(NOTEBOOKS_DIR / "01_monitor_training.ipynb", as_version=4),
                                 {"run_dir": str(run), "refresh_seconds": 2})
    nbformat.write(notebook, str(notebooks / name))
    dashboard = next(i for i, cell in enumerate(notebook.cells)
                     if f"{FIGURE_TAG_PREFIX}training_curves" in cell.metadata.get("tags", []))
    page = chromium.new_page(viewport=VIEWPORT)
    try:
        open_notebook(page, f"{base}/lab/tree/{folder}/{name}?token={TOKEN}")
        run_all_cells(page)
        samples = follow_dashboard(page, dashboard, LIVE_TIMEOUT, tmp_path / "01_monitor_training-live.png")
        cells = wait_until_all_ran(page, RUN_ALL_TIMEOUT)
    finally:
        page.close()
        shutdown_kernels(base, TOKEN)
    assert proc.wait(timeout=120) == 0
    assert_followed_live(samples, LIVE_EPOCHS * open_run(run).start()["steps_per_epoch"])
    # The dashboard ran once and ended by itself; the cells after it ran then, without errors.
    numbers = [int(cell["prompt"][1:-2]) for cell in cells if cell["code"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert [cell["stderr"] for cell in cells if cell["stderr"]] == []
    assert len(cells[dashboard]["images"]) == 2
