"""Debian's headless Chromium, driven by Playwright, and what a person does in JupyterLab with it:
open a notebook, wait for its kernel, run all cells, and read back what each cell shows.

Playwright's own browser builds are never downloaded: only its driver is used, with
`executable_path` pointing at /usr/bin/chromium. Chromium talks to loopback only.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Root in a container needs --no-sandbox; the rest keep Chromium off the network and quiet.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
KERNEL_READY_TIMEOUT = 90
# What notebook 01's dashboard cell prints while its run trains (and the per-rank spread of 2 ranks).
RUNNING = re.compile(r"running: step (\d+)/(\d+) \(\d+%\)")
RANK_SPREAD = re.compile(r"compute time per rank \(median of the last \d+ intervals\): rank 0 [\d.]+ s, "
                         r"rank 1 [\d.]+ s; slowest rank [01] at [\d.]+x the fastest; step time [\d.]+ s")

# JupyterLab user settings for the tests: never ask about (or fetch) news, start the notebook's own
# kernel without a dialog. Kept in the test's folder, so no one's ~/.jupyter is read or written.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
}

# What every code cell of the notebook shows, read from the page (cells in notebook order).
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"  # of the notebook in view
_READ_CELLS = f"() => [...document.querySelectorAll('{CELLS}')]" + """
  .map(cell => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
    images: [...cell.querySelectorAll('.jp-OutputArea-output img')]
      .map(img => img.src.length + ':' + img.src.slice(-64)),
    tables: cell.querySelectorAll('.jp-OutputArea-output table').length,
    text: [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')]
      .map(o => o.textContent).join(''),
    stderr: [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(o => o.textContent).join(''),
  }))"""


def lab_environment(folder: Path) -> dict:
    """Environment for `semhpc jupyter` in a test: JupyterLab settings and workspaces in `folder`."""
    settings = folder / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    return {"JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(folder / "lab-workspaces")}


def launch(playwright):
    """Debian's Chromium, headless, with a fresh temporary profile."""
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: apt-get install chromium (no browser is downloaded)"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_notebook(page, url: str) -> None:
    """Go to a notebook's /lab/tree URL (in a fresh workspace: no tabs of an earlier visit come
    back) and wait until its kernel is started and idle."""
    page.goto(url + ("&" if "?" in url else "?") + "reset")
    page.wait_for_selector(CELLS, timeout=KERNEL_READY_TIMEOUT * 1000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=KERNEL_READY_TIMEOUT * 1000)


def run_all_cells(page) -> None:
    """Run > Run All Cells, through the menu bar as a person would."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def read_cells(page) -> list[dict]:
    """Every cell as the page shows it: prompt ('[3]:', '[*]:', '[ ]:'), images (a fingerprint of
    each), number of tables, stdout text and stderr text (where tracebacks go)."""
    return page.evaluate(_READ_CELLS)


def wait_until_all_ran(page, timeout: float, start_timeout: float = 60) -> list[dict]:
    """Poll until the run is over: every code cell has an execution number, or an error stopped
    the run (some cells ran, none is queued or running, the kernel is idle). Return the cells.
    Fails early when no cell was even queued within `start_timeout`."""
    started = time.monotonic()
    while True:
        cells = read_cells(page)
        prompts = [cell["prompt"] for cell in cells if cell["code"]]
        if prompts and all(p[1:-2].isdigit() for p in prompts):
            return cells
        if "[*]:" not in prompts and any(p[1:-2].isdigit() for p in prompts) and _kernel_idle(page):
            time.sleep(2)  # between two queued cells the kernel is idle for an instant
            if read_cells(page) == cells and _kernel_idle(page):
                return cells
        waited = time.monotonic() - started
        assert waited < start_timeout or set(prompts) != {"[ ]:"}, f"no cell started within {start_timeout} s"
        assert waited < timeout, f"cells still running after {timeout} s: {prompts}"
        time.sleep(1)


def _kernel_idle(page) -> bool:
    return page.evaluate("document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                         ".jp-Notebook-ExecutionIndicator')?.dataset.status") == "idle"


def screenshot(page, path: Path, scroll_to_cell: int | None = None) -> Path:
    """A PNG of the browser window, scrolled so cell `scroll_to_cell` is at the top, reduced to a
    256-colour palette (a screenshot of plots and text loses nothing visible, and stays small)."""
    from PIL import Image

    if scroll_to_cell is not None:
        page.evaluate(f"i => document.querySelectorAll('{CELLS}')[i].scrollIntoView({{block: 'start'}})",
                      scroll_to_cell)
        time.sleep(0.5)
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def hub_login(page, base: str, user: str, password: str, spawn_timeout: float) -> None:
    """Log in to the JupyterHub at `base` and wait until it has started the user's server and
    shows JupyterLab (the hub's own page while the server job waits in the queue)."""
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(f"{base}/user/{user}/lab**", timeout=spawn_timeout * 1000)


def follow_dashboard(page, cell: int, timeout: float, shot: Path) -> list[dict]:
    """Read cell `cell` (notebook 01's live dashboard) once a second until it says finished or
    failed, as a person watching it sees it; a screenshot of it while it runs goes to `shot`."""
    samples = []
    deadline = time.monotonic() + timeout
    while not (samples and samples[-1]["text"].startswith(("finished", "failed"))):
        assert time.monotonic() < deadline, samples[-1:]
        samples.append(read_cells(page)[cell])
        if len(samples) == 12:
            screenshot(page, shot, scroll_to_cell=cell)
        time.sleep(1)
    return samples


def assert_followed_live(samples: list[dict], total: int) -> None:
    """The dashboard advanced without being re-run: one execution ([*]) showed the step counter
    rising over several redraws, redrew both figures with new points and the per-rank spread of
    both ranks each time, and ended on the finished state of all `total` steps."""
    live = [(sample, RUNNING.match(sample["text"])) for sample in samples]
    live = [(sample, int(match.group(1)), int(match.group(2))) for sample, match in live if match]
    assert live, samples[-3:]
    steps = [step for _, step, _ in live]
    assert {shown_total for _, _, shown_total in live} == {total}
    assert steps == sorted(steps) and len(set(steps)) >= 3 and steps[0] < total, steps
    assert {sample["prompt"] for sample, _, _ in live} == {"[*]:"}
    # A sample may catch a redraw half-way (text shown, figures still coming); whole ones have both.
    drawn = [sample for sample, _, _ in live if len(sample["images"]) == 2]
    assert len(drawn) >= 3 and all(len(sample["images"]) <= 2 for sample, _, _ in live)
    assert len({sample["images"][0] for sample in drawn}) >= 3  # the curves were redrawn with new points
    assert all(RANK_SPREAD.search(sample["text"]) for sample in drawn)
    assert samples[-1]["text"].startswith(f"finished: step {total}/{total} (100%)")
