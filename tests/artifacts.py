"""Real artefacts for the monitor, notebook and report tests, made once per test session with the
real commands: synthetic SEM TIFFs -> ingest -> a 2-rank Horovod training (watched live by the
monitor while it runs) -> eval -> export -> classify, and beside it a bench rank sweep and a profile.

The `artifacts` fixture is registered for every test module by tests/conftest.py
(`pytest_plugins`): a session fixture, so the work runs once.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_runs import semhpc_ok as semhpc
from cli_runs import synth_and_ingest
from semhpc.runtime.launcher import mpirun_command

# Tiny on purpose (2 shared cores): 8 images per class at 64x48, 32 px input, one epoch.
TRAIN_SETTINGS = ["model.name=densenet28", "data.image_size=32", "train.batch_size=4", "train.epochs=1",
                  "train.log_every=1", "data.augment=false"]


def train_command(data: Path, run: Path, *settings: str) -> list[str]:
    """`semhpc train` arguments for a tiny run of `data` into `run`."""
    sets = [*TRAIN_SETTINGS, f"data.dir={data}", f"run.dir={run}", *settings]
    return ["train", *[arg for s in sets for arg in ("--set", s)]]


@dataclass
class Artifacts:
    tiffs: Path
    data: Path
    run: Path
    bundle: Path
    classified: Path
    sweep: Path
    profile: Path
    # The monitor's view of the run, sampled while the training processes were alive, then after.
    live_statuses: list = field(default_factory=list)
    final_status: object = None


def train_watched(data: Path, run: Path) -> tuple[list, object]:
    """2-rank training under mpirun; meanwhile the monitor reads the run directory as it grows."""
    from semhpc.monitor import open_run

    log = run.parent / "train.log"  # a file, not a pipe: nobody reads a pipe while the loop polls
    with open(log, "w") as output:
        proc = subprocess.Popen(mpirun_command(2, train_command(data, run)), stdout=output, stderr=subprocess.STDOUT)
        live = []
        while proc.poll() is None:
            if (run / "metrics.jsonl").is_file():
                live.append(open_run(run).status())
            time.sleep(0.5)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return live, open_run(run).status()


def make_artifacts(root: Path) -> Artifacts:
    tiffs, data = synth_and_ingest(root)
    # Two independent chains, run side by side: most of each command is single-threaded start-up
    # (imports, graph tracing), so on 2 cores the pair takes little longer than the longer chain.
    with ThreadPoolExecutor(max_workers=2) as pool:
        measured = pool.submit(make_bench_outputs, root)
        run = root / "run"
        live, final = train_watched(data, run)
        semhpc("eval", str(run))
        semhpc("export", str(run), str(root / "bundle"))
        # The labelled TIFF tree itself: each file's category folder is its true label.
        semhpc("classify", "--model", str(root / "bundle"), "--input", str(tiffs), "--out", str(root / "classified"))
        sweep, profile = measured.result()
    return Artifacts(tiffs, data, run, root / "bundle", root / "classified", sweep, profile, live, final)


def make_bench_outputs(root: Path) -> tuple[Path, Path]:
    """(rank sweep folder, profile folder) of the tiny model."""
    tiny = ["--model", "densenet28", "--image-size", "32", "--batch-size", "4"]
    semhpc("bench", *tiny, "--batches", "3", "--warmup", "1", "--sweep", "1,2", "--out", str(root / "sweep"))
    semhpc("profile", *tiny, "--steps", "3", "--warmup", "1", "--rounds", "1", "--out", str(root / "profile"))
    return root / "sweep", root / "profile"


_made: dict[str, Artifacts] = {}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    if "artifacts" not in _made:
        _made["artifacts"] = make_artifacts(tmp_path_factory.mktemp("artifacts"))
    return _made["artifacts"]

